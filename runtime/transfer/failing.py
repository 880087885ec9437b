"""Which turn of a failed run went wrong: the first tool call that departs from the task's
expected actions.

Owns: ``diverging_call``, the rule, and ``failing_turn``, where the importer puts a failing
run's flag and the note it writes.

The rule (no tuning to any data set): a transcript whose ``info.task.actions`` lists the calls
the task expected (``{"name", "kwargs"}`` each, tau-bench's layout) went wrong at the first
assistant message that calls a tool the task expected with arguments equal to none of the
expected calls of that tool. Calls to tools the task did not expect are not judged: reading
(look-ups, searches) is how an agent works, and nothing says which of them did harm. When no
call departs (an expected action was left out, or the info has no expected actions), there is
no turn to blame and the caller falls back to the run's last turn.

Invariants: reads only the transcript; deterministic (messages in order, calls in order);
malformed actions or arguments are skipped, never raised: the transcript was checked already.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def _expected(info: Mapping[str, Any]) -> list[tuple[str, Any]]:
    task = info.get("task")
    actions = task.get("actions") if isinstance(task, Mapping) else None
    if not isinstance(actions, list):
        return []
    return [(a["name"], a.get("kwargs")) for a in actions
            if isinstance(a, Mapping) and isinstance(a.get("name"), str)]  # fmt: skip


def _calls(message: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            continue
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            arguments = None  # unparseable arguments match no expected call
        out.append((function["name"], arguments))
    return out


def diverging_call(
    messages: Sequence[Mapping[str, Any]], info: Mapping[str, Any]
) -> tuple[int, str] | None:
    """Return the index of the first assistant message whose tool call departs from the
    expected actions in ``info``, with that tool's name; None when no call departs."""
    expected = _expected(info)
    names = {name for name, _ in expected}
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        for name, arguments in _calls(message):
            if name in names and (name, arguments) not in expected:
                return index, name
    return None


def failing_turn(
    meta: Mapping[str, Any], messages: Sequence[Mapping[str, Any]], turns: Sequence[tuple[int, int]]
) -> tuple[int | None, str]:
    """Return the turn number a failing run's flag goes on, and its note (None: not failing).

    ``turns`` are (turn number, index of its assistant message). The turn that went wrong when
    the session's ``info`` says what the task expected, else the last turn."""
    if not meta.get("failing") or not turns:
        return None, ""
    failed = f"imported with reward {meta.get('reward')}: the agent failed this task"
    info = meta.get("info")
    found = diverging_call(messages, info) if isinstance(info, Mapping) else None
    turn = next((n for n, index in turns if found is not None and index == found[0]), None)
    if turn is None or found is None:
        return turns[-1][0], f"{failed} (its last turn: no call departs from the expected actions)"
    return (
        turn,
        f"{failed}; this turn is the first to call {found[1]} with arguments it did not expect",
    )
