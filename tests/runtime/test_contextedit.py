"""Anthropic's clear_tool_uses_20250919 context editing, simulated from its documentation."""

from __future__ import annotations

import pytest

from runtime.errors import ConfigError
from runtime.paging.contextedit import PLACEHOLDER, ClearToolUses, clear_tool_uses
from runtime.paging.eviction import EvictionReason, request_tokens
from tests.runtime.paging_builder import COUNT, LOOKUP_SCHEMA, SessionBuilder, big_result


def session(results: int = 6) -> SessionBuilder:
    b = SessionBuilder()
    b.schema(LOOKUP_SCHEMA)
    b.system()
    for n in range(results):
        b.user(f"Look at R{n}Y.")
        b.exchange(
            "get_reservation_details", {"reservation_id": f"R{n}Y"}, big_result(f"R{n}Y", 2000)
        )
        b.assistant("Done.")
    b.exchange("lookup_policy", {"topic": "refunds"}, big_result("POL1", 2000))
    return b


def test_defaults_are_the_documented_ones():
    d = ClearToolUses()
    assert (d.trigger, d.keep, d.clear_at_least, d.exclude_tools) == (100_000, 3, 0, ())
    assert d.to_json()["type"] == "clear_tool_uses_20250919"
    with pytest.raises(ConfigError, match="trigger"):
        ClearToolUses(trigger=0)


def test_below_the_trigger_nothing_is_cleared():
    b = session()
    assert clear_tool_uses(b.entries, ClearToolUses(), COUNT).evictions == ()


def test_past_the_trigger_every_result_but_the_last_keep_is_cleared_with_a_placeholder():
    b = session()
    plan = clear_tool_uses(b.entries, ClearToolUses(trigger=1000, keep=3), COUNT)
    results = [e for e in b.entries if e.kind.value == "tool-result"]
    assert [e.seq for e in plan.evictions] == [e.seq for e in results[:-3]]
    for ev in plan.evictions:
        assert ev.reason is EvictionReason.CLEARED and ev.placeholder == PLACEHOLDER
        assert '"tool_use_id"' in ev.body
    assert not plan.offers_recall


def test_clear_at_least_skips_an_activation_that_frees_too_little():
    b = session(4)  # 5 results, keep 3: two results of ~2,000 bytes are clearable
    full = request_tokens(
        b.entries, clear_tool_uses(b.entries, ClearToolUses(trigger=10**9), COUNT), COUNT
    )
    few = ClearToolUses(trigger=1000, keep=3, clear_at_least=full)
    assert clear_tool_uses(b.entries, few, COUNT).evictions == ()
    enough = ClearToolUses(trigger=1000, keep=3, clear_at_least=100)
    assert len(clear_tool_uses(b.entries, enough, COUNT).evictions) == 2


def test_excluded_tools_are_never_cleared_and_clearings_carry_over():
    b = session()
    settings = ClearToolUses(trigger=1000, keep=0, exclude_tools=("lookup_policy",))
    plan = clear_tool_uses(b.entries, settings, COUNT)
    cleared = {ev.seq for ev in plan.evictions}
    policy = b.entries[-1]
    assert policy.seq not in cleared and len(cleared) == 6
    b.user("One more.")
    later = clear_tool_uses(b.entries, ClearToolUses(trigger=10**9), COUNT, plan)
    assert {ev.seq for ev in later.evictions} == cleared  # kept though below the trigger now
