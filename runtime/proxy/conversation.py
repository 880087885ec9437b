"""The blocks of a captured request: system prompt, tools and messages, in either wire format.

Owns: ``read_conversation`` (a parsed request of any wire format -- Messages, Chat Completions,
Responses -> ``Conversation``), which follows the block
conventions the importer and the agent use: tool definitions become ``tool-schema`` blocks in
Anthropic shape, tool calls and results use ``ToolCall``/``ToolResult`` bodies, and each call
links to its result with a ``tool-invocation`` edge. It also owns the prefix keys that let a
later call find the session it continues (``Conversation.prefix_keys``).

Invariants:
- Reading never changes the bytes and never fails on a well-formed JSON object: a part too big
  for a block is stored as a line naming its size and SHA-256 (the request bytes keep it whole),
  an empty part is left out, and content of an unknown shape is kept as its canonical JSON.
- Prefix keys ignore ``cache_control`` (agents move their cache breakpoints from call to call)
  and nothing else: key ``i`` is a SHA-256 chain over the provider and messages ``0..i``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.blocks import (
    BlockKind,
    Edge,
    EdgeKind,
    NewBlock,
    Provenance,
    ToolCall,
    ToolResult,
    canonical_json,
    content_hash,
)
from runtime.proxy.apis import Wire

ROLE_KINDS = {"system": BlockKind.SYSTEM, "developer": BlockKind.SYSTEM,
          "user": BlockKind.USER_MESSAGE, "assistant": BlockKind.ASSISTANT_MESSAGE}  # fmt: skip


@dataclass(frozen=True)
class Conversation:
    """A request's blocks: the setup (system, tools), each message's blocks, and the edges."""

    model: str
    setup: tuple[NewBlock, ...]
    messages: tuple[tuple[NewBlock, ...], ...]
    edges: tuple[Edge, ...]
    prefix_keys: tuple[bytes, ...]  # prefix_keys[i]: the key of messages[: i + 1]

    def ids(self, blocks: Sequence[NewBlock]) -> list[str]:
        return [content_hash(BlockKind(b.kind), str(b.body)) for b in blocks]


class _Parts:
    """Collects blocks, and the block ids of tool calls so results can link to them."""

    def __init__(self, source: str, max_bytes: int) -> None:
        self.provenance, self.max_bytes = Provenance(source), max_bytes
        self.calls: dict[str, str] = {}  # tool call id -> its block id
        self.edges: list[Edge] = []

    def block(self, kind: BlockKind, body: str) -> NewBlock | None:
        if not body:
            return None
        size = len(body.encode("utf-8", "surrogatepass"))
        if size > self.max_bytes:
            digest = hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()
            body = f"[{kind.value} of {size} bytes, sha256 {digest}: too big for a block; the request bytes hold it]"
        return NewBlock(kind, body.encode("utf-8", "replace").decode(), provenance=self.provenance)

    def call(self, call_id: str, name: str, arguments: Any) -> NewBlock | None:
        block = self.block(BlockKind.TOOL_CALL, ToolCall(call_id, name, arguments).body())
        if block is not None:
            self.calls[call_id] = content_hash(BlockKind(block.kind), str(block.body))
        return block

    def result(self, call_id: str, content: str, is_error: bool) -> NewBlock | None:
        block = self.block(BlockKind.TOOL_RESULT, ToolResult(call_id, content, is_error).body())
        if block is not None and call_id in self.calls:
            result_id = content_hash(BlockKind(block.kind), str(block.body))
            self.edges.append(Edge(self.calls[call_id], EdgeKind.TOOL_INVOCATION, result_id))
        return block


def read_conversation(
    wire: Wire, data: Mapping[str, Any], max_bytes: int, *, cache_marks: bool = True
) -> Conversation:
    """Return the blocks of a parsed request (a JSON object) in its wire format.

    ``cache_marks=False`` says the request holds no ``cache_control`` (its bytes do not name
    it), so the prefix keys need not copy each message without it."""
    reader = _READERS[wire]
    parts = _Parts(f"proxy:{reader.source}", max_bytes)
    system_field, messages = reader.split(data)
    system = reader.system(parts, system_field)
    setup = system + _tools(parts, data.get("tools"))
    per_message = [reader.message(parts, m) for m in messages]
    keys = prefix_keys(reader.salt, system_field, messages, cache_marks=cache_marks)
    return Conversation(str(data.get("model") or "unknown"), tuple(b for b in setup if b),
                        tuple(tuple(b for b in bs if b) for bs in per_message),
                        tuple(parts.edges), keys)  # fmt: skip


def prefix_keys(
    salt: str, system: Any, messages: Sequence[Any], *, cache_marks: bool = True
) -> tuple[bytes, ...]:
    """Return the chain of prefix keys of ``messages`` (see the module invariants)."""
    strip = _uncached if cache_marks else _same
    digest = hashlib.sha256(salt.encode() + b"\0" + canonical_json(strip(system)))
    keys: list[bytes] = []
    for message in messages:
        digest = hashlib.sha256(digest.digest() + canonical_json(strip(message)))
        keys.append(digest.digest())
    return tuple(keys)


def _same(value: Any) -> Any:
    return value


def _uncached(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _uncached(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_uncached(v) for v in value]
    return value


def text_of(content: Any) -> str:
    """Return content as text: a string as is, text parts joined, anything else as JSON."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") in _TEXT_PARTS
                                         for p in content):  # fmt: skip
        return "\n\n".join(str(p.get("text", "")) for p in content)
    return "" if content is None else canonical_json(_uncached(content)).decode()


def tool_schema_body(tool: Mapping[str, Any]) -> str:
    """Return a tool definition's ``tool-schema`` body: Anthropic shape, canonical JSON."""
    fn = tool.get("function")
    if tool.get("type") == "function" and not isinstance(fn, dict):
        fn = {k: v for k, v in tool.items() if k != "type"}  # a Responses function tool
    if isinstance(fn, dict):  # an OpenAI function tool, kept in Anthropic shape
        tool = {"description": fn.get("description", ""), "name": fn.get("name", ""),
                "input_schema": fn.get("parameters", {"type": "object", "properties": {}})}  # fmt: skip
    return canonical_json(_uncached(tool)).decode()


def _tools(parts: _Parts, tools: Any) -> list[NewBlock | None]:
    return [parts.block(BlockKind.TOOL_SCHEMA, tool_schema_body(tool))
            for tool in (tools if isinstance(tools, list) else ()) if isinstance(tool, dict)]  # fmt: skip


def _anthropic_system(parts: _Parts, system: Any) -> list[NewBlock | None]:
    if isinstance(system, list):
        return [parts.block(BlockKind.SYSTEM, text_of([s]) if isinstance(s, dict) else str(s))
                for s in system]  # fmt: skip
    return [parts.block(BlockKind.SYSTEM, text_of(system))]


def _anthropic_message(parts: _Parts, message: Mapping[str, Any]) -> list[NewBlock | None]:
    kind = ROLE_KINDS.get(str(message.get("role")), BlockKind.USER_MESSAGE)
    content = message.get("content")
    if not isinstance(content, list):
        return [parts.block(kind, text_of(content))]
    out: list[NewBlock | None] = []
    for item in content:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "tool_use":
            out.append(parts.call(str(item.get("id")), str(item.get("name")), item.get("input")))
        elif item.get("type") == "tool_result":
            text = text_of(item.get("content"))
            out.append(parts.result(str(item.get("tool_use_id")), text, bool(item.get("is_error"))))
        else:
            out.append(parts.block(kind, text_of([item])))
    return out


def _openai_message(parts: _Parts, message: Mapping[str, Any]) -> list[NewBlock | None]:
    role = str(message.get("role"))
    if role == "tool":
        call_id = str(message.get("tool_call_id"))
        return [parts.result(call_id, text_of(message.get("content")), False)]
    out = [
        parts.block(ROLE_KINDS.get(role, BlockKind.USER_MESSAGE), text_of(message.get("content")))
    ]
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        fn = function_of(call)
        arguments = call_arguments(fn.get("arguments"))
        out.append(parts.call(str(call.get("id")), str(fn.get("name")), arguments))
    return out


def _no_system(parts: _Parts, system: Any) -> list[NewBlock | None]:
    return []  # Chat Completions carries its system prompt as a message


def function_of(call: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return a Chat Completions tool call's ``function`` object ({} when it is not one)."""
    fn = call.get("function")
    return fn if isinstance(fn, dict) else {}


def call_arguments(arguments: Any) -> Any:
    try:
        return json.loads(arguments or "{}")
    except (TypeError, ValueError):
        return arguments  # not JSON: kept exactly as the model wrote it


def _responses_item(parts: _Parts, item: Mapping[str, Any]) -> list[NewBlock | None]:
    kind = item.get("type")
    if kind == "function_call":
        arguments = call_arguments(item.get("arguments"))
        return [parts.call(str(item.get("call_id")), str(item.get("name")), arguments)]
    if kind == "function_call_output":
        return [parts.result(str(item.get("call_id")), text_of(item.get("output")), False)]
    if "role" in item:  # a message, with or without "type": "message"
        role_kind = ROLE_KINDS.get(str(item.get("role")), BlockKind.USER_MESSAGE)
        return [parts.block(role_kind, text_of(item.get("content")))]
    # Anything else the input carries (reasoning, a built-in tool's call) is the model's own.
    return [parts.block(BlockKind.ASSISTANT_MESSAGE, text_of(_uncached(dict(item))))]


def _responses_split(data: Mapping[str, Any]) -> tuple[Any, list[Any]]:
    items = data.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    return data.get("instructions"), [m for m in items or () if isinstance(m, dict)]


def _messages_split(data: Mapping[str, Any]) -> tuple[Any, list[Any]]:
    return data.get("system"), [m for m in data.get("messages") or () if isinstance(m, dict)]


@dataclass(frozen=True)
class _Reader:
    """How one wire format's request reads: where its system prompt and messages are."""

    source: str  # the blocks' provenance: proxy:<source>
    salt: str  # starts its prefix keys, so two formats' lists never match each other
    split: Callable[[Mapping[str, Any]], tuple[Any, list[Any]]]
    system: Callable[[_Parts, Any], list[NewBlock | None]]
    message: Callable[[_Parts, Mapping[str, Any]], list[NewBlock | None]]


_TEXT_PARTS = ("text", "input_text", "output_text")
_READERS = {
    Wire.MESSAGES: _Reader("anthropic", "anthropic", _messages_split, _anthropic_system,
                           _anthropic_message),
    Wire.CHAT: _Reader("openai", "openai", _messages_split, _no_system, _openai_message),
    Wire.RESPONSES: _Reader("openai", "openai-responses", _responses_split, _anthropic_system,
                            _responses_item),
}  # fmt: skip
