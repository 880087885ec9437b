"""The cache-aware eviction mode: stable prefix, batch eviction, placeholders, budget."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.blocks import BlockKind, Entry, ToolCall
from runtime.errors import BudgetTooSmall, ConfigError
from runtime.paging.cacheaware import cache_aware_config, cache_breakpoints, plan_cache_aware
from runtime.paging.eviction import (
    Eviction,
    EvictionConfig,
    EvictionMode,
    EvictionReason,
    Pins,
    PlanOverBudget,
    plan_eviction,
    pressure_placeholder,
    request_tokens,
    tightened,
)
from runtime.paging.faults import PagingState
from runtime.paging.history import History
from runtime.paging.turn import PagedTurn, TurnOverBudget, finish_turn, page_turn
from tests.runtime.paging_builder import (
    BOOK_SCHEMA,
    COUNT,
    LOOKUP_SCHEMA,
    SessionBuilder,
    big_result,
    pairing_ok,
    random_session,
)

_CALLS = (BlockKind.ASSISTANT_MESSAGE, BlockKind.TOOL_CALL)


def long_session(turns: int = 14) -> SessionBuilder:
    b = SessionBuilder()
    b.schema(LOOKUP_SCHEMA)
    b.schema(BOOK_SCHEMA)
    b.system("You are a careful agent. " * 20)
    for t in range(turns):
        b.user(f"Turn {t}: look at reservation R{t:02d}X please.")
        b.exchange("get_reservation_details", {"reservation_id": f"R{t:02d}X"},
                   big_result(f"R{t:02d}X", 1500))  # fmt: skip
        b.assistant(f"Reservation R{t:02d}X is booked.")
    return b


def replay(b: SessionBuilder, budget: int, config: EvictionConfig | None = None) -> list[PagedTurn]:
    """Page every model call of ``b`` in order, as a live session would."""
    config = config or cache_aware_config(budget)
    out: list[PagedTurn] = []
    state, previous = PagingState(), None
    n = 0
    for i, e in enumerate(b.entries):
        if e.kind not in _CALLS or (i and b.entries[i - 1].kind in _CALLS):
            continue
        n += 1
        paged = page_turn(b.entries[:i], config, state, COUNT, turn=n, budget=budget,
                          previous=previous)  # fmt: skip
        paged, state = finish_turn(paged, (), state)
        out.append(paged)
        previous = paged
    return out


def stable_prefix(paged: PagedTurn) -> list[str]:
    kinds = {i.entry.seq: i.entry.kind for i in paged.items}
    return [
        i.key for i in paged.request
        if i.seq < 0 or kinds[i.seq] in (BlockKind.TOOL_SCHEMA, BlockKind.SYSTEM)
    ]  # fmt: skip


def test_config_is_cache_aware_with_every_schema_stubbed_and_checks_its_budget():
    config = cache_aware_config(8000)
    assert config.mode is EvictionMode.CACHE_AWARE and config.stub_schemas.value == "all"
    assert EvictionConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="positive"):
        cache_aware_config(0)
    with pytest.raises(ConfigError, match="high_water"):
        EvictionConfig(high_water=1.5)


def test_the_stable_prefix_is_byte_identical_in_every_request():
    turns = replay(long_session(), 4000)
    first = stable_prefix(turns[0])
    assert first and all(stable_prefix(t) == first for t in turns)
    assert turns[0].plan.offers_recall  # the recall tool is in the prefix from the start


def test_evictions_come_in_batches_only_under_pressure_and_then_stay():
    b = long_session()
    turns = replay(b, 4000)
    batches = []
    for before, after in zip(turns, turns[1:], strict=False):
        old = {e.seq: e.body for e in before.plan.evictions}
        new = {e.seq: e.body for e in after.plan.evictions}
        assert all(new.get(seq) == body for seq, body in old.items())  # kept, byte for byte
        added = [e for e in after.plan.evictions if e.seq not in old]
        if added:
            batches.append(after.turn)
            # the request without the new batch would not have fit
            entries = b.entries[: max(i.entry.seq for i in after.items) + 1]
            carried = plan_cache_aware(entries, after.config, COUNT, Pins(), None,
                                       before.plan, 0)  # fmt: skip
            assert request_tokens(entries, carried, COUNT) > 4000
    assert batches and len(batches) < len(turns) / 3
    assert all(t.tokens <= 4000 for t in turns)


def test_nothing_is_dropped_every_paged_block_is_a_placeholder_with_its_id():
    b = long_session()
    turns = replay(b, 3000)
    last = turns[-1]
    seqs = [i.entry.seq for i in last.items]
    assert seqs == list(range(len(seqs)))  # every block of the history is in the request
    messages = [e for e in last.plan.evictions if e.kind is BlockKind.USER_MESSAGE]
    results = [e for e in last.plan.evictions if e.kind is BlockKind.TOOL_RESULT]
    assert results
    for ev in [*messages, *results]:
        assert ev.reason is EvictionReason.PRESSURE
        assert f"block {ev.block_id[:12]}" in ev.placeholder and "recall" in ev.placeholder


def test_a_fault_pins_its_block_back_in_full():
    b = long_session()
    turns = replay(b, 4000)
    evicted = next(
        t for t in turns if any(e.kind is BlockKind.TOOL_RESULT for e in t.plan.evictions)
    )
    ev = next(e for e in evicted.plan.evictions if e.kind is BlockKind.TOOL_RESULT)
    state = PagingState()
    _, state = finish_turn(
        evicted, (ToolCall("r1", "recall", {"block_id": ev.block_id[:12]}),), state
    )
    entries = b.entries[: max(i.entry.seq for i in evicted.items) + 1]
    again = page_turn(entries, evicted.config, state, COUNT, turn=evicted.turn, budget=6000,
                      previous=evicted)  # fmt: skip
    assert again.plan.get(ev.seq) is None


def test_breakpoints_are_at_most_four_and_mark_the_prefix_and_the_end():
    turns = replay(long_session(), 4000)
    for before, t in zip(turns, turns[1:], strict=False):
        kinds = {i.entry.seq: i.entry.kind for i in t.items}
        bps = cache_breakpoints(t.request, kinds, before.request)
        assert 1 <= len(bps) <= 4 and bps[-1] == len(t.request)
        assert bps == tuple(sorted(set(bps)))
        assert len(stable_prefix(t)) in bps


def test_a_budget_below_the_stable_prefix_is_a_clear_error():
    with pytest.raises(BudgetTooSmall, match="raise the budget"):
        replay(long_session(3), 200)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.integers(1500, 6000))
def test_property_prefix_stable_plan_grows_budget_kept_pairing_holds(seed, budget):
    b = random_session(seed)
    try:
        turns = replay(b, budget)
    except BudgetTooSmall:
        return
    for before, after in zip(turns, turns[1:], strict=False):
        assert stable_prefix(after) == stable_prefix(before)
        old = {e.seq: e for e in before.plan.evictions}
        assert all(same_or_tightened(ev, after) for ev in old.values())
    for t in turns:
        assert t.tokens <= budget
        assert pairing_ok([(i.entry.kind, i.body) for i in t.items])


def same_or_tightened(before: Eviction, turn: PagedTurn) -> bool:
    """A carried placeholder reads the same, or became its tight line (one way: never back)."""
    after = turn.plan.get(before.seq)
    if after is None or after.body == before.body:
        return after is not None
    entry = next(i.entry for i in turn.items if i.entry.seq == before.seq)
    return after == tightened(entry, before, turn.config, COUNT) != before


def _tight(ev: Eviction | None) -> bool:
    return ev is not None and "; recall(" in ev.placeholder  # a described line: "if you need it."


def test_a_request_whose_placeholders_alone_overflow_tightens_them_instead_of_breaking_the_budget():
    # 20 exchanges: with every result a described placeholder the request is over 3,000 tokens
    # (it raised BudgetTooSmall, and the benchmark sent it over budget); tight lines fit.
    turns = replay(long_session(20), 3000)
    assert all(t.tokens <= 3000 for t in turns)
    first = next(n for n, t in enumerate(turns) if any(_tight(e) for e in t.plan.evictions))
    later = turns[first:]
    # Tightened at once, all of them, and they stay tight: one rewrite, not one a turn.
    assert all(_tight(e) for e in later[0].plan.evictions if e.kind is BlockKind.TOOL_RESULT)
    for before, after in zip(later, later[1:], strict=False):
        assert all(after.plan.get(e.seq) == e for e in before.plan.evictions)
    # Each tight line still names its block and how to recall it; the call is beside it.
    ev = next(e for e in later[-1].plan.evictions if e.kind is BlockKind.TOOL_RESULT)
    assert f'recall(block_id="{ev.block_id[:12]}")' in ev.placeholder
    assert all(pairing_ok([(i.entry.kind, i.body) for i in t.items]) for t in turns)


def _pinned_session() -> tuple[list[Entry], Entry, Pins]:
    entries = long_session(20).entries
    results = [e for e in entries if e.kind is BlockKind.TOOL_RESULT]
    pinned = results[2]
    return entries, pinned, Pins(frozenset({pinned.id}), {pinned.id: 1})


@pytest.mark.parametrize("budget", [2750, 3000])
def test_a_just_recalled_block_stays_when_tightening_the_others_fits(budget):
    # Everything unpinned as a described placeholder is over the budget; keeping the pinned
    # block and tightening the others fits (about 2,620 tokens): paging the block the model has
    # just recalled back out would only bring the fault back.
    entries, pinned, pins = _pinned_session()
    plan = plan_eviction(entries, EvictionConfig(), COUNT, pins=pins, budget=budget)
    assert request_tokens(entries, plan, COUNT) <= budget
    assert plan.get(pinned.seq) is None
    assert all(_tight(e) for e in plan.evictions if e.kind is BlockKind.TOOL_RESULT)


def test_a_pinned_block_goes_only_when_nothing_else_can_make_room():
    entries, pinned, pins = _pinned_session()
    plan = plan_eviction(entries, EvictionConfig(), COUNT, pins=pins, budget=2500)
    assert request_tokens(entries, plan, COUNT) <= 2500
    assert _tight(plan.get(pinned.seq))


def _chatty(turns: int = 60) -> list[Entry]:
    b = SessionBuilder()
    b.schema(LOOKUP_SCHEMA)
    b.system("sys")
    said = "please check the thing about my booking and the seats and the dates again " * 3
    for t in range(turns):
        b.user(f"{t} {said}")
        b.assistant(f"{t} ok, I checked your booking, seats and the dates, all fine.")
    b.user("last")
    return b.entries


def test_short_messages_whose_described_line_is_not_shorter_still_get_their_tight_line():
    entries = _chatty()
    s = History.of(entries)
    assert pressure_placeholder(s, entries[2], EvictionConfig(), COUNT) is None  # too short
    full = request_tokens(entries, plan_eviction(entries, EvictionConfig(), COUNT), COUNT)
    for budget in (full - 10, full - 100):
        plan = plan_eviction(entries, EvictionConfig(), COUNT, budget=budget)
        assert request_tokens(entries, plan, COUNT) <= budget
        paged = [e for e in plan.evictions if e.kind is not BlockKind.TOOL_SCHEMA]
        assert paged and all(_tight(e) for e in paged)
        assert all(e.kind in (BlockKind.USER_MESSAGE, BlockKind.ASSISTANT_MESSAGE)
                   and COUNT(e.body) < COUNT(entries[e.seq].body) for e in paged)  # fmt: skip


def test_over_budget_carries_the_smallest_plan_found_not_an_unpaged_request():
    entries, _, _ = _pinned_session()
    with pytest.raises(PlanOverBudget) as raised:
        plan_eviction(entries, EvictionConfig(), COUNT, budget=1000)
    best = raised.value.plan
    unbounded = plan_eviction(entries, EvictionConfig(), COUNT)
    assert request_tokens(entries, best, COUNT) < request_tokens(entries, unbounded, COUNT)
    assert f"needs {request_tokens(entries, best, COUNT):,} tokens" in str(raised.value)
    assert sum(_tight(e) for e in best.evictions) >= 19  # every result but the last call's
    # page_turn hands the caller that plan as a turn, to send flagged over budget.
    with pytest.raises(TurnOverBudget) as turned:
        page_turn(entries, EvictionConfig(), PagingState(), COUNT, turn=1, budget=1000)
    assert turned.value.paged.plan == best
    assert turned.value.paged.tokens == request_tokens(entries, best, COUNT)


def test_a_tight_duplicate_points_at_the_block_above_and_invites_no_recall():
    b = SessionBuilder()
    b.schema(LOOKUP_SCHEMA)
    b.system("sys")
    for t in range(3):
        b.user(f"Turn {t}: again please.")
        b.exchange("get_reservation_details", {"reservation_id": "R00X"}, big_result("R00X", 900))
        b.assistant("Done.")
    b.user("last")
    entries = b.entries
    plan = plan_eviction(entries, EvictionConfig(), COUNT)
    dup = plan.by_reason(EvictionReason.DUPLICATE)[0]
    tight = tightened(entries[dup.seq], dup, EvictionConfig(), COUNT)
    assert tight != dup and "recall" not in tight.placeholder
    assert f"same as block {dup.original_id[:12]} above" in tight.placeholder
