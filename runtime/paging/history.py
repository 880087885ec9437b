"""What the entries of one request say: calls by id, tools used, user-turn ages, last uses.

Owns: reading tool calls and results out of block bodies (tolerating bodies not in CONVENTIONS
form: they are left alone, never refused), user-turn ages in two units, and "last use": the last
model output that mentioned a tool result's salient tokens (ids, numbers, dates).

Invariants:
- Pure and deterministic: everything is computed from the entries, walked in seq order.
- A user turn is a user-message block (``USER_MESSAGES``), or any user-role API message, tool
  results included (``USER_ROLE_MESSAGES``, how the Pichay code counts).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from runtime.blocks import BlockKind, Entry, ToolCall, ToolResult, canonical_json, parse_tool_call
from runtime.blocks import parse_tool_result as _parse_result
from runtime.errors import InvalidBlock


class AgeUnit(StrEnum):
    """What one unit of a block's age is."""

    USER_MESSAGES = "user-messages"  # a later user-message block: the "user turn"
    USER_ROLE_MESSAGES = "user-role-messages"  # any later user-role API message (Pichay's code)


class AgeFrom(StrEnum):
    """Where a tool result's age counts from."""

    CREATED = "created"  # FIFO: from when it was added (the paper's policy)
    LAST_USE = "last-use"  # LRU: from the last model output that mentioned one of its tokens


def parse_result(entry: Entry) -> ToolResult | None:
    """Return a tool-result entry's parsed body, or None for a body not in CONVENTIONS form."""
    # Such a block is left alone (never evicted) rather than refused: the packer sends it as is.
    if entry.kind is not BlockKind.TOOL_RESULT:
        return None
    try:
        return _parse_result(entry.body)
    except InvalidBlock:
        return None


def parse_call(entry: Entry) -> ToolCall | None:
    """Return a tool-call entry's parsed body, or None when it is not in CONVENTIONS form."""
    try:
        return parse_tool_call(entry.body)
    except InvalidBlock:
        return None


def schema_name(entry: Entry) -> str:
    """Return the tool name a tool-schema block defines ("" when its body is not a definition)."""
    try:
        data = json.loads(entry.body)
    except json.JSONDecodeError:
        return ""
    return str(data.get("name", "")) if isinstance(data, dict) else ""


def call_key(call: ToolCall) -> str:
    """Return the identity of a call for repeat detection: canonical JSON of [name, input]."""
    return canonical_json([call.name, call.input]).decode()


# Tokens a later message can point back with: 4+ characters holding a digit (ids, flight
# numbers, dates, amounts). Words joined by - . : / stay one token ("2024-05-20", "mia_li_3668").
_TOKEN_RE = re.compile(r"[A-Za-z0-9_]+(?:[-.:/][A-Za-z0-9_]+)*")
_DIGIT_RE = re.compile(r"[0-9]")


@lru_cache(maxsize=1 << 16)
def salient_tokens(text: str) -> frozenset[str]:
    """Return the tokens of ``text`` a later message could refer back to."""
    return frozenset(t for t in _TOKEN_RE.findall(text) if len(t) >= 4 and _DIGIT_RE.search(t))


def _output_text(entry: Entry) -> str:
    call = parse_call(entry) if entry.kind is BlockKind.TOOL_CALL else None
    return canonical_json(call.input).decode() if call is not None else entry.body


@dataclass(frozen=True)
class History:
    """What the policy needs to know about the entries of one request, computed once."""

    entries: tuple[Entry, ...]
    calls: Mapping[int, ToolCall]  # seq of a tool-call entry -> its call
    answers: Mapping[int, int]  # seq of a tool result -> seq of the call it answers
    used_tools: frozenset[str]
    latest_user_seq: int  # -1 when there is no user message
    protected_from: int  # the trailing tool results (the last call's answers) start here

    @classmethod
    def of(cls, entries: Sequence[Entry]) -> History:
        ordered = tuple(sorted(entries, key=lambda e: e.seq))
        calls = {e.seq: c for e in ordered if (c := parse_call(e)) is not None}
        users = [e.seq for e in ordered if e.kind is BlockKind.USER_MESSAGE]
        used = frozenset(c.name for c in calls.values())
        return cls(
            ordered, calls, _answers(ordered, calls), used, users[-1] if users else -1,
            _trailing_results(ordered),
        )  # fmt: skip

    def call_for(self, result_seq: int) -> ToolCall | None:
        """Return the call a tool result answers (None when no earlier call has its id)."""
        seq = self.answers.get(result_seq)
        return None if seq is None else self.calls[seq]

    def user_turn(self) -> int:
        """Return how many user messages the request holds (the current user turn number)."""
        return sum(1 for e in self.entries if e.kind is BlockKind.USER_MESSAGE)

    def ages(self, unit: AgeUnit) -> dict[int, int]:
        """Return each entry's age: how many user turns (in ``unit``) come after it."""
        marks = _turn_marks(self.entries, unit)
        return {e.seq: len(marks) - bisect.bisect_right(marks, e.seq) for e in self.entries}

    def last_use(self) -> dict[int, int]:
        """Return, per tool result, the seq of the last model output that mentioned its tokens.

        A result never mentioned since is its own last use. Model outputs are assistant messages
        and tool-call inputs; a mention is a shared salient token (an id, a number, a date).
        """
        outputs = [
            (e.seq, salient_tokens(_output_text(e)))
            for e in self.entries
            if e.kind in (BlockKind.ASSISTANT_MESSAGE, BlockKind.TOOL_CALL)
        ]
        used: dict[int, int] = {}
        for e in self.entries:
            result = parse_result(e)
            if result is None:
                continue
            tokens = salient_tokens(result.content)
            later = [seq for seq, said in outputs if seq > e.seq and not tokens.isdisjoint(said)]
            used[e.seq] = later[-1] if later else e.seq
        return used

    def result_ages(self, unit: AgeUnit, since: AgeFrom) -> dict[int, int]:
        """Return each tool result's age in ``unit``, counted from creation or from last use."""
        ages = self.ages(unit)
        if since is AgeFrom.CREATED:
            return {e.seq: ages[e.seq] for e in self.entries if parse_result(e) is not None}
        return {seq: ages[used] for seq, used in self.last_use().items()}


def _answers(entries: Sequence[Entry], calls: Mapping[int, ToolCall]) -> dict[int, int]:
    # Recorded agents reuse tool_use ids within a session (36 of the 120 tau-bench sessions
    # do), so a result answers the latest earlier call with its id, not any call with it.
    latest: dict[str, int] = {}
    out: dict[int, int] = {}
    for e in entries:
        if e.seq in calls:
            latest[calls[e.seq].call_id] = e.seq
        elif (result := parse_result(e)) is not None and result.call_id in latest:
            out[e.seq] = latest[result.call_id]
    return out


def _trailing_results(entries: Sequence[Entry]) -> int:
    start = len(entries)
    while start > 0 and entries[start - 1].kind is BlockKind.TOOL_RESULT:
        start -= 1
    return entries[start].seq if start < len(entries) else (entries[-1].seq + 1 if entries else 0)


def _turn_marks(entries: Sequence[Entry], unit: AgeUnit) -> list[int]:
    if unit is AgeUnit.USER_MESSAGES:
        return [e.seq for e in entries if e.kind is BlockKind.USER_MESSAGE]
    # A user-role API message starts wherever user-side content follows assistant-side content.
    marks, user_side = [], False
    for e in entries:
        if e.kind in (BlockKind.USER_MESSAGE, BlockKind.TOOL_RESULT):
            if not user_side:
                marks.append(e.seq)
            user_side = True
        elif e.kind in (BlockKind.ASSISTANT_MESSAGE, BlockKind.TOOL_CALL):
            user_side = False
    return marks
