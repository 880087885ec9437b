"""Eviction policy: staleness by age and size, errors, schemas, duplicates, placeholders, budget."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.blocks import BlockKind, ToolCall, parse_tool_result
from runtime.errors import BudgetTooSmall, ConfigError
from runtime.paging.eviction import (
    PAPER_CONFIG,
    EvictionConfig,
    EvictionReason,
    Pins,
    StubScope,
    paged_view,
    plan_eviction,
    request_tokens,
)
from runtime.paging.history import AgeFrom, AgeUnit, History
from runtime.paging.placeholders import StubStyle, signature
from tests.runtime.paging_builder import (
    BOOK_SCHEMA,
    COUNT,
    SessionBuilder,
    big_result,
    pairing_ok,
    random_session,
    standard,
)


def _reasons(plan, seq):
    ev = plan.get(seq)
    return None if ev is None else ev.reason


def test_tool_result_older_than_max_age_and_larger_than_min_bytes_is_stale():
    b, result = standard(turns_after=4)
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT)
    assert _reasons(plan, result.seq) is EvictionReason.STALE


def test_tool_result_younger_than_max_age_stays():
    b, result = standard(turns_after=3)
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT)
    assert plan.get(result.seq) is None


def test_max_age_is_configurable():
    b, result = standard(turns_after=2)
    assert plan_eviction(b.entries, EvictionConfig(max_age=2), COUNT).get(result.seq)
    assert plan_eviction(b.entries, EvictionConfig(max_age=3), COUNT).get(result.seq) is None


def test_tool_result_at_or_under_min_bytes_is_never_stale():
    b = SessionBuilder()
    b.user("check ZFA04Y")
    small = b.exchange("get_reservation_details", {"reservation_id": "ZFA04Y"}, "x" * 500)
    bigger = b.exchange("get_reservation_details", {"reservation_id": "ZFA04Z"}, "y" * 501)
    b.users(6)
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT)
    assert plan.get(small.seq) is None
    assert _reasons(plan, bigger.seq) is EvictionReason.STALE


def test_error_results_are_never_evicted_even_under_pressure():
    b = SessionBuilder()
    b.system()
    b.user("book it")
    call = b.call("book_reservation", {"user_id": "sara_doe_496"})
    error = b.result(call, "Error: payment declined. " * 60, is_error=True)
    b.users(6)
    other = b.exchange("get_reservation_details", {"reservation_id": "ZFA04Y"}, big_result("Z"))
    b.user("thanks")
    config = EvictionConfig()
    assert plan_eviction(b.entries, config, COUNT).get(error.seq) is None
    budget = request_tokens(b.entries, plan_eviction(b.entries, config, COUNT), COUNT) - 10
    squeezed = plan_eviction(b.entries, config, COUNT, budget=budget)
    assert squeezed.get(error.seq) is None
    assert squeezed.get(other.seq) is not None
    assert request_tokens(b.entries, squeezed, COUNT) <= budget


def test_age_counts_from_last_use_so_a_result_the_model_keeps_mentioning_stays():
    b, result = standard(turns_after=3)
    b.assistant("Reservation ZFA04Y is still the one we are changing.")
    b.users(2, start=10)
    lru = plan_eviction(b.entries, EvictionConfig(), COUNT)
    fifo = plan_eviction(b.entries, EvictionConfig(age_from=AgeFrom.CREATED), COUNT)
    assert lru.get(result.seq) is None
    assert _reasons(fifo, result.seq) is EvictionReason.STALE


def test_user_role_message_ages_count_tool_round_trips_too():
    b = SessionBuilder()
    b.user("look up ZFA04Y")
    first = b.exchange("get_reservation_details", {"reservation_id": "ZFA04Y"}, big_result("A1"))
    for i in range(4):  # four more tool round trips inside the same user turn
        b.exchange("get_reservation_details", {"reservation_id": f"Q{i}"}, "short")
    history = History.of(b.entries)
    assert history.ages(AgeUnit.USER_MESSAGES)[first.seq] == 0
    assert history.ages(AgeUnit.USER_ROLE_MESSAGES)[first.seq] == 4


def test_unused_tool_schema_is_stubbed_and_a_used_one_kept_in_full():
    b, _ = standard(turns_after=0)
    config = EvictionConfig(stub_schemas=StubScope.UNUSED)
    plan = plan_eviction(b.entries, config, COUNT)
    lookup, book = b.entries[0], b.entries[1]
    assert plan.get(lookup.seq) is None  # get_reservation_details was called
    stub = plan.get(book.seq)
    assert stub is not None and stub.reason is EvictionReason.UNUSED_SCHEMA
    assert stub.tool_name == "book_reservation"


def test_scope_all_stubs_every_schema_and_each_stub_stays_callable():
    b, _ = standard(turns_after=0)
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT)
    for entry in b.entries[:2]:
        stub = json.loads(plan.get(entry.seq).body)
        original = json.loads(entry.body)
        assert stub["name"] == original["name"]
        assert signature(original["input_schema"]) in stub["description"]
        assert entry.block.short_id in stub["description"]
        assert COUNT(plan.get(entry.seq).body) < COUNT(entry.body)


def test_signature_shows_required_fields_enums_and_nesting():
    text = signature(BOOK_SCHEMA["input_schema"])
    assert text == (
        '{user_id: string, cabin: "economy"|"business", '
        "flights: [{flight_number: string, date: string}]}"
    )


def test_minimal_stub_hides_the_input_and_no_stubs_with_scope_none():
    b, _ = standard(turns_after=0)
    minimal = plan_eviction(b.entries, EvictionConfig(stub_style=StubStyle.MINIMAL), COUNT)
    assert json.loads(minimal.get(1).body)["input_schema"] == {"type": "object"}
    assert not minimal.stubs_show_input
    none = plan_eviction(b.entries, EvictionConfig(stub_schemas=StubScope.NONE), COUNT)
    assert none.by_reason(EvictionReason.UNUSED_SCHEMA) == ()


def test_duplicate_result_points_at_the_first_copy_which_stays():
    b = SessionBuilder()
    b.user("check ZFA04Y twice")
    first = b.exchange("get_reservation_details", {"reservation_id": "ZFA04Y"}, big_result("Z"))
    second = b.exchange("get_reservation_details", {"reservation_id": "ZFA04Y"}, big_result("Z"))
    b.assistant("done")
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT)
    assert plan.get(first.seq) is None
    dup = plan.get(second.seq)
    assert dup.reason is EvictionReason.DUPLICATE and dup.original_id == first.id
    assert first.block.short_id in dup.placeholder


def test_dedup_off_keeps_both_copies():
    b = SessionBuilder()
    b.user("twice")
    b.exchange("get_reservation_details", {"reservation_id": "ZFA04Y"}, big_result("Z"))
    b.exchange("get_reservation_details", {"reservation_id": "ZFA04Y"}, big_result("Z"))
    plan = plan_eviction(b.entries, EvictionConfig(dedup=False), COUNT)
    assert plan.by_reason(EvictionReason.DUPLICATE) == ()


def test_evicted_result_stays_a_tool_result_for_the_same_call():
    b, result = standard(turns_after=5)
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT)
    packed = parse_tool_result(plan.get(result.seq).body)
    original = parse_tool_result(result.body)
    assert packed.call_id == original.call_id and not packed.is_error
    assert packed.content == plan.get(result.seq).placeholder
    items = paged_view(b.entries, plan)
    assert pairing_ok([(i.entry.kind, i.body) for i in items])


def test_placeholder_is_one_line_with_id_size_and_the_call_it_answers():
    b, result = standard(turns_after=5)
    line = plan_eviction(b.entries, EvictionConfig(), COUNT).get(result.seq).placeholder
    assert "\n" not in line
    assert result.block.short_id in line
    assert 'get_reservation_details(reservation_id="ZFA04Y")' in line
    assert f"{len(parse_tool_result(result.body).content.encode()):,} bytes" in line
    assert "recall(" in line
    paper = plan_eviction(b.entries, PAPER_CONFIG, COUNT).get(result.seq).placeholder
    assert "Re-run the tool call" in paper and "recall" not in paper


def test_a_reused_tool_use_id_is_matched_to_the_latest_call_before_the_result():
    # Recorded agents reuse ids: tau-bench has the same call id for two different calls.
    b = SessionBuilder()
    b.user("who am I")
    first = ToolCall("call_same", "get_user_details", {"user_id": "mia_li_3668"})
    b.add(BlockKind.TOOL_CALL, first.body())
    details = b.result(first, big_result("mia_li_3668"))
    second = ToolCall("call_same", "calculate", {"expression": "152 + 103"})
    b.add(BlockKind.TOOL_CALL, second.body())
    b.result(second, "255.0")
    b.users(5)
    ev = plan_eviction(b.entries, EvictionConfig(), COUNT).get(details.seq)
    assert 'get_user_details(user_id="mia_li_3668")' in ev.placeholder
    assert ev.call_key == '["get_user_details",{"user_id":"mia_li_3668"}]'


def test_placeholder_reads_the_same_in_every_later_request():
    b, result = standard(turns_after=5)
    early = plan_eviction(b.entries, EvictionConfig(), COUNT).get(result.seq).body
    b.users(7, start=20)
    later = plan_eviction(b.entries, EvictionConfig(), COUNT).get(result.seq).body
    assert early == later


def test_pinned_block_is_not_evicted_for_staleness_or_duplication():
    b, result = standard(turns_after=6)
    pins = Pins(frozenset([result.id]), {result.id: 1})
    assert plan_eviction(b.entries, EvictionConfig(), COUNT, pins).get(result.seq) is None


def test_each_fault_doubles_the_age_threshold():
    b, result = standard(turns_after=6)
    once = Pins(frozenset(), {result.id: 1})  # faulted once, pin lapsed: threshold 8
    assert plan_eviction(b.entries, EvictionConfig(), COUNT, once).get(result.seq) is None
    b.users(2, start=30)
    assert plan_eviction(b.entries, EvictionConfig(), COUNT, once).get(result.seq)
    no_backoff = EvictionConfig(backoff=False)
    assert plan_eviction(b.entries, no_backoff, COUNT, once).get(result.seq)


def test_budget_squeezes_oldest_results_then_messages_and_never_the_latest_user_message():
    b, _ = standard(turns_after=1)
    for i in range(6):
        b.exchange("get_reservation_details", {"reservation_id": f"R{i}X"}, big_result(f"R{i}X"))
        b.user(f"and now reservation R{i}X please, with a long explanation " * 5)
    latest = b.entries[-1]
    budget = 1500
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT, budget=budget)
    assert request_tokens(b.entries, plan, COUNT) <= budget
    assert plan.get(latest.seq) is None
    assert plan.by_reason(EvictionReason.PRESSURE)


def test_budget_too_small_says_how_much_was_needed():
    b, _ = standard(turns_after=1)
    with pytest.raises(BudgetTooSmall, match="over the budget of 50"):
        plan_eviction(b.entries, EvictionConfig(), COUNT, budget=50)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.integers(300, 6000))
def test_a_plan_fits_the_budget_or_raises_and_always_keeps_pairing(seed, budget):
    b = random_session(seed)
    try:
        plan = plan_eviction(b.entries, EvictionConfig(), COUNT, budget=budget)
    except BudgetTooSmall:
        return
    assert request_tokens(b.entries, plan, COUNT) <= budget
    items = paged_view(b.entries, plan)
    assert pairing_ok([(i.entry.kind, i.body) for i in items])
    for ev in plan.evictions:
        assert ev.kind not in (BlockKind.SYSTEM, BlockKind.TOOL_CALL)
        assert COUNT(ev.body) < COUNT(b.entries[ev.seq].body)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_plan_does_not_depend_on_the_order_entries_are_given_in(seed):
    b = random_session(seed)
    shuffled = list(b.entries)
    random.Random(seed).shuffle(shuffled)

    def plan_json(entries):
        try:
            return json.dumps(
                plan_eviction(entries, EvictionConfig(), COUNT, budget=2500).to_json()
            )
        except BudgetTooSmall as exc:
            return str(exc)

    assert plan_json(b.entries) == plan_json(shuffled)


def test_config_round_trips_through_json_and_refuses_nonsense():
    config = EvictionConfig(max_age=6, age_unit=AgeUnit.USER_ROLE_MESSAGES, pin_user_turns=3)
    assert EvictionConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(ConfigError, match="max_age"):
        EvictionConfig(max_age=0)
    with pytest.raises(ConfigError, match="stub_style"):
        EvictionConfig.from_json({"stub_style": "tiny"})
