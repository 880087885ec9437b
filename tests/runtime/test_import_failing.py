"""Where a failing run's flag goes: the first tool call that departs from the expected actions."""

from __future__ import annotations

import json
from typing import Any

from runtime.transfer.failing import diverging_call, failing_turn

INFO = {"task": {"actions": [{"name": "book", "kwargs": {"seat": "12A"}},
                             {"name": "pay", "kwargs": {"amount": 5}}]}}  # fmt: skip


def _call(name: str, **kwargs: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": name, "type": "function", "function": {"name": name, "arguments": json.dumps(kwargs)}}]}  # fmt: skip


MESSAGES = [
    {"role": "user", "content": "book me 12A"},
    _call("lookup", user="u1"),  # 1: not an expected tool: not judged
    {"role": "tool", "tool_call_id": "lookup", "content": "ok"},
    _call("book", seat="12A"),  # 3: as expected
    {"role": "tool", "tool_call_id": "book", "content": "ok"},
    _call("pay", amount=7),  # 5: expected tool, unexpected arguments
    {"role": "tool", "tool_call_id": "pay", "content": "ok"},
    {"role": "assistant", "content": "Done."},
]


def test_the_first_expected_tool_called_with_other_arguments_is_where_it_went_wrong() -> None:
    assert diverging_call(MESSAGES, INFO) == (5, "pay")


def test_a_run_that_only_left_an_action_out_has_no_diverging_call() -> None:
    assert diverging_call(MESSAGES[:5], INFO) is None
    assert diverging_call(MESSAGES, {}) is None
    assert diverging_call(MESSAGES, {"task": {"actions": "not a list"}}) is None


def test_unparseable_arguments_match_no_expected_call() -> None:
    bad = {"role": "assistant", "tool_calls": [{"function": {"name": "book", "arguments": "{"}}]}
    assert diverging_call([bad], INFO) == (0, "book")


def test_the_flag_goes_on_the_diverging_turn_else_the_last_and_only_when_failing() -> None:
    turns = [(1, 1), (2, 3), (3, 5), (4, 7)]
    meta = {"failing": True, "reward": 0.0, "info": INFO}
    turn, note = failing_turn(meta, MESSAGES, turns)
    assert turn == 3 and "first to call pay" in note
    assert failing_turn(meta | {"info": {}}, MESSAGES, turns)[0] == 4
    assert failing_turn({"failing": False, "info": INFO}, MESSAGES, turns) == (None, "")
    assert failing_turn(meta, MESSAGES, []) == (None, "")
