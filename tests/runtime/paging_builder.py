"""Builds sessions of entries, shaped as CONVENTIONS.md says, for the paging tests."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence

from runtime.blocks import (
    Block,
    BlockKind,
    Entry,
    Provenance,
    ToolCall,
    ToolResult,
    canonical_json,
    content_hash,
)
from runtime.paging.accounting import TokenCounter
from runtime.tokenizers import get_tokenizer

COUNT = TokenCounter(get_tokenizer("o200k_base"))

LOOKUP_SCHEMA = {
    "name": "get_reservation_details",
    "description": "Get the details of a reservation. Use it before changing anything.",
    "input_schema": {
        "type": "object",
        "properties": {
            "reservation_id": {"type": "string", "description": "The id, such as 'ZFA04Y'."}
        },
        "required": ["reservation_id"],
    },
}
BOOK_SCHEMA = {
    "name": "book_reservation",
    "description": "Book a reservation. Ask the user to confirm every detail first.",
    "input_schema": {
        "type": "object",
        "properties": {
            "user_id": {"type": "string", "description": "The user id, such as 'sara_doe_496'."},
            "cabin": {"type": "string", "enum": ["economy", "business"]},
            "flights": {
                "type": "array",
                "description": "Each flight of the trip.",
                "items": {
                    "type": "object",
                    "properties": {
                        "flight_number": {"type": "string", "description": "Such as 'HAT001'."},
                        "date": {"type": "string", "description": "YYYY-MM-DD."},
                    },
                    "required": ["flight_number", "date"],
                },
            },
        },
        "required": ["user_id", "cabin", "flights"],
    },
}


def big_result(tag: str, size: int = 900) -> str:
    """Return a JSON-ish tool output of about ``size`` bytes mentioning ``tag``."""
    row = {"reservation_id": tag, "flight_number": f"HAT{len(tag):03d}", "status": "booked"}
    text = json.dumps(row)
    return (text + " ") * (size // (len(text) + 1) + 1)


class SessionBuilder:
    """Appends entries to one session in seq order."""

    def __init__(self, session: str = "s1"):
        self.session = session
        self.entries: list[Entry] = []
        self._calls = 0

    def add(self, kind: BlockKind, body: str) -> Entry:
        block = Block(kind, body, content_hash(kind, body))
        entry = Entry(self.session, len(self.entries), block, 0.5, 0, Provenance())
        self.entries.append(entry)
        return entry

    def schema(self, definition: Mapping[str, object]) -> Entry:
        return self.add(BlockKind.TOOL_SCHEMA, canonical_json(definition).decode())

    def system(self, text: str = "You are an airline agent.") -> Entry:
        return self.add(BlockKind.SYSTEM, text)

    def user(self, text: str) -> Entry:
        return self.add(BlockKind.USER_MESSAGE, text)

    def assistant(self, text: str) -> Entry:
        return self.add(BlockKind.ASSISTANT_MESSAGE, text)

    def call(self, name: str, args: Mapping[str, object]) -> ToolCall:
        self._calls += 1
        call = ToolCall(f"call_{self._calls:03d}", name, dict(args))
        self.add(BlockKind.TOOL_CALL, call.body())
        return call

    def result(self, call: ToolCall, content: str, *, is_error: bool = False) -> Entry:
        return self.add(BlockKind.TOOL_RESULT, ToolResult(call.call_id, content, is_error).body())

    def exchange(self, name: str, args: Mapping[str, object], content: str) -> Entry:
        """Append one tool call and its result; return the result entry."""
        return self.result(self.call(name, args), content)

    def users(self, count: int, start: int = 0) -> None:
        """Append ``count`` small user/assistant exchanges that mention nothing earlier."""
        for i in range(start, start + count):
            self.user(f"Question number {i} about something else")
            self.assistant(f"Answer number {i}.")


def standard(*, turns_after: int = 5) -> tuple[SessionBuilder, Entry]:
    """Return a session with two schemas, one big lookup result, then ``turns_after`` turns."""
    b = SessionBuilder()
    b.schema(LOOKUP_SCHEMA)
    b.schema(BOOK_SCHEMA)
    b.system()
    b.user("Please check reservation ZFA04Y.")
    result = b.exchange(
        "get_reservation_details", {"reservation_id": "ZFA04Y"}, big_result("ZFA04Y")
    )
    b.assistant("Found it.")
    b.users(turns_after)
    return b, result


def pairing_ok(bodies: Sequence[tuple[BlockKind, str]]) -> bool:
    """Return whether every tool_use id has exactly one tool_result with the same id."""
    calls = [json.loads(b)["id"] for k, b in bodies if k is BlockKind.TOOL_CALL]
    results = [json.loads(b)["tool_use_id"] for k, b in bodies if k is BlockKind.TOOL_RESULT]
    return sorted(calls) == sorted(results) and len(set(results)) == len(results)


def random_session(seed: int) -> SessionBuilder:
    """Return a varied session (sizes, errors, repeats) that ``seed`` determines."""
    rnd = random.Random(seed)
    b = SessionBuilder()
    b.schema(LOOKUP_SCHEMA)
    b.schema(BOOK_SCHEMA)
    b.system()
    for turn in range(rnd.randint(1, 8)):
        b.user(f"turn {turn}: please look at R{turn}Y " + "words " * rnd.randint(1, 80))
        for _ in range(rnd.randint(0, 3)):
            tag = f"R{rnd.randint(0, 4)}Y"
            call = b.call("get_reservation_details", {"reservation_id": tag})
            size = rnd.choice([100, 600, 1500, 4000])
            b.result(call, big_result(tag, size), is_error=rnd.random() < 0.1)
        if rnd.random() < 0.7:
            b.assistant(f"About R{rnd.randint(0, 8)}Y: " + "detail " * rnd.randint(1, 60))
    return b
