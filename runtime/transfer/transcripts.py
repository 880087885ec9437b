"""Reading OpenAI-format chat transcripts: parse, check every item, and say where a file is wrong.

Owns: ``read_transcripts`` (a JSON array of sessions, or JSON Lines with one session per line),
``read_tools`` (OpenAI function definitions), and the ``Transcript`` value they produce.

Invariants:
- Nothing is guessed: invalid UTF-8, invalid JSON or a wrong shape raises ``MalformedFile`` naming
  the file, the line (and column) and what is wrong, for the first problem found.
- Messages are kept exactly as they were (the dicts the model received); only their shape is
  checked here. ``content`` is a string, null, or a list of text parts (``message_text`` joins
  them); a part of another type (an image, audio) is refused, as there is no block for it. The tau-bench layout is ``{task_id, trial, reward, info, traj}``; ``messages`` is
  accepted for ``traj``, and ``session`` names a session explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime import limits
from runtime.errors import MalformedFile

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Transcript:
    """One session from a transcript file, checked but not yet converted to blocks."""

    index: int  # 0-based position in the file
    line: int  # the line the item starts on
    messages: tuple[Mapping[str, Any], ...]
    session: str | None = None
    task_id: int | None = None
    trial: int | None = None
    reward: float | None = None
    info: Mapping[str, Any] = field(default_factory=dict, hash=False)
    model: str | None = None


def decode_text(data: bytes, name: str) -> str:
    """Return ``data`` as text, or raise MalformedFile with the line of the first bad byte."""
    return limits.decode(data, name)


def read_json(data: bytes, name: str) -> Any:
    """Return the JSON value of a whole file, or raise MalformedFile with line and column."""
    return limits.loads(data, name)


def _items_of_array(text: str, name: str) -> list[tuple[int, Any]]:
    """Parse a JSON array item by item, keeping each item's line (errors keep theirs too)."""
    decoder = json.JSONDecoder()
    value = limits.loads(text, name)  # checked whole; the re-walk below only finds lines
    if not isinstance(value, list):
        raise MalformedFile(f"{name} line 1: expected a JSON array of sessions or JSON Lines")
    items: list[tuple[int, Any]] = []
    pos, line = text.index("[") + 1, text.count("\n", 0, text.index("[")) + 1
    for _ in value:  # re-walk the items to learn where each starts
        start = _skip(text, pos)
        line += text.count("\n", pos, start)
        item, end = decoder.raw_decode(text, start)
        items.append((line, item))
        line += text.count("\n", start, end)
        pos = _skip(text, end) + 1  # past the comma
    return items


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _items_of_lines(text: str, name: str) -> list[tuple[int, Any]]:
    items: list[tuple[int, Any]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        items.append((number, limits.loads(raw, name, line_offset=number - 1)))
    return items


def read_transcripts(data: bytes, name: str = "input") -> list[Transcript]:
    """Return every session in a transcript file after checking all of them."""
    text = decode_text(data, name)
    stripped = text.lstrip()
    if not stripped:
        raise MalformedFile(f"{name} line 1: the file is empty; expected sessions")
    is_array = stripped[0] == "["
    items = _items_of_array(text, name) if is_array else _items_of_lines(text, name)
    return [_transcript(name, index, line, item) for index, (line, item) in enumerate(items)]


class _Where:
    """Names the place of a problem: file, line, item, and optionally a message."""

    def __init__(self, name: str, line: int, index: int) -> None:
        self.prefix = f"{name} line {line}: session item {index}"

    def fail(self, reason: str, message: int | None = None) -> MalformedFile:
        at = self.prefix if message is None else f"{self.prefix}, message {message}"
        return MalformedFile(f"{at}: {reason}")


def _transcript(name: str, index: int, line: int, item: Any) -> Transcript:
    where = _Where(name, line, index)
    if not isinstance(item, dict):
        raise where.fail(f"expected an object, found {_type(item)}")
    messages = item.get("traj", item.get("messages"))
    if not isinstance(messages, list) or not messages:
        raise where.fail('"traj" (or "messages") is missing or not a non-empty list')
    for number, message in enumerate(messages):
        _check_message(where, number, message)
    _check_tool_pairs(where, messages)
    return Transcript(
        index=index,
        line=line,
        messages=tuple(messages),
        session=_optional(where, item, "session", str),
        task_id=_optional(where, item, "task_id", int),
        trial=_optional(where, item, "trial", int),
        reward=_reward(where, item),
        info=_optional(where, item, "info", dict) or {},
        model=_optional(where, item, "model", str),
    )


def _type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _optional(where: _Where, item: Mapping[str, Any], key: str, kind: type) -> Any:
    value = item.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise where.fail(f'"{key}" must be {kind.__name__}, found {_type(value)}')
    return value


def _reward(where: _Where, item: Mapping[str, Any]) -> float | None:
    value = item.get("reward")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.fail(f'"reward" must be a number, found {_type(value)}')
    try:
        return float(value)
    except OverflowError:
        raise where.fail('"reward" is too large; a reward is a number such as 0 or 1') from None


def _check_message(where: _Where, number: int, message: Any) -> None:
    if not isinstance(message, dict):
        raise where.fail(f"expected an object, found {_type(message)}", number)
    role = message.get("role")
    if role not in ROLES:
        raise where.fail(f'"role" is {role!r}; expected one of {", ".join(ROLES)}', number)
    content = message.get("content")
    if isinstance(content, list):
        _check_parts(where, number, role, content)
    elif content is not None and not isinstance(content, str):
        raise where.fail(f'({role}) "content" must be a string or null, or a list of text parts',
                         number)  # fmt: skip
    if role == "assistant":
        _check_tool_calls(where, number, message)
    elif role == "tool" and not (
        isinstance(message.get("tool_call_id"), str) and message["tool_call_id"]
    ):
        raise where.fail('(tool) "tool_call_id" is missing', number)
    if content is None and role != "assistant":
        raise where.fail(f'({role}) "content" is missing', number)


def _check_parts(where: _Where, number: int, role: str, parts: Sequence[Any]) -> None:
    """Content parts are imported when every one is text: an image or audio part has no block."""
    for i, part in enumerate(parts):
        if not (isinstance(part, dict) and part.get("type") == "text"
                and isinstance(part.get("text"), str)):  # fmt: skip
            found = part.get("type") if isinstance(part, dict) else _type(part)
            raise where.fail(f'({role}) content[{i}] is {found!r}, not a text part '
                             '{"type": "text", "text": ...}; only text is imported', number)  # fmt: skip


def message_text(message: Mapping[str, Any]) -> str:
    """Return a checked message's text: its content, or its text parts joined; "" for null."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part["text"] for part in content)
    return content or ""


def _check_tool_calls(where: _Where, number: int, message: Mapping[str, Any]) -> None:
    calls = message.get("tool_calls")
    if calls is None:
        if message.get("content") is None:
            raise where.fail('(assistant) has neither "content" nor "tool_calls"', number)
        return
    if not isinstance(calls, list):
        raise where.fail('(assistant) "tool_calls" must be a list', number)
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
            raise where.fail(f'(assistant) tool_calls[{i}] has no "id"', number)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise where.fail(f'(assistant) tool_calls[{i}] has no "function.name"', number)
        if not isinstance(fn.get("arguments"), str):
            raise where.fail(
                f"(assistant) tool_calls[{i}].function.arguments is not a string", number
            )


def _check_tool_pairs(where: _Where, messages: Sequence[Mapping[str, Any]]) -> None:
    """Every tool message answers an open call made earlier in the same session.

    A call id may come back after its call was answered (tau-bench's GPT-4o runs reuse ids);
    a tool message then answers the latest call with that id.
    """
    open_calls: set[str] = set()
    for number, message in enumerate(messages):
        for call in message.get("tool_calls") or ():
            if call["id"] in open_calls:
                raise where.fail(
                    f"tool call id {call['id']!r} is used again before it was answered", number
                )
            open_calls.add(call["id"])
        if message["role"] == "tool":
            call_id = message["tool_call_id"]
            if call_id not in open_calls:
                raise where.fail(f"(tool) answers call {call_id!r}, which no earlier assistant "
                                 "message made (or which was answered already)", number)  # fmt: skip
            open_calls.discard(call_id)


@dataclass(frozen=True)
class ToolDefinition:
    """A tool as OpenAI received it, and its Anthropic shape (what a tool-schema block holds)."""

    openai: Mapping[str, Any] = field(hash=False)
    name: str
    description: str
    input_schema: Mapping[str, Any] = field(hash=False)

    def anthropic(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "input_schema": dict(self.input_schema),
            "name": self.name,
        }


def read_tools(data: bytes, name: str = "tools") -> list[ToolDefinition]:
    """Return the tool definitions of an OpenAI ``tools`` file (a list of function tools)."""
    value = read_json(data, name)
    if isinstance(value, dict) and isinstance(value.get("tools"), list):
        value = value["tools"]
    if not isinstance(value, list):
        raise MalformedFile(f"{name} line 1: expected a JSON list of tool definitions")
    return [_tool(name, i, item) for i, item in enumerate(value)]


def _tool(name: str, index: int, item: Any) -> ToolDefinition:
    fn = item.get("function") if isinstance(item, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise MalformedFile(f'{name}: tool {index} has no "function" with a "name"')
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise MalformedFile(f'{name}: tool {index} ({fn["name"]}) "parameters" is not an object')
    description = fn.get("description", "")
    if not isinstance(description, str):
        raise MalformedFile(f'{name}: tool {index} ({fn["name"]}) "description" is not text')
    return ToolDefinition(item, fn["name"], description, params)
