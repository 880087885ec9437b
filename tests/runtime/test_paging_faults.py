"""Page faults: recall and repeat detection, fault-driven pinning, refault backoff, stored state."""

from __future__ import annotations

import json

import pytest

from runtime import open_store
from runtime.blocks import NewBlock, ToolCall
from runtime.errors import BlockNotFound, StoreCorrupted
from runtime.paging.eviction import EvictionConfig, plan_eviction
from runtime.paging.faults import (
    FaultKind,
    PageFault,
    PagingState,
    detect_faults,
    load_state,
    recall_content,
    record_faults,
    save_state,
)
from runtime.paging.history import History
from runtime.paging.placeholders import StubStyle
from runtime.paging.turn import finish_turn, page_turn
from tests.runtime.paging_builder import COUNT, big_result, standard


def _recall(block_id: str) -> ToolCall:
    return ToolCall("call_r", "recall", {"block_id": block_id})


def _stale_session():
    b, result = standard(turns_after=5)
    plan = plan_eviction(b.entries, EvictionConfig(), COUNT)
    assert plan.get(result.seq) is not None
    return b, result, plan


def test_recalling_a_paged_out_block_by_its_short_id_is_a_recall_fault():
    _, result, plan = _stale_session()
    faults = detect_faults(plan, [_recall(result.block.short_id)], turn=7, user_turn=6)
    assert faults == (PageFault(FaultKind.RECALL, result.id, 7, 6, "recall"),)


def test_recalling_a_block_that_is_not_paged_out_is_not_a_fault():
    b, _, plan = _stale_session()
    resident = b.entries[3]  # the first user message, never evicted
    assert detect_faults(plan, [_recall(resident.block.short_id)], turn=7, user_turn=6) == ()
    assert detect_faults(plan, [_recall("not hex")], turn=7, user_turn=6) == ()


def test_repeating_the_call_whose_result_was_paged_out_is_a_repeat_fault():
    _, result, plan = _stale_session()
    again = ToolCall("call_new", "get_reservation_details", {"reservation_id": "ZFA04Y"})
    other = ToolCall("call_other", "get_reservation_details", {"reservation_id": "OTHER1"})
    faults = detect_faults(plan, [other, again, again], turn=7, user_turn=6)
    assert [(f.kind, f.block_id) for f in faults] == [(FaultKind.REPEAT, result.id)]


def test_calling_a_tool_whose_stub_hid_its_input_is_a_schema_fault_but_a_compact_stub_is_not():
    b, _ = standard(turns_after=0)
    book = ToolCall("call_b", "book_reservation", {"user_id": "sara_doe_496"})
    minimal = plan_eviction(b.entries, EvictionConfig(stub_style=StubStyle.MINIMAL), COUNT)
    faults = detect_faults(minimal, [book], turn=2, user_turn=1)
    assert [(f.kind, f.block_id) for f in faults] == [(FaultKind.SCHEMA, b.entries[1].id)]
    compact = plan_eviction(b.entries, EvictionConfig(), COUNT)
    assert detect_faults(compact, [book], turn=2, user_turn=1) == ()


def test_a_fault_pins_the_block_so_the_same_fault_cannot_happen_again():
    b, result, _ = _stale_session()
    config = EvictionConfig()
    paged = page_turn(b.entries, config, PagingState(), COUNT, turn=7)
    paged, state = finish_turn(paged, [_recall(result.block.short_id)], PagingState())
    assert [f.kind for f in paged.faults] == [FaultKind.RECALL]
    assert paged.accounting.faults == 1
    b.users(3, start=40)
    later = page_turn(b.entries, config, state, COUNT, turn=8)
    assert later.plan.get(result.seq) is None
    assert result.id in later.pinned
    repeat, state = finish_turn(later, [_recall(result.block.short_id)], state)
    assert repeat.faults == () and len(state.faults) == 1


def test_a_refault_is_recorded_and_backs_off_until_the_block_is_pinned_for_good():
    config = EvictionConfig(pin_user_turns=1, pin_forever_after=2)
    b, result, plan = _stale_session()
    user_turn = History.of(b.entries).user_turn()
    first = detect_faults(plan, [_recall(result.id)], turn=7, user_turn=user_turn)
    state = PagingState().record(first, config)
    assert state.faults[0].pinned_until == user_turn + 1 and not state.faults[0].refault
    # The pin lapses; the threshold has doubled to 8, so the block returns to the page out later.
    b.users(2, start=50)
    assert result.id not in state.pins(user_turn + 2).pinned
    assert (
        plan_eviction(b.entries, config, COUNT, state.pins(user_turn + 2)).get(result.seq) is None
    )
    b.users(2, start=60)
    again_plan = plan_eviction(b.entries, config, COUNT, state.pins(user_turn + 4))
    assert again_plan.get(result.seq) is not None
    second = detect_faults(again_plan, [_recall(result.id)], turn=12, user_turn=user_turn + 4)
    state = state.record(second, config)
    assert state.faults[1].refault and state.faults[1].pinned_until is None
    assert state.refaults == 1
    assert result.id in state.pins(10_000).pinned


def test_a_second_fault_doubles_the_pin_when_pins_are_timed():
    config = EvictionConfig(pin_user_turns=2, pin_forever_after=5)
    fault = PageFault(FaultKind.RECALL, "a" * 64, 3, 10)
    state = PagingState().record([fault], config).record([fault], config)
    assert [f.pinned_until for f in state.faults] == [12, 14]


def test_recall_returns_the_original_content_and_refuses_ids_not_paged_out():
    b, result, plan = _stale_session()
    assert recall_content(b.entries, plan, result.block.short_id) == big_result("ZFA04Y")
    with pytest.raises(BlockNotFound, match="not paged out"):
        recall_content(b.entries, plan, b.entries[3].id)


def test_state_is_kept_in_session_meta_and_read_back(tmp_path):
    store = open_store(tmp_path / "store")
    store.put("s1", NewBlock("user-message", "hello"))
    fault = PageFault(FaultKind.REPEAT, "b" * 64, 4, 2, "get_reservation_details")
    state = record_faults(store, "s1", [fault], EvictionConfig())
    assert load_state(store, "s1") == state
    raw = store.session_info("s1").meta["paging"]
    assert raw["faults"][0]["kind"] == "repeat" and raw["version"] == 1
    assert json.dumps(raw, sort_keys=True) == json.dumps(state.to_json(), sort_keys=True)


def test_a_session_without_faults_has_an_empty_state_and_a_damaged_one_is_reported(tmp_path):
    store = open_store(tmp_path / "store")
    store.put("s1", NewBlock("user-message", "hello"))
    assert load_state(store, "s1") == PagingState()
    store.set_session_meta("s1", paging={"version": 99, "faults": []})
    with pytest.raises(StoreCorrupted, match="version"):
        load_state(store, "s1")
    save_state(store, "s1", PagingState())
    assert load_state(store, "s1") == PagingState()
