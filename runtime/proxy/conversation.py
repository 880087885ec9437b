"""The blocks of a captured request: system prompt, tools and messages, in either wire format.

Owns: ``read_conversation`` (request bytes -> ``Conversation``), which follows the block
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
from collections.abc import Mapping, Sequence
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
from runtime.proxy.apis import Family

_KINDS = {"system": BlockKind.SYSTEM, "developer": BlockKind.SYSTEM,
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


def read_conversation(family: Family, data: Mapping[str, Any], max_bytes: int) -> Conversation:
    """Return the blocks of a parsed request (a JSON object) in its provider's format."""
    parts = _Parts(f"proxy:{family.value}", max_bytes)
    messages = [m for m in data.get("messages") or () if isinstance(m, dict)]
    system = _SYSTEM_READERS[family](parts, data.get("system"))
    setup = system + _tools(parts, data.get("tools"))
    per_message = [_MESSAGE_READERS[family](parts, m) for m in messages]
    keys = prefix_keys(family, data.get("system"), messages)
    return Conversation(str(data.get("model") or "unknown"), tuple(b for b in setup if b),
                        tuple(tuple(b for b in bs if b) for bs in per_message),
                        tuple(parts.edges), keys)  # fmt: skip


def prefix_keys(family: Family, system: Any, messages: Sequence[Any]) -> tuple[bytes, ...]:
    """Return the chain of prefix keys of ``messages`` (see the module invariants)."""
    digest = hashlib.sha256(family.value.encode() + b"\0" + canonical_json(_uncached(system)))
    keys: list[bytes] = []
    for message in messages:
        digest = hashlib.sha256(digest.digest() + canonical_json(_uncached(message)))
        keys.append(digest.digest())
    return tuple(keys)


def _uncached(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _uncached(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_uncached(v) for v in value]
    return value


def _text(content: Any) -> str:
    """Return content as text: a string as is, text parts joined, anything else as JSON."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         for p in content):  # fmt: skip
        return "\n\n".join(str(p.get("text", "")) for p in content)
    return "" if content is None else canonical_json(_uncached(content)).decode()


def _tools(parts: _Parts, tools: Any) -> list[NewBlock | None]:
    out: list[NewBlock | None] = []
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function")
        if isinstance(fn, dict):  # an OpenAI function tool, kept in Anthropic shape
            tool = {"description": fn.get("description", ""), "name": fn.get("name", ""),
                    "input_schema": fn.get("parameters", {"type": "object", "properties": {}})}  # fmt: skip
        out.append(parts.block(BlockKind.TOOL_SCHEMA, canonical_json(_uncached(tool)).decode()))
    return out


def _anthropic_system(parts: _Parts, system: Any) -> list[NewBlock | None]:
    if isinstance(system, list):
        return [parts.block(BlockKind.SYSTEM, _text([s]) if isinstance(s, dict) else str(s))
                for s in system]  # fmt: skip
    return [parts.block(BlockKind.SYSTEM, _text(system))]


def _anthropic_message(parts: _Parts, message: Mapping[str, Any]) -> list[NewBlock | None]:
    kind = _KINDS.get(str(message.get("role")), BlockKind.USER_MESSAGE)
    content = message.get("content")
    if not isinstance(content, list):
        return [parts.block(kind, _text(content))]
    out: list[NewBlock | None] = []
    for item in content:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "tool_use":
            out.append(parts.call(str(item.get("id")), str(item.get("name")), item.get("input")))
        elif item.get("type") == "tool_result":
            text = _text(item.get("content"))
            out.append(parts.result(str(item.get("tool_use_id")), text, bool(item.get("is_error"))))
        else:
            out.append(parts.block(kind, _text([item])))
    return out


def _openai_message(parts: _Parts, message: Mapping[str, Any]) -> list[NewBlock | None]:
    role = str(message.get("role"))
    if role == "tool":
        call_id = str(message.get("tool_call_id"))
        return [parts.result(call_id, _text(message.get("content")), False)]
    out = [parts.block(_KINDS.get(role, BlockKind.USER_MESSAGE), _text(message.get("content")))]
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        fn = call.get("function") or {}
        try:
            arguments: Any = json.loads(fn.get("arguments") or "{}")
        except (TypeError, ValueError):
            arguments = fn.get("arguments")  # not JSON: kept exactly as the model wrote it
        out.append(parts.call(str(call.get("id")), str(fn.get("name")), arguments))
    return out


def _no_system(parts: _Parts, system: Any) -> list[NewBlock | None]:
    return []  # Chat Completions carries its system prompt as a message


# Each wire format's readers: where the system prompt is, and how a message reads as blocks.
_SYSTEM_READERS = {Family.ANTHROPIC: _anthropic_system, Family.OPENAI: _no_system}
_MESSAGE_READERS = {Family.ANTHROPIC: _anthropic_message, Family.OPENAI: _openai_message}
