"""A model request or response read as chat: parameters, system, tools and messages of parts.

Owns: ``read_request`` (request bytes -> ``ChatRequest``) and ``read_response`` (a stored
response -> ``ChatMessage``), for Anthropic Messages, OpenAI Chat Completions and OpenAI
Responses shapes alike (a Responses request's ``instructions`` is its system prompt and each
``input`` item a message: a ``function_call`` an assistant's tool use, a
``function_call_output`` a ``tool`` message, any other item an ``other`` part).

Invariants:
- Derived from the stored bytes alone and never changes them. Bytes that are not a JSON object
  come back as ``text`` with ``parsed`` False, so nothing is hidden.
- Nothing is dropped: a content block of a type this module does not know is kept as an
  ``other`` part holding its compact JSON; tool inputs and arguments are kept verbatim.
- Message ``index`` is the position in the request's ``messages`` list (Responses: ``input``),
  so a page of messages can be linked to and diffed against the raw JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

CACHE_CONTROL = "cache_control"
_TEXT_TYPES = ("text", "input_text", "output_text")  # a Responses part is input_ or output_text


class PartKind(StrEnum):
    TEXT = "text"
    TOOL_USE = "tool_use"
    TOOL_RESULT = "tool_result"
    OTHER = "other"


@dataclass(frozen=True)
class Part:
    kind: PartKind
    text: str  # the text, a tool's input JSON, a result's text, or an unknown block's JSON
    name: str = ""  # tool name
    ref: str = ""  # tool_use id (or the id a result answers)
    is_error: bool = False
    cached: bool = False  # carries a cache_control breakpoint


@dataclass(frozen=True)
class ChatMessage:
    index: int
    role: str
    parts: tuple[Part, ...]

    @property
    def chars(self) -> int:
        return sum(len(p.text) for p in self.parts)


@dataclass(frozen=True)
class ToolDef:
    name: str
    description: str
    schema: str  # compact JSON of the input schema (or the whole definition if unknown)


@dataclass(frozen=True)
class ChatRequest:
    parsed: bool
    text: str  # the bytes as text when they are not a JSON object
    params: tuple[tuple[str, str], ...]  # every top-level key but tools/system/messages
    system: tuple[Part, ...]
    tools: tuple[ToolDef, ...]
    messages: tuple[ChatMessage, ...]
    note: str = ""  # why the bytes are shown as text, when they are


def compact(value: Any) -> str:
    """Return ``value`` as compact JSON, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


NOT_AN_OBJECT = "The request bytes are not a JSON object; here they are as text."
TOO_DEEP = "The request JSON is nested too deeply to read as chat; here it is as text."


def read_request(raw: bytes) -> ChatRequest:
    """Return the chat reading of request bytes (as text, with a note, when there is none)."""
    try:
        data = json.loads(raw)
        if isinstance(data, dict):
            return _read_object(data)
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        pass
    except RecursionError:  # stored bytes are untrusted: arrays 100,000 deep must not be a 500
        return ChatRequest(False, raw.decode("utf-8", "replace"), (), (), (), (), TOO_DEEP)
    return ChatRequest(False, raw.decode("utf-8", "replace"), (), (), (), (), NOT_AN_OBJECT)


def _read_object(data: dict[str, Any]) -> ChatRequest:
    if "messages" not in data and "input" in data:
        return _read_responses(data)
    params = tuple(
        (k, compact(v)) for k, v in data.items() if k not in ("tools", "system", "messages")
    )
    system = data.get("system")
    system_parts = (Part(PartKind.TEXT, system),) if isinstance(system, str) else _parts(system)
    tools = tuple(_tool(t) for t in _list(data.get("tools")))
    messages = tuple(_message(i, m) for i, m in enumerate(_list(data.get("messages"))))
    return ChatRequest(True, "", params, system_parts, tools, messages)


def _read_responses(data: dict[str, Any]) -> ChatRequest:
    params = tuple(
        (k, compact(v)) for k, v in data.items() if k not in ("tools", "instructions", "input")
    )
    system = data.get("instructions")
    system_parts = (Part(PartKind.TEXT, system),) if isinstance(system, str) else _parts(system)
    tools = tuple(_tool(t) for t in _list(data.get("tools")))
    given = data.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else _list(given)
    messages = tuple(_item(i, item) for i, item in enumerate(items))
    return ChatRequest(True, "", params, system_parts, tools, messages)


def _item(index: int, item: Any) -> ChatMessage:
    """One Responses input (or output) item as a message."""
    if not isinstance(item, dict) or "role" in item:
        return _message(index, item)
    kind = item.get("type")
    if kind == "function_call":
        return ChatMessage(index, "assistant", (_call_part(item),))
    if kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else _result_text(output)
        return ChatMessage(index, "tool", (Part(PartKind.TOOL_RESULT, text,
                                                ref=str(item.get("call_id", ""))),))  # fmt: skip
    return ChatMessage(index, "assistant", (Part(PartKind.OTHER, compact(item)),))


def _call_part(item: Mapping[str, Any]) -> Part:
    args = item.get("arguments")
    return Part(PartKind.TOOL_USE, args if isinstance(args, str) else compact(args),
                name=str(item.get("name", "?")), ref=str(item.get("call_id", "")))  # fmt: skip


def _tool(tool: Any) -> ToolDef:
    if not isinstance(tool, dict):
        return ToolDef("?", "", compact(tool))
    inner = tool.get("function")
    fn: dict[str, Any] = inner if isinstance(inner, dict) else tool
    schema = fn.get("input_schema", fn.get("parameters"))
    return ToolDef(str(fn.get("name", "?")), str(fn.get("description") or ""),
                   compact(schema if schema is not None else tool))  # fmt: skip


def _message(index: int, message: Any) -> ChatMessage:
    if not isinstance(message, dict):
        return ChatMessage(index, "?", (Part(PartKind.OTHER, compact(message)),))
    role = str(message.get("role", "?"))
    content = message.get("content")
    parts: list[Part] = []
    if role == "tool":  # OpenAI: a tool result is its own message
        text = content if isinstance(content, str) else compact(content)
        parts.append(Part(PartKind.TOOL_RESULT, text, ref=str(message.get("tool_call_id", ""))))
    elif isinstance(content, str):
        parts.append(Part(PartKind.TEXT, content, cached=CACHE_CONTROL in message))
    else:
        parts.extend(_parts(content))
    for call in _list(message.get("tool_calls")):
        fn = call.get("function", {}) if isinstance(call, dict) else {}
        args = fn.get("arguments")
        parts.append(Part(PartKind.TOOL_USE, args if isinstance(args, str) else compact(args),
                          name=str(fn.get("name", "?")), ref=str(call.get("id", ""))))  # fmt: skip
    return ChatMessage(index, role, tuple(parts))


def _parts(blocks: Any) -> tuple[Part, ...]:
    return tuple(_part(b) for b in _list(blocks))


def _part(block: Any) -> Part:
    if not isinstance(block, dict):
        return Part(PartKind.OTHER, compact(block))
    kind, cached = block.get("type"), CACHE_CONTROL in block
    if kind in _TEXT_TYPES:
        return Part(PartKind.TEXT, str(block.get("text", "")), cached=cached)
    if kind == "tool_use":
        return Part(PartKind.TOOL_USE, compact(block.get("input")), name=str(block.get("name", "")),
                    ref=str(block.get("id", "")), cached=cached)  # fmt: skip
    if kind == "tool_result":
        return Part(PartKind.TOOL_RESULT, _result_text(block.get("content")),
                    ref=str(block.get("tool_use_id", "")), is_error=bool(block.get("is_error")),
                    cached=cached)  # fmt: skip
    return Part(PartKind.OTHER, compact(block), cached=cached)


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = [
        b.get("text")
        for b in _list(content)
        if isinstance(b, dict) and b.get("type") in _TEXT_TYPES
    ]
    if len(texts) == len(_list(content)) and all(isinstance(t, str) for t in texts):
        return "\n".join(texts)  # type: ignore[arg-type]
    return compact(content)


def read_response(response: Mapping[str, Any] | None) -> ChatMessage | None:
    """Return a stored response as one assistant message (Anthropic or OpenAI shape)."""
    if response is None:
        return None
    output = response.get("output")
    if isinstance(output, list) and "choices" not in response:  # a Responses response
        parts = tuple(part for n, item in enumerate(output) for part in _item(n, item).parts)
        return ChatMessage(0, "assistant", parts)
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")  # a whole OpenAI completion
        return _message(0, {"role": "assistant"} | (message if isinstance(message, dict) else {}))
    # An Anthropic Messages body or an OpenAI assistant message: content and tool calls.
    return _message(0, {"role": "assistant"} | dict(response))


def message_window(
    messages: Sequence[ChatMessage], offset: int, limit: int
) -> tuple[ChatMessage, ...]:
    """Return messages ``offset`` to ``offset + limit``."""
    return tuple(messages[offset : offset + limit])
