"""The blocks of a captured request: system prompt, tools and messages, in either wire format.

Owns: ``read_conversation`` (a parsed request of any wire format -- Messages, Chat Completions,
Responses -> ``Conversation``), which follows the block
conventions the importer and the agent use: tool definitions become ``tool-schema`` blocks in
Anthropic shape, tool calls and results use ``ToolCall``/``ToolResult`` bodies, and each call
links to its result with a ``tool-invocation`` edge. It also owns the prefix keys that let a
later call find the session it continues (``Conversation.prefix_keys``). ``ConversationReader``
reads a request from its bytes and reads again only the messages an earlier call did not have.

Invariants:
- Reading never changes the bytes and never fails on a well-formed JSON object: a part too big
  for a block is stored as a line naming its size and SHA-256 (the request bytes keep it whole),
  an empty part is left out, and content of an unknown shape is kept as its canonical JSON.
  ``ConversationReader.read`` never fails on valid JSON that has no canonical blocks either (a
  lone surrogate escape, ``1e400``, nesting deeper than Python parses): it has no conversation,
  and the call is recorded as its bytes, like a body that is not JSON.
- Prefix keys ignore ``cache_control`` (agents move their cache breakpoints from call to call)
  and nothing else: key ``i`` is a SHA-256 chain over the provider and messages ``0..i``.
- ``ConversationReader.read`` returns exactly what ``read_conversation`` returns for the parsed
  body. It reuses what it read of an earlier request only when that request's system prompt
  and messages are, text for text, the first ones of this request (a SHA-256 chain over their
  exact JSON text), so a request whose history was rewritten is read whole again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
    without_key,
)
from runtime.errors import NotCanonicalJson
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
    setup_ids: tuple[str, ...] = ()  # the block id of each setup block
    message_ids: tuple[tuple[str, ...], ...] = ()  # the block ids of each message's blocks

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
    return _read(wire, data, max_bytes, cache_marks, _Known())[0]


@dataclass(frozen=True)
class _Known:
    """What reading a request's first messages left: their keys, blocks and block ids, and the
    tool calls and edges seen in them (a later message's result links to an earlier call)."""

    keys: tuple[bytes, ...] = ()
    messages: tuple[tuple[NewBlock, ...], ...] = ()
    ids: tuple[tuple[str, ...], ...] = ()
    calls: Mapping[str, str] = field(default_factory=dict)
    edges: tuple[Edge, ...] = ()


def _read(
    wire: Wire, data: Mapping[str, Any], max_bytes: int, cache_marks: bool, known: _Known
) -> tuple[Conversation, _Known]:
    """Read ``data``, whose first ``len(known.messages)`` messages ``known`` has read already."""
    reader = _READERS[wire]
    parts = _Parts(f"proxy:{reader.source}", max_bytes)
    system_field, messages = reader.split(data)
    system = reader.system(parts, system_field)
    setup = tuple(b for b in system + _tools(parts, data.get("tools")) if b)
    parts.calls, parts.edges = dict(known.calls), list(known.edges)
    rest = messages[len(known.messages) :]
    new = [tuple(b for b in reader.message(parts, m) if b) for m in rest]
    keys = prefix_keys(reader.salt, system_field, rest, cache_marks=cache_marks,
                       after=known.keys[-1] if known.keys else None)  # fmt: skip
    now = _Known(known.keys + keys, known.messages + tuple(new),
                 known.ids + tuple(tuple(_ids(bs)) for bs in new), parts.calls,
                 tuple(parts.edges))  # fmt: skip
    conv = Conversation(str(data.get("model") or "unknown"), setup, now.messages, now.edges,
                        now.keys, tuple(_ids(setup)), now.ids)  # fmt: skip
    return conv, now


def _ids(blocks: Sequence[NewBlock]) -> list[str]:
    return [content_hash(BlockKind(b.kind), str(b.body)) for b in blocks]


def conversation_of(wire: Wire, data: Mapping[str, Any]) -> tuple[str, Any, list[Any]]:
    """Return a request's prefix-key salt, system prompt and message list, as its reader reads
    them (``prefix_keys`` takes the three)."""
    reader = _READERS[wire]
    system, messages = reader.split(data)
    return reader.salt, system, messages


def prefix_keys(
    salt: str, system: Any, messages: Sequence[Any], *, cache_marks: bool = True,
    after: bytes | None = None,
) -> tuple[bytes, ...]:  # fmt: skip
    """Return the chain of prefix keys of ``messages`` (see the module invariants); ``after``
    is the key of the messages before them, if they do not start the list."""
    strip = uncached if cache_marks else _same
    digest = after
    if digest is None:
        digest = hashlib.sha256(salt.encode() + b"\0" + canonical_json(strip(system))).digest()
    keys: list[bytes] = []
    for message in messages:
        digest = hashlib.sha256(digest + canonical_json(strip(message))).digest()
        keys.append(digest)
    return tuple(keys)


class ConversationReader:
    """Reads requests from their bytes, reusing what it read of an earlier request's messages.

    An agent's next call repeats every earlier message: this reads only the messages after the
    longest earlier request whose messages this one starts with, in the same exact text (see
    the module invariants). It remembers the newest ``capacity`` requests; a request that
    continues one it has forgotten is read whole, with the same result."""

    def __init__(self, max_bytes: int, capacity: int = 4096) -> None:
        self.max_bytes, self.capacity = max_bytes, capacity
        self._seen: OrderedDict[bytes, _Known] = OrderedDict()
        self.reused = 0  # messages taken from an earlier request instead of read again

    def read(
        self, wire: Wire, body: bytes, *, cache_marks: bool = True
    ) -> tuple[dict[str, Any] | None, Conversation | None]:
        """Return the parsed body (None if it is not a JSON object) and its conversation (None
        when the body has no blocks to read: it is kept as its bytes only)."""
        try:
            return self._read(wire, body, cache_marks)
        except RecursionError:  # nested deeper than Python's JSON parser goes
            return None, None
        except NotCanonicalJson:  # a lone surrogate or 1e400: valid JSON with no canonical form
            return request_json(body), None

    def _read(
        self, wire: Wire, body: bytes, cache_marks: bool
    ) -> tuple[dict[str, Any] | None, Conversation | None]:
        scanned = _scan(body, _READERS[wire].fields) if self.capacity else None
        if scanned is None:  # not a shape this reads in parts: read it whole, as ever
            data = request_json(body)
            return data, read_conversation(wire, data, self.max_bytes,
                                           cache_marks=cache_marks) if data else None  # fmt: skip
        data, chain = scanned
        start = hashlib.sha256(b"%s\0%d\0%d\0" % (wire.value.encode(), cache_marks,
                                                      self.max_bytes))  # fmt: skip
        links = chain.digests(start)
        known = next((self._seen[d] for d in reversed(links) if d in self._seen), _Known())
        conv, now = _read(wire, data, self.max_bytes, cache_marks, known)
        self.reused += len(known.messages)
        if links and len(now.messages) == len(links):
            self._seen[links[-1]] = now
            self._seen.move_to_end(links[-1])
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return data, conv


def request_json(body: bytes) -> dict[str, Any] | None:
    """Return the body as a JSON object, or None if it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class _Chain:
    """The exact JSON text of a request's system prompt and of each of its message objects."""

    system: str | None
    messages: tuple[str, ...]

    def digests(self, start: Any) -> list[bytes]:
        """Return digest ``i``: a SHA-256 chain over ``start``, the system and messages 0..i."""
        h = start.copy()
        h.update(_framed(self.system))
        out = []
        for text in self.messages:
            h.update(_framed(text))
            out.append(h.copy().digest())
        return out


def _framed(text: str | None) -> bytes:
    raw = b"" if text is None else text.encode("utf-8", "surrogatepass")
    return (len(raw) + (text is not None)).to_bytes(8, "big") + raw


_WS = re.compile(r"[ \t\n\r]*")
# The C scanner json.loads parses every value with: one value at an index -> (value, end).
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _ws(text: str, i: int) -> int:
    """Return the index after the JSON whitespace at ``i``."""
    match = _WS.match(text, i)
    return match.end() if match else i


def _scan(body: bytes, names: tuple[str, str]) -> tuple[dict[str, Any], _Chain] | None:
    """Parse ``body`` as ``json.loads`` does, keeping the text of the system field and of each
    object in the message list (``names``); None if it is not an object with such a list."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        return _scan_object(text, names)
    except (ValueError, UnicodeDecodeError, StopIteration, IndexError):
        return None


def _scan_object(text: str, names: tuple[str, str]) -> tuple[dict[str, Any], _Chain] | None:
    system_name, list_name = names
    data: dict[str, Any] = {}
    system: str | None = None
    items: tuple[str, ...] | None = None
    scan, ws = _SCAN, _ws
    i = ws(text, 0)
    if text[i] != "{":
        return None
    i = ws(text, i + 1)
    while text[i] != "}":
        if text[i] != '"':
            return None
        key, i = scan(text, i)  # a string, as the object's key
        i = ws(text, i)
        if text[i] != ":":
            return None
        i = ws(text, i + 1)
        start = i
        if key == list_name:
            if text[i] == "[":
                value, i, items = _scan_list(text, i)
            else:
                (value, i), items = scan(text, i), None
        else:
            value, i = scan(text, i)
        if key == system_name:
            system = text[start:i]
        data[key] = value
        i = ws(text, i)
        if text[i] == ",":
            i = ws(text, i + 1)
            if text[i] != '"':
                return None  # a trailing comma
        elif text[i] != "}":
            return None
    i += 1
    if ws(text, i) != len(text) or items is None:
        return None
    return data, _Chain(system, items)


def _scan_list(text: str, i: int) -> tuple[list[Any], int, tuple[str, ...]]:
    scan, ws = _SCAN, _ws
    values: list[Any] = []
    found: list[str] = []
    i = ws(text, i + 1)
    if text[i] == "]":
        return values, i + 1, ()
    while True:
        value, end = scan(text, i)
        values.append(value)
        if isinstance(value, dict):
            found.append(text[i:end])
        i = ws(text, end)
        if text[i] == "]":
            return values, i + 1, tuple(found)
        if text[i] != ",":
            raise ValueError("expected , or ]")
        i = ws(text, i + 1)


def _same(value: Any) -> Any:
    return value


def uncached(value: Any) -> Any:
    """Return ``value`` without its ``cache_control`` marks, at any depth (never mutated)."""
    return without_key(value, "cache_control")


def text_of(content: Any) -> str:
    """Return content as text: a string as is, text parts joined, anything else as JSON."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") in _TEXT_PARTS
                                         for p in content):  # fmt: skip
        return "\n\n".join(str(p.get("text", "")) for p in content)
    return "" if content is None else canonical_json(uncached(content)).decode()


def tool_schema_body(tool: Mapping[str, Any]) -> str:
    """Return a tool definition's ``tool-schema`` body: Anthropic shape, canonical JSON."""
    fn = tool.get("function")
    if tool.get("type") == "function" and not isinstance(fn, dict):
        fn = {k: v for k, v in tool.items() if k != "type"}  # a Responses function tool
    if isinstance(fn, dict):  # an OpenAI function tool, kept in Anthropic shape
        tool = {"description": fn.get("description", ""), "name": fn.get("name", ""),
                "input_schema": fn.get("parameters", {"type": "object", "properties": {}})}  # fmt: skip
    return canonical_json(uncached(tool)).decode()


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
    return [parts.block(BlockKind.ASSISTANT_MESSAGE, text_of(uncached(dict(item))))]


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
    fields: tuple[str, str]  # the names of its system field and its message list
    salt: str  # starts its prefix keys, so two formats' lists never match each other
    split: Callable[[Mapping[str, Any]], tuple[Any, list[Any]]]
    system: Callable[[_Parts, Any], list[NewBlock | None]]
    message: Callable[[_Parts, Mapping[str, Any]], list[NewBlock | None]]


_TEXT_PARTS = ("text", "input_text", "output_text")
_READERS = {
    Wire.MESSAGES: _Reader("anthropic", ("system", "messages"), "anthropic", _messages_split,
                           _anthropic_system, _anthropic_message),
    Wire.CHAT: _Reader("openai", ("system", "messages"), "openai", _messages_split, _no_system,
                       _openai_message),
    Wire.RESPONSES: _Reader("openai", ("instructions", "input"), "openai-responses",
                            _responses_split, _anthropic_system, _responses_item),
}  # fmt: skip
