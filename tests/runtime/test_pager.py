"""The pager: sections and budgets, selection rules, edges, reasons, and the plan it returns."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from runtime import NewBlock, open_store
from runtime.blocks import BlockKind, Edge, EdgeKind, canonical_json, content_hash
from runtime.config import BudgetFractions
from runtime.errors import BudgetTooSmall, SessionNotFound
from runtime.indexes.snapshot import index_for
from runtime.pager.core import PageOptions, PageRequest, page
from runtime.pager.plan import OmissionReason, PagePlan, SelectionReason
from runtime.pager.sections import DEFAULT_SECTION, Section, allocate
from tests.runtime.pager_support import Session, profile


def reasons(plan):
    out = {s.candidate.block_id: s.reason for s in plan.selected}
    out.update({o.candidate.block_id: o.reason for o in plan.omitted})
    return out


def chat(store, name="s", turns=20, size=30):
    session = Session(store, name)
    session.system("You are a careful airline agent.")
    session.tool_schema()
    for i in range(turns):
        session.user(f"turn {i}: " + "please check my booking " * size)
        session.assistant(f"reply {i}: " + "certainly " * size)
    return session


def test_sections_are_in_the_canonical_order():
    assert [s.value for s in Section] == [
        "system", "task", "state", "plan", "retrieved", "tools", "recent", "background", "slack"
    ]  # fmt: skip


def test_every_block_kind_has_a_section_and_none_maps_to_task_or_slack():
    assert set(DEFAULT_SECTION) == set(BlockKind)
    assert not {Section.TASK, Section.SLACK} & set(DEFAULT_SECTION.values())
    assert DEFAULT_SECTION[BlockKind.TOOL_RESULT] is Section.RECENT
    assert DEFAULT_SECTION[BlockKind.TOOL_SCHEMA] is Section.TOOLS


def test_default_fractions_allocate_floor_shares_of_the_variable_budget():
    allocation = allocate(BudgetFractions(), 111_360)
    assert dict(allocation.tokens) == {
        Section.STATE: 11_136, Section.PLAN: 5_568, Section.RECENT: 22_272,
        Section.RETRIEVED: 44_544, Section.TOOLS: 16_704, Section.BACKGROUND: 5_568,
        Section.SLACK: 5_568,
    }  # fmt: skip


def test_fractions_summing_over_one_are_scaled_down():
    loud = BudgetFractions(state=1.0, plan=1.0, recent=0.0, retrieved=0.0, tools=0.0,
                           background=0.0, slack=0.0)  # fmt: skip
    allocation = allocate(loud, 1000)
    assert allocation.of(Section.STATE) == allocation.of(Section.PLAN) == 500


def test_planned_tokens_never_exceed_the_input_budget_and_slack_stays_empty(store):
    chat(store)
    plan = page(store, PageRequest("s", "check my booking", profile(1500)))
    assert plan.tokens <= plan.budget == 1500
    slack = plan.usage(Section.SLACK)
    assert slack.used == 0 and slack.allocated > 0
    assert plan.tokens <= plan.budget - slack.allocated


def test_required_blocks_come_first_even_when_they_score_nothing(store):
    chat(store)
    old = store.entries("s")[2].id  # the first user turn
    plan = page(store, PageRequest("s", "zzz", profile(900), required=(old,)))
    assert reasons(plan)[old] is SelectionReason.REQUIRED


def test_required_blocks_that_do_not_fit_say_by_how_much(store):
    chat(store, size=200)
    everything = tuple(e.id for e in store.entries("s"))
    with pytest.raises(BudgetTooSmall, match=r"\d+ tokens too many"):
        page(store, PageRequest("s", "task", profile(2000), required=everything))


def test_a_tool_call_never_travels_without_its_result(store):
    session = Session(store, "s")
    session.system("sys")
    for i in range(15):
        session.user(f"look up user {i}")
        session.tool_turn("get_user", {"user_id": f"u{i}"}, "x" * (40 * (i % 4 + 1)))
    plan = page(store, PageRequest("s", "user 7", profile(900)))
    chosen = {s.candidate.block_id for s in plan.selected}
    for call, result in _pairs(store, "s"):
        assert (call in chosen) == (result in chosen)
    assert any(s.reason is SelectionReason.TOOL_PAIR for s in plan.selected)


def _pairs(store, session):
    calls = [e.id for e in store.entries(session) if e.kind is BlockKind.TOOL_CALL]
    return [(c, store.edges_from(c, EdgeKind.TOOL_INVOCATION)[0].dst) for c in calls]


def test_a_tool_call_whose_result_is_not_in_the_session_yet_is_unpaired(store):
    session = Session(store, "s")
    session.user("hello")
    call, result = session.tool_turn("get_user", {"user_id": "u1"}, "found")
    upto = [e.seq for e in store.entries("s") if e.id == result][0]
    plan = page(store, PageRequest("s", "user", profile(5000), upto=upto))
    assert reasons(plan)[call] is OmissionReason.UNPAIRED
    assert result not in reasons(plan)  # not in the session as of upto


def test_a_selected_tool_call_pulls_in_the_assistant_text_of_its_turn(store):
    session = Session(store, "s")
    session.user("filler " * 50)
    call, _ = session.tool_turn("get_user", {"user_id": "zeta9"}, "zeta9 is gold",
                                said="Let me look that up for you.")  # fmt: skip
    for i in range(10):
        session.user(f"unrelated {i} " * 30)
    said = store.edges_from(call, EdgeKind.PARENT)[0].dst
    options = PageOptions(neighbour_weight=0.0)
    plan = page(store, PageRequest("s", "zeta9", profile(700), options=options))
    got = reasons(plan)
    assert got[call] in (SelectionReason.RELEVANCE, SelectionReason.TOOL_PAIR)
    assert got[said] is SelectionReason.DEPENDENCY
    assert {s.via for s in plan.selected if s.reason is SelectionReason.DEPENDENCY} == {call}


def test_edges_are_not_followed_when_turned_off(store):
    session = Session(store, "s")
    call, _ = session.tool_turn("get_user", {"user_id": "zeta9"}, "zeta9 is gold", said="Hmm.")
    for i in range(5):
        session.user(f"unrelated {i} " * 30)
    options = PageOptions(follow_edges=False, neighbour_weight=0.0)
    plan = page(store, PageRequest("s", "zeta9", profile(5000), options=options))
    assert SelectionReason.DEPENDENCY not in {s.reason for s in plan.selected}


def test_a_summary_replaces_the_blocks_it_was_derived_from_under_pressure(store):
    long_facts = [f"fact {i}: " + "detail " * 120 for i in range(3)]
    ids = [e.id for e in store.put_many("s", [NewBlock("fact", t) for t in long_facts])]
    summary = "summary: three detailed facts about details"
    store.put_many(
        "s",
        [NewBlock("summary", summary)],
        [Edge(_summary_id(summary), EdgeKind.DERIVED_FROM, i) for i in ids],
    )
    plan = page(store, PageRequest("s", "detail", profile(400)))
    got = reasons(plan)
    assert got[_summary_id(summary)] in {s.reason for s in plan.selected}
    replaced = [i for i in ids if got[i] is OmissionReason.REPLACED_BY_SUMMARY]
    assert replaced
    vias = {o.via for o in plan.omitted if o.candidate.block_id in replaced}
    assert vias == {_summary_id(summary)}


def test_a_summary_that_would_not_be_chosen_alone_is_substituted_for_what_does_not_fit(store):
    digest = "gist: three earlier items"  # shares no term with the task
    notes = [f"note {i}: " + "detail " * 150 for i in range(3)]
    note_ids = [content_hash(BlockKind.FACT, n) for n in notes]
    edges = [Edge(_summary_id(digest), EdgeKind.DERIVED_FROM, i) for i in note_ids]
    blocks = [NewBlock("fact", n) for n in notes]
    store.put_many("s", [*blocks, NewBlock("summary", digest, priority=0.0)], edges)
    for i in range(30):
        store.put("s", NewBlock("user-message", f"chatter {i}"))
    # On its own the summary scores under the threshold; only the notes it stands for qualify.
    options = PageOptions(neighbour_weight=0.0, threshold=0.3)
    plan = page(store, PageRequest("s", "detail note", profile(500), options=options))
    got = reasons(plan)
    assert got[_summary_id(digest)] is SelectionReason.SUMMARY_SUBSTITUTE
    assert OmissionReason.REPLACED_BY_SUMMARY in {got[i] for i in note_ids}


def _summary_id(text):
    return content_hash(BlockKind.SUMMARY, text)


def test_the_same_fact_twice_is_packed_once_but_repeated_user_turns_are_kept(store):
    store.put_many("s", [NewBlock("fact", "the gate is B12")] * 2)
    store.put_many("s", [NewBlock("user-message", "yes")] * 2)
    plan = page(store, PageRequest("s", "gate", profile(5000)))
    kinds = Counter(s.candidate.kind for s in plan.selected)
    assert kinds[BlockKind.FACT] == 1 and kinds[BlockKind.USER_MESSAGE] == 2
    (dup,) = [o for o in plan.omitted if o.reason is OmissionReason.DUPLICATE]
    assert dup.via == dup.candidate.block_id and dup.candidate.seq == 0  # the newer one is kept


def test_candidates_under_the_threshold_are_omitted_as_below_threshold(store):
    chat(store, turns=5, size=2)
    plan = page(
        store, PageRequest("s", "booking", profile(50_000), options=PageOptions(threshold=0.99))
    )
    assert OmissionReason.BELOW_THRESHOLD in {o.reason for o in plan.omitted}
    assert all(
        s.candidate.score >= 0.99 or s.reason is not SelectionReason.RELEVANCE
        for s in plan.selected
    )


def test_unused_section_budget_flows_to_other_sections_unless_turned_off(store):
    chat(store)
    flowing = page(store, PageRequest("s", "booking", profile(3000)))
    recent = flowing.usage(Section.RECENT)
    assert recent.used > recent.allocated  # borrowed what Retrieved and the others left
    fixed = page(
        store, PageRequest("s", "booking", profile(3000), options=PageOptions(flow_unused=False))
    )
    recent = fixed.usage(Section.RECENT)
    assert recent.used <= recent.allocated
    assert OmissionReason.SECTION_BUDGET in {o.reason for o in fixed.omitted}


def test_system_prompts_and_tool_schemas_are_standing_content(store):
    session = chat(store, turns=2)
    plan = page(store, PageRequest("s", "anything", profile(5000)))
    standing = {s.candidate.kind for s in plan.selected if s.reason is SelectionReason.STANDING}
    assert standing == {BlockKind.SYSTEM, BlockKind.TOOL_SCHEMA}
    assert session.ids["system"] in {s.candidate.block_id for s in plan.selected}


def test_recent_turns_are_chosen_for_recency_and_matching_ones_for_relevance(store):
    session = Session(store, "s")
    session.user("my passport number is ZX-778")
    for i in range(40):
        session.user(f"small talk {i}")
    plan = page(store, PageRequest("s", "passport ZX-778", profile(5000)))
    got = {s.candidate.seq: s.reason for s in plan.selected}
    assert got[0] is SelectionReason.RELEVANCE
    assert got[40] is SelectionReason.RECENCY


def test_every_candidate_is_accounted_for_exactly_once_in_a_total_order(store):
    chat(store, turns=30)
    plan = page(store, PageRequest("s", "booking 7", profile(2500)))
    keys = [(d.candidate.block_id, d.candidate.seq) for d in (*plan.selected, *plan.omitted)]
    assert len(keys) == len(set(keys))
    assert len(plan.selected) > 0 and len(plan.omitted) > 0
    ranks = [s.candidate.section.rank for s in plan.selected]
    assert ranks == sorted(ranks)


def test_paging_as_of_upto_equals_paging_a_store_that_stopped_there(tmp_path):
    full, cut = open_store(tmp_path / "full"), open_store(tmp_path / "cut")
    for s in (full, cut):
        index_for(s)
    chat(full, turns=20)
    upto = 25
    cut.put_many("s", [NewBlock(e.kind, e.body) for e in full.entries("s")[:upto]])
    request = PageRequest("s", "booking 3", profile(2000))
    then = page(full, replace(request, upto=upto))
    assert then.upto == upto
    assert then.to_json() == page(cut, request).to_json()
    full.close()
    cut.close()


def test_the_plan_round_trips_through_json(store):
    chat(store, turns=8)
    plan = page(store, PageRequest("s", "booking", profile(1500)))
    data = plan.to_json()
    canonical_json(data)  # JSON-able as it is
    assert PagePlan.from_json(data) == plan
    assert {"block_id", "seq", "section", "reason", "score", "scores", "tokens"} <= set(
        data["selected"][0]
    )


def test_paging_a_session_that_does_not_exist_says_so(store):
    with pytest.raises(SessionNotFound):
        page(store, PageRequest("nope", "task", profile(1000)))


def test_a_reused_call_id_pairs_each_result_with_its_own_call(store):
    session = Session(store, "s")
    first = session.tool_turn("get_user", {"user_id": "u1"}, "Mia")
    session.calls = 0  # the next call reuses the id, as GPT-4o did in tau-bench
    second = session.tool_turn("calculate", {"expression": "1+1"}, "2")
    plan = page(store, PageRequest("s", "", profile(20_000)))
    partner = {
        s.candidate.block_id: s.via for s in plan.selected if s.reason is SelectionReason.TOOL_PAIR
    }
    for call, result in (first, second):
        assert partner.get(result) == call or partner.get(call) == result


def test_the_pool_keeps_the_best_candidates_plus_fixed_blocks_and_tool_partners(store):
    session = Session(store, "s")
    session.system("sys")
    old = session.user("remember: the locker code is 4417")
    for i in range(150):
        session.user(f"filler message number {i} about nothing")
        session.tool_turn("lookup", {"n": i}, f"result {i}")
    options = PageOptions(limit=64)
    plan = page(
        store, PageRequest("s", "locker code", profile(100_000), required=(old,), options=options)
    )
    decided = [d.candidate for d in (*plan.selected, *plan.omitted)]
    assert len(decided) < 64 + 8  # the best 64, the fixed blocks and the partners of those
    assert reasons(plan)[old] is SelectionReason.REQUIRED
    kinds = Counter(c.kind for c in decided)
    assert kinds[BlockKind.TOOL_CALL] == kinds[BlockKind.TOOL_RESULT]  # never half a pair


def test_every_block_is_a_candidate_past_any_fixed_count(store):
    # Issue 16: with room for the whole session, all 700 blocks are selected (the pool used to
    # stop at 512 candidates, so an old block no retriever ranked high was never seen).
    ids = [store.put("s", NewBlock("fact", f"entry {i} of the ledger")).id for i in range(700)]
    plan = page(store, PageRequest("s", "", profile(100_000)))
    assert plan.unlisted == 0 and not plan.omitted
    assert sorted(s.candidate.block_id for s in plan.selected) == sorted(ids)


def test_blocks_past_the_horizon_are_counted_and_listed_on_demand(store):
    ids = [store.put("s", NewBlock("fact", f"entry {i} of the ledger")).id for i in range(600)]
    plan = page(store, PageRequest("s", "", profile(600)))
    listed = [d.candidate.block_id for d in (*plan.selected, *plan.omitted)]
    assert plan.unlisted > 0 and len(listed) + plan.unlisted == len(ids)
    every = plan.every_omission()
    assert len(every) == len(plan.omitted) + plan.unlisted
    unlisted = [o for o in every if o not in plan.omitted]
    decided = listed + [o.candidate.block_id for o in unlisted]
    assert sorted(decided) == sorted(ids)  # every block decided exactly once
    assert {o.reason for o in unlisted} == {OmissionReason.GLOBAL_BUDGET}
    assert all(o.candidate.tokens > 0 and o.candidate.scores for o in unlisted)
    # Selection only looked at two budgets' worth of the best: what it passed over scores lower.
    assert max(o.candidate.score for o in unlisted) <= min(s.candidate.score for s in plan.selected)
    again = PagePlan.from_json(plan.to_json())
    assert again == plan and again.to_json()["unlisted"] == plan.unlisted


def test_a_plan_lists_its_best_omissions_and_makes_the_rest_on_demand(store):
    from runtime.pager.core import OMITTED_LISTED

    for i in range(700):
        store.put("s", NewBlock("fact", f"entry {i} of the ledger"))
    plan = page(store, PageRequest("s", "", profile(4_000)))
    assert len(plan.omitted) == OMITTED_LISTED and plan.unlisted > 0
    every = plan.every_omission()
    assert len(every) == OMITTED_LISTED + plan.unlisted
    assert len({o.candidate.seq for o in every} | {s.candidate.seq for s in plan.selected}) == 700
    listed = {o.candidate.seq for o in plan.omitted}
    rest = [o for o in every if o.candidate.seq not in listed]
    assert max(o.candidate.score for o in rest) <= min(o.candidate.score for o in plan.omitted)


def test_small_budgets_propose_fewer_candidates():
    from runtime.pager.core import candidate_limit

    class Snap:
        class stats:
            total_length, n_docs = 20_000, 1_000

    assert candidate_limit(512, 200_000, Snap) == 512
    assert 64 <= candidate_limit(512, 4_000, Snap) < 512
    assert candidate_limit(512, 100, Snap) == 64


def test_an_edge_added_after_its_blocks_were_indexed_is_followed(tmp_path):
    store = open_store(tmp_path / "late")  # open_store attaches the index hook
    session = Session(store, "s")
    evidence = store.put("s", NewBlock("fact", "the fare class is Z")).id
    for i in range(10):
        session.user(f"unrelated {i} " * 30)
    claim = store.put("s", NewBlock("assistant-message", "zeta9 may rebook for free")).id
    options = PageOptions(neighbour_weight=0.0, threshold=0.99)
    request = PageRequest("s", "zeta9", profile(700), required=(claim,), options=options)
    assert reasons(page(store, request))[evidence] is not SelectionReason.DEPENDENCY
    store.add_edge(claim, "supports", evidence)
    assert reasons(page(store, request))[evidence] is SelectionReason.DEPENDENCY
    store.close()


def test_a_purged_and_refilled_session_is_never_paged_from_a_stale_cache(tmp_path):
    store = open_store(tmp_path / "refill")
    store.put("keep", NewBlock("user-message", "The launch code is 1111"))
    store.put("s", NewBlock("user-message", "The launch code is 1111"))
    request = PageRequest("s", "what is the launch code", profile(5000))
    before = [store.get(s.candidate.block_id).body for s in page(store, request).selected]
    assert before == ["The launch code is 1111"]
    store.purge_session("s")
    store.put("s", NewBlock("user-message", "The launch code is 9999"))
    after = [store.get(s.candidate.block_id).body for s in page(store, request).selected]
    assert after == ["The launch code is 9999"]
    store.close()


def test_a_dependency_of_a_required_block_never_pushes_out_the_system_prompt(store):
    system = store.put("s", NewBlock("system", "You are a careful airline agent. " * 6)).id
    long_reply = store.put("s", NewBlock("assistant-message", "details " * 740)).id
    question = store.put("s", NewBlock("user-message", "and what about my bags?")).id
    store.add_edge(question, "parent", long_reply)
    request = PageRequest("s", "bags", profile(800), required=(question,))
    got = reasons(page(store, request))
    assert got[system] is SelectionReason.STANDING
    assert got[question] is SelectionReason.REQUIRED
    assert got[long_reply] is not SelectionReason.DEPENDENCY
