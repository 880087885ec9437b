"""Rebuilding a model call's request and blocks, reusing what the conversation's last call made.

Owns: ``request_of`` (a call's rebuilt request: the canonical JSON of an OpenAI chat request)
and ``Rebuilder`` (one session's calls within one export request: their requests, as
content-defined chunks, and blocks).

Invariants:
- The result never depends on the reuse: ``request_of`` gives ``canonical_json`` of the
  request dict, byte for byte (sorted keys, no spaces, each value its own canonical JSON,
  spliced in), and a call's builder holds what a fresh ``_Builder`` fed its tools, then its
  messages, then its answer would hold.
- Reuse is by identity, never equality: a span of a request that repeats a message gets the
  very object ``runtime.otel.messages`` made for it (``AttributeJson`` memo), so the call
  whose messages begin with the last call's messages (the same objects, the same tools
  tuple, the same trace) starts from a copy of the builder those messages made. ``1 == 1.0``
  but their JSON differs, so equal-but-not-identical messages are built again.
- A call's request is chunked as it is built (``runtime.storage.chunking.ChunkStream``): the
  call whose fields before and after its messages are the last call's, and whose messages
  begin with the last call's (the same objects), appends only its new messages to the last
  call's stream. So a conversation's N requests cost O(new bytes), not O(N x request size),
  and the chunks are those of cutting the whole request (the stream's invariant).
- A ``Rebuilder`` lives for one session of one export request (``ingest._SessionState``)
  and keeps every object it memoises alive, so an id it holds is never another object's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from runtime.blocks import Provenance, canonical_json
from runtime.otel.genai import REQUEST_PARAMS, ModelCall
from runtime.storage.chunking import ChunkStream, RequestParts
from runtime.transfer.importer import _Builder


class Rebuilder:
    """The requests and builders of one session's calls in one export request."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._json: dict[int, tuple[object, bytes]] = {}  # id -> (value, its canonical JSON)
        self._templates: dict[tuple[int, str], tuple[object, _Builder]] = {}  # tools -> builder
        self._last: tuple[tuple[Any, ...], object, str, _Builder] | None = None
        self._stream: _Stream | None = None
        self._heads: dict[tuple[tuple[str, bytes], ...], tuple[bytes, bytes]] = {}

    def json_of(self, value: Any, convert: Callable[[Any], object] | None = None) -> bytes:
        """Return ``canonical_json(convert(value))``, once per object this rebuilder has seen
        (one call site per ``convert``: the memo is keyed by the object alone)."""
        hit = self._json.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        out = canonical_json(value if convert is None else convert(value))
        self._json[id(value)] = (value, out)
        return out

    def request(self, call: ModelCall) -> RequestParts:
        """Return ``request_of(call)`` as chunks, with its hash and size (see the invariants)."""
        fields: dict[str, bytes] = {"model": canonical_json(call.model)}
        if call.tools:
            fields["tools"] = self.json_of(call.tools, _openai_tools)
        for name, field_name in REQUEST_PARAMS.items():
            if name in call.params:
                fields[field_name] = canonical_json(call.params[name])
        head, tail = self._ends(fields)
        stream = self._stream
        if stream is None or not stream.extends(head, call.messages):
            stream = self._stream = _Stream(head)
        for message in call.messages[len(stream.messages) :]:
            stream.add(message, self.json_of(message))
        return stream.chunks.parts_with(tail)

    def _ends(self, fields: dict[str, bytes]) -> tuple[bytes, bytes]:
        """The request's bytes before its messages and after them, made once per distinct
        fields: the same tail object every turn, so the chunker's cache finds it by a hash
        computed once (bytes keep theirs) and the tools are not copied again."""
        key = tuple(sorted(fields.items()))
        found = self._heads.get(key)
        if found is None:
            keys = sorted([*fields, "messages"])
            at = keys.index("messages")
            head = b"{" + b"".join(canonical_json(k) + b":" + fields[k] + b"," for k in keys[:at])
            tail = b"]" + b"".join(b"," + canonical_json(k) + b":" + fields[k]
                                   for k in keys[at + 1 :]) + b"}"  # fmt: skip
            found = self._heads[key] = (head, tail)
        return found

    def blocks(self, call: ModelCall) -> _Builder:
        """Return the builder of a call's turn: its tool schemas, messages, then its answer."""
        builder, done = self._resume(call)
        for message in call.messages[done:]:
            builder.message(message)
        self._last = (call.messages, call.tools, call.span.trace_id, _copy(builder))
        if call.output:
            builder.message(call.output)
        return builder

    def _resume(self, call: ModelCall) -> tuple[_Builder, int]:
        """A copy of the builder of the last call's messages if this call's begin with them
        (and how many), else one holding only this call's tool schemas."""
        if self._last is not None:
            messages, tools, trace, held = self._last
            n = len(messages)
            if (
                tools is call.tools
                and trace == call.span.trace_id
                and len(call.messages) >= n
                and all(a is b for a, b in zip(messages, call.messages, strict=False))
            ):
                return _copy(held), n
        return self._start(call), 0

    def _start(self, call: ModelCall) -> _Builder:
        """A builder holding the call's tool schemas: a copy of the one made for the same
        tools (the very tuple ``genai`` gives every span of a request that repeats them)."""
        key = (id(call.tools), call.span.trace_id)
        held = self._templates.get(key)
        if held is None or held[0] is not call.tools:
            source = Provenance(f"otlp:{call.span.trace_id}")
            held = (call.tools, _Builder(source, self.max_bytes, call.tools))
            self._templates[key] = held
        return _copy(held[1])


class _Stream:
    """The chunked request of the messages so far, after the fields that sort before them."""

    def __init__(self, head: bytes) -> None:
        self.head = head
        self.messages: list[Any] = []
        self.chunks = ChunkStream()
        self.chunks.append(head + b'"messages":[')

    def extends(self, head: bytes, messages: Sequence[Any]) -> bool:
        """Whether a request with ``head`` and ``messages`` continues this one."""
        n = len(self.messages)
        return (
            head == self.head
            and len(messages) >= n
            and all(a is b for a, b in zip(self.messages, messages, strict=False))
        )

    def add(self, message: Any, encoded: bytes) -> None:
        self.chunks.append((b"," if self.messages else b"") + encoded)
        self.messages.append(message)


def _copy(builder: _Builder) -> _Builder:
    out = copy.copy(builder)
    out.blocks, out.ids = list(builder.blocks), list(builder.ids)
    out.edges, out.call_block = list(builder.edges), dict(builder.call_block)
    return out


def request_of(call: ModelCall) -> bytes:
    """Return the rebuilt request of a call: the canonical JSON of an OpenAI chat request."""
    request: dict[str, Any] = {"messages": list(call.messages), "model": call.model}
    if call.tools:
        request["tools"] = _openai_tools(call.tools)
    for name, field_name in REQUEST_PARAMS.items():
        if name in call.params:
            request[field_name] = call.params[name]
    return canonical_json(request)


def _openai_tools(tools: Sequence[Any]) -> list[dict[str, Any]]:
    return [dict(t.openai) for t in tools]
