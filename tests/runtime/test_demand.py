"""Demand paging inside the pager and packer: placeholders, stubs, the recall tool, pins."""

from __future__ import annotations

import json
from dataclasses import replace

from hypothesis import event, given, settings
from hypothesis import strategies as st

from runtime import NewBlock
from runtime.blocks import BlockKind, parse_tool_result
from runtime.errors import BudgetTooSmall
from runtime.packer.core import pack
from runtime.pager.core import PageOptions, PageRequest, page
from runtime.pager.plan import PagePlan, SelectionReason
from runtime.paging.demand import DemandPaging, page_with_paging, paged_turn, session_entries
from runtime.paging.eviction import EvictionConfig, StubScope
from runtime.paging.placeholders import RECALL_TOOL_NAME
from tests.properties import WITH_FIXTURES
from tests.runtime.pager_support import (
    Session,
    assert_valid_anthropic_conversation,
    example_store,
    profile,
)
from tests.runtime.test_pager_properties import check_packed, check_plan, examples

TOOL = {
    "description": "Look up a user's profile. " + "It returns the name, address and tier. " * 8,
    "input_schema": {
        "properties": {"user_id": {"description": "The user id, such as mia_li_3668.",
                                   "type": "string"}},
        "type": "object",
    },
    "name": "get_user",
}  # fmt: skip
BIG = json.dumps([{"flight_number": f"HAT{n:03d}", "price": 100 + n} for n in range(40)])


def long_session(store, name="s", turns=6):
    """A session whose first tool result is big and never mentioned again (stale by turn 5)."""
    session = Session(store, name)
    session.system("You are an airline agent.")
    session.tool_schema(TOOL)
    session.user("Find flights to SEA.")
    _, stale = session.tool_turn("get_user", {"user_id": "mia"}, BIG)
    for i in range(turns):
        session.user(f"Question {i}: " + "what are the baggage rules on this route? " * 20)
        session.assistant(f"Answer {i}: " + "two bags are free in economy on that route. " * 20)
    session.user("And the last question?")
    return session, stale


def paged(store, budget=20_000, name="s", paging=None, task=""):
    request = PageRequest(name, task, profile(budget))
    plan = page_with_paging(store, request, paging or DemandPaging())
    return plan, pack(store, plan)


def results_by_id(request):
    return {
        b["tool_use_id"]: b for m in request["messages"] for b in m["content"]
        if b["type"] == "tool_result"
    }  # fmt: skip


def test_a_stale_tool_result_is_sent_as_a_placeholder_tool_result_for_its_call(store):
    _, stale = long_session(store)
    plan, out = paged(store)
    stand_in = {s.candidate.block_id: s.stand_in for s in plan.stand_ins}[stale]
    assert stand_in.reason == "stale"
    sent = results_by_id(out.request)["toolu_s_0001"]
    assert sent["content"] == stand_in.text
    assert sent["content"].startswith(f"[Paged out: block {stale[:12]}, result of get_user(")
    assert stand_in.text in out.text and BIG not in out.text
    assert_valid_anthropic_conversation(out.request)


def test_anything_paged_out_appends_the_recall_tool_last(store):
    long_session(store)
    plan, out = paged(store)
    assert plan.recall
    assert [t["name"] for t in out.request["tools"]] == ["get_user", RECALL_TOOL_NAME]
    assert "cache_control" not in out.request["tools"][-1]  # the system block ends the prefix


def test_a_stand_in_is_counted_at_its_own_size(store):
    _, stale = long_session(store)
    full = page(store, PageRequest("s", "", profile(20_000)))
    plan, out = paged(store)
    full_tokens = {s.candidate.block_id: s.candidate.tokens for s in full.selected}[stale]
    mine = next(s for s in plan.stand_ins if s.candidate.block_id == stale)
    assert mine.stand_in.full_tokens == full_tokens > mine.candidate.tokens
    assert out.chat_tokens <= plan.tokens < full.tokens


def test_tool_schemas_become_stubs_that_keep_the_tool_callable(store):
    long_session(store)
    _, out = paged(store)
    stub = out.request["tools"][0]
    assert stub["name"] == "get_user" and "[stub of block" in stub["description"]


def test_without_the_option_the_pager_pages_nothing_out(store):
    long_session(store)
    plan = page(store, PageRequest("s", "", profile(20_000)))
    data = plan.to_json()
    assert "recall" not in data and "paging" not in data["settings"]
    assert not any("stand_in" in s for s in data["selected"])
    assert RECALL_TOOL_NAME not in [t["name"] for t in pack(store, plan).request["tools"]]


def test_a_block_pinned_by_a_fault_is_sent_in_full(store):
    _, stale = long_session(store)
    plan, out = paged(store, paging=DemandPaging(pinned=(stale,), faults=((stale, 1),)))
    assert stale not in [s.candidate.block_id for s in plan.stand_ins]
    assert results_by_id(out.request)["toolu_s_0001"]["content"] == BIG
    assert stale in plan.settings["pinned"]


def test_under_pressure_dropped_turns_come_back_as_placeholders(store):
    long_session(store, turns=30)
    request = PageRequest("s", "", profile(3000))
    plain = page(store, request)
    plan = page_with_paging(store, request, DemandPaging())
    reasons = [s.reason for s in plan.selected]
    assert SelectionReason.PLACEHOLDER in reasons
    assert len(plan.omitted) < len(plain.omitted)
    assert {s.candidate.seq for s in plain.selected} <= {s.candidate.seq for s in plan.selected}
    out = pack(store, plan)
    assert "[Paged out: block" in out.text and out.chat_tokens <= plan.tokens <= plan.budget
    assert_valid_anthropic_conversation(out.request)


def test_placeholders_can_be_turned_off(store):
    long_session(store, turns=30)
    request = PageRequest("s", "", profile(3000))
    plan = page_with_paging(store, request, DemandPaging(placeholders=False))
    assert SelectionReason.PLACEHOLDER not in [s.reason for s in plan.selected]


def test_a_demand_paged_plan_round_trips_through_json_to_the_same_bytes(store):
    long_session(store, turns=30)
    plan, out = paged(store, budget=3000)
    again = PagePlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    assert pack(store, again).body == out.body


def test_the_option_is_recorded_in_the_plan_settings(store):
    long_session(store)
    option = DemandPaging(EvictionConfig(max_age=2, stub_schemas=StubScope.UNUSED))
    plan, _ = paged(store, paging=option)
    assert DemandPaging.from_json(plan.settings["paging"]) == option


def test_the_turn_accounting_counts_the_placeholders_and_what_they_saved(store):
    long_session(store)
    plan, _ = paged(store)
    turn = paged_turn(plan, session_entries(store, plan), turn=3)
    acc = turn.accounting
    assert acc.turn == 3 and acc.evictions == len(plan.stand_ins)
    cats = {c.category.value: c for c in acc.categories}
    assert cats["stale-tool-results"].packed < cats["stale-tool-results"].full
    assert cats["paging"].packed > 0 and acc.saved_tokens > 0
    assert turn.to_json()["plan"]["recall"] is True


@settings(WITH_FIXTURES, max_examples=60)
@given(
    budget=st.integers(min_value=200, max_value=6000),
    pin_first_result=st.booleans(),
    **examples,
)
def test_demand_paging_keeps_every_invariant(
    tmp_path_factory, plan_steps, budget, task, mode, pin_first_result, tokenizer
):
    with example_store(tmp_path_factory, "demand") as store:
        build_long(store, plan_steps)
        entries = store.entries("s")
        results = [e for e in entries if e.kind is BlockKind.TOOL_RESULT]
        pinned = (results[0].id,) if pin_first_result and results else ()
        # Every tool result is stale at once, so stand-ins appear in small sessions too.
        option = DemandPaging(EvictionConfig(max_age=1, min_bytes=0), pinned)
        request = PageRequest("s", task, profile(budget, tokenizer=tokenizer),
                              options=PageOptions(render=mode))  # fmt: skip
        try:
            plain = page(store, replace(request, pinned=pinned))  # what fault pins ask for
            plan = page_with_paging(store, request, option)
        except BudgetTooSmall:
            event("refused: the task alone is over the budget")
            return
        event(
            f"stand-ins: {min(len(plan.stand_ins), 3)}; placeholders: {any(s.reason is SelectionReason.PLACEHOLDER for s in plan.selected)}"
        )
        check_plan(store, plan, request)
        check_packed(store, plan, mode, tokenizer)
        check_stand_ins(store, plan, plain, pinned)


def build_long(store, plan_steps):
    """Build the property session with bodies long enough for placeholders to pay."""
    session = Session(store, "s")
    session.tool_schema(TOOL)
    for step in plan_steps:
        kind, body = step[0], step[1] * 12
        if kind == "user":
            session.user(body)
        elif kind == "assistant":
            session.assistant(body)
        elif kind == "tool":
            session.tool_turn("get_user", {"q": body[:10]}, body, said=None, error=step[2])
        else:
            store.put("s", NewBlock(kind, body))


def check_stand_ins(store, plan, plain, pinned):
    assert {s.candidate.seq for s in plain.selected} <= {s.candidate.seq for s in plan.selected}
    decided = sorted(
        (d.candidate.seq or -1, d.candidate.block_id) for d in (*plan.selected, *plan.omitted)
    )
    before = sorted(
        (d.candidate.seq or -1, d.candidate.block_id) for d in (*plain.selected, *plain.omitted)
    )
    assert decided == before  # the same candidates, each still decided once
    for s in plan.stand_ins:
        assert s.candidate.block_id not in pinned
        assert s.candidate.tokens < s.stand_in.full_tokens
        if s.candidate.kind is BlockKind.TOOL_RESULT:
            original = parse_tool_result(store.get(s.candidate.block_id).body)
            sent = parse_tool_result(s.stand_in.body)
            assert not original.is_error and sent.call_id == original.call_id
    assert plan.recall == bool(plan.stand_ins)


def test_a_duplicate_whose_original_the_pager_left_out_is_sent_in_full(store):
    session = Session(store, "s")
    session.system("You are an airline agent.")
    session.tool_schema(TOOL)
    session.user("Find flights to SEA.")
    _, first = session.tool_turn("get_user", {"user_id": "mia"}, BIG)
    for i in range(6):
        session.user(f"Question {i}: " + "what are the baggage rules on this route? " * 20)
        session.assistant(f"Answer {i}: " + "two bags are free in economy on that route. " * 20)
    session.user("Again please.")
    _, second = session.tool_turn("get_user", {"user_id": "mia"}, BIG)
    session.user("And the last question?")
    encoded = json.dumps(BIG)[1:-1].encode()
    for paging in (DemandPaging(), DemandPaging(placeholders=False)):
        plan, out = paged(store, budget=3000, paging=paging)
        chosen = {s.candidate.block_id: s for s in plan.selected}
        assert first not in chosen and chosen[second].stand_in is None  # the only copy sent
        assert out.body.count(encoded) == 1
    plan, out = paged(store)  # room for both: the later copy points to the first
    assert {s.candidate.block_id: s for s in plan.selected}[second].stand_in.reason == "duplicate"
    assert out.body.count(encoded) == 1
