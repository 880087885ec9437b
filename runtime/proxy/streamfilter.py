"""A paged call's stream on its way to the client: recall calls taken out as the events pass.

Owns: ``StreamFilter`` (one upstream stream's events in, the events the client gets out) for the
Messages, Chat Completions and Responses stream formats, made by ``stream_filter``, and ``sse_split``
(complete events out of the chunks as they arrive).

Invariants:
- Every event is forwarded as soon as it is read, unchanged in its bytes, except: the events of
  a ``recall`` tool call are dropped; content block (Messages) or tool call (Chat) indices after
  one are renumbered, so the client's indices stay dense (Responses: the ``output_index`` of
  later items, and every event's ``sequence_number``, which stays dense and rising across
  rounds); and the events that end the message (``message_delta``/``message_stop``; the chunk
  with ``finish_reason``, the usage chunk and ``[DONE]``; ``response.completed``, ``.failed``
  or ``.incomplete``) are held until the proxy knows whether it continues the call.
- A continuation's stream (``next_round``) continues the same message for the client: its
  ``message_start`` is dropped and its content blocks are numbered after those already sent.
- A message left with no tool call of the client's says it ended its turn, not that it wants a
  tool (``end_turn`` / ``stop``).
- After recall rounds, the closing usage (``message_delta``'s, the Chat usage chunk's) is every
  round's usage summed, as a JSON reply's is: the call cost them all. A stream of one round
  passes its usage bytes unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from runtime.paging.placeholders import RECALL_TOOL_NAME
from runtime.providers.streams import (
    FINAL_RESPONSE_EVENTS,
    assemble_chat_completion,
    assemble_message,
    assemble_response,
    sse_events,
    stream_payloads,
)
from runtime.proxy.apis import Wire
from runtime.proxy.recall import CLIENT_CALL_ITEMS, is_recall_item, summed, without_orphans

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r(?!\n)")


def sse_split(buffer: bytearray, chunk: bytes) -> Iterator[bytes]:
    """Add ``chunk`` to ``buffer`` and yield every complete event it now holds, as the upstream
    sent it (its line endings and blank line kept); what is left in ``buffer`` is the start of
    the next one. An event's end may be split across chunks (``\r\n\r`` then ``\n``): a
    buffer ending in ``\r`` waits for the next chunk."""
    buffer += chunk
    while (found := _EVENT_END.search(buffer)) is not None:
        if found.end() == len(buffer) and buffer.endswith(b"\r"):
            return  # "\r\r" or "\n\r\r" may yet become "\r\n\r\n"
        yield bytes(buffer[: found.end()])
        del buffer[: found.end()]


def _event(raw: bytes) -> tuple[str, Any]:
    for name, data in sse_events(raw):
        if data == "[DONE]":
            return name, "[DONE]"
        try:
            return name, json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json parses
            return name, None
    return "", None


def _encode(name: str, data: Any) -> bytes:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return (f"event: {name}\n".encode() if name else b"") + b"data: " + body + b"\n\n"


class StreamFilter:
    """One round's stream (see the module docstring); ``event`` returns what to forward now."""

    def __init__(self, offset: int = 0, first: bool = True) -> None:
        self.offset, self.first = offset, first
        self.raw = bytearray()  # the upstream's events of this round, for assembling its reply
        self.hidden: set[int] = set()  # membership only: indices of recall calls
        self.index: dict[int, int] = {}  # upstream index -> the client's index
        self.client_tools = 0
        self.held: list[tuple[str, Any, bytes]] = []

    @property
    def recalled_only(self) -> bool:
        """Whether this round called tools and every call was ``recall``."""
        return bool(self.hidden) and self.client_tools == 0

    def event(self, raw: bytes) -> list[bytes]:
        raise NotImplementedError

    def _read(self, raw: bytes) -> tuple[str, Any, str]:
        """Keep one upstream event for the round's reply; return its name, data and type."""
        self.raw += raw
        name, data = _event(raw)
        return name, data, str(data.get("type", name)) if isinstance(data, dict) else name

    def reply(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def next_round(self) -> StreamFilter:
        """Return the filter of the continuation's stream."""
        return type(self)(self.offset + len(self.index), first=False)

    def tail(self, usages: Sequence[Mapping[str, Any]] = ()) -> list[bytes]:
        """Return the held closing events, the stop reason fixed when only recall was called.

        ``usages``: every round's usage, this one's last; with more than one round, the closing
        usage becomes their sum."""
        total = summed(usages) if len(usages) > 1 else None
        out = []
        for name, data, raw in self.held:
            new = self._closing(data)
            if total is not None and isinstance(new, dict) and isinstance(new.get("usage"), dict):
                new = {**new, "usage": {**new["usage"], **total}}
            out.append(raw if new is data else _encode(name, new))
        return out

    def _closing(self, data: Any) -> Any:
        """Return a held event's data as the client gets it (``data`` itself if unchanged)."""
        raise NotImplementedError

    def _number(self, upstream: int, recall: bool, tool: bool) -> int | None:
        """Return the client's index for an upstream index seen first now (None: hidden)."""
        if upstream not in self.index and upstream not in self.hidden:
            if recall:
                self.hidden.add(upstream)
            else:
                self.index[upstream] = self.offset + len(self.index)
                self.client_tools += tool
        return self.index.get(upstream)


class _MessagesFilter(StreamFilter):
    def event(self, raw: bytes) -> list[bytes]:
        name, data, kind = self._read(raw)
        if not isinstance(data, dict):
            return [raw]
        if kind == "message_start":
            return [raw] if self.first else []
        if kind in ("message_delta", "message_stop"):
            self.held.append((name, data, raw))
            return []
        if kind not in ("content_block_start", "content_block_delta", "content_block_stop"):
            return [raw]  # ping, error, anything new
        block = data.get("content_block") or {}
        tool = block.get("type") == "tool_use"
        at = self._number(int(data.get("index", 0)), tool and block.get("name") == RECALL_TOOL_NAME,
                          tool)  # fmt: skip
        if at is None:
            return []
        return [raw] if at == data.get("index") else [_encode(name, {**data, "index": at})]

    def reply(self) -> dict[str, Any] | None:
        return assemble_message(stream_payloads(bytes(self.raw)))

    def _closing(self, data: Any) -> Any:
        delta = data.get("delta")
        if not (self.hidden and self.client_tools == 0 and isinstance(delta, dict)):
            return data
        if delta.get("stop_reason") != "tool_use":
            return data
        return {**data, "delta": {**delta, "stop_reason": "end_turn"}}


class _ChatFilter(StreamFilter):
    def event(self, raw: bytes) -> list[bytes]:
        self.raw += raw
        name, data = _event(raw)
        if data == "[DONE]" or (isinstance(data, dict) and not data.get("choices")):
            self.held.append((name, data, raw))  # [DONE], or the usage chunk that precedes it
            return []
        if not isinstance(data, dict) or not isinstance(data["choices"][0], dict):
            return [raw]
        choice = data["choices"][0]
        given = choice.get("delta")
        delta: dict[str, Any] = given if isinstance(given, dict) else {}
        calls, changed = self._calls(delta.get("tool_calls"))
        if changed:
            delta = {k: v for k, v in delta.items() if k != "tool_calls"}
            if calls:
                delta["tool_calls"] = calls
            data = {**data, "choices": [{**choice, "delta": delta}, *data["choices"][1:]]}
            raw = _encode(name, data)
        if choice.get("finish_reason"):
            self.held.append((name, data, raw))
            return []
        if changed and not any(v for k, v in delta.items() if k != "role"):
            return []  # nothing left in it for the client
        return [raw]

    def _calls(self, calls: Any) -> tuple[list[Any], bool]:
        if not isinstance(calls, list):
            return [], False
        kept, changed = [], False
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(call.get("index"), int):
                kept.append(call)
                continue
            at = self._number(call["index"], fn.get("name") == RECALL_TOOL_NAME, True)
            changed |= at != call["index"]
            if at is not None:
                kept.append(call if at == call["index"] else {**call, "index": at})
        return kept, changed

    def next_round(self) -> StreamFilter:
        return _ChatFilter(0, first=False)  # a continuation's tool calls are numbered afresh

    def reply(self) -> dict[str, Any] | None:
        return assemble_chat_completion(stream_payloads(bytes(self.raw)))

    def _closing(self, data: Any) -> Any:
        if not (self.recalled_only and isinstance(data, dict) and data.get("choices")):
            return data
        choice = data["choices"][0]
        if not isinstance(choice, dict) or choice.get("finish_reason") != "tool_calls":
            return data
        return {**data, "choices": [{**choice, "finish_reason": "stop"}]}


class _ResponsesFilter(StreamFilter):
    def __init__(
        self, offset: int = 0, first: bool = True, earlier: Sequence[dict[str, Any]] = (),
        sequence: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(offset, first)
        self.earlier = list(earlier)  # the output items of earlier rounds the client got
        self.sequence = sequence  # the client's next sequence_number

    def event(self, raw: bytes) -> list[bytes]:
        name, data, kind = self._read(raw)
        if not isinstance(data, dict):
            return [raw]
        if kind in ("response.created", "response.in_progress") and not self.first:
            return []
        if kind in FINAL_RESPONSE_EVENTS:
            self.held.append((name, data, raw))
            return []
        index = data.get("output_index")
        if not isinstance(index, int) or isinstance(index, bool):
            return self._forward(name, data, raw, False)  # created, error, anything new
        given = data.get("item")
        item: dict[str, Any] = given if isinstance(given, dict) else {}
        at = self._number(index, is_recall_item(item), item.get("type") in CLIENT_CALL_ITEMS)
        if at is None:
            return []
        if at != index:
            data = {**data, "output_index": at}
        return self._forward(name, data, raw, at != index)

    def _forward(self, name: str, data: dict[str, Any], raw: bytes, changed: bool) -> list[bytes]:
        number = data.get("sequence_number")
        if isinstance(number, int):
            if number != self.sequence:
                data, changed = {**data, "sequence_number": self.sequence}, True
            self.sequence += 1
        return [_encode(name, data) if changed else raw]

    def next_round(self) -> StreamFilter:
        reply = self.reply() or {}
        given = [c for c in reply.get("output") or () if isinstance(c, dict)]
        kept = [c for c in without_orphans(given) if not is_recall_item(c)]
        return _ResponsesFilter(self.offset + len(self.index), False, self.earlier + kept,
                                self.sequence)  # fmt: skip

    def reply(self) -> dict[str, Any] | None:
        return assemble_response(stream_payloads(bytes(self.raw)))

    def tail(self, usages: Sequence[Mapping[str, Any]] = ()) -> list[bytes]:
        total = summed(usages) if len(usages) > 1 else None
        out = []
        for name, data, raw in self.held:
            response = data.get("response")
            if not isinstance(response, dict) or (
                total is None and not self.hidden and not self.earlier
            ):
                out += self._forward(name, data, raw, False)
                continue
            given = [c for c in response.get("output") or () if isinstance(c, dict)]
            output = [c for c in without_orphans(given) if not is_recall_item(c)]
            new = {**response, "output": [*self.earlier, *output]}
            if total is not None and isinstance(response.get("usage"), dict):
                new["usage"] = {**response["usage"], **total}
            out += self._forward(name, {**data, "response": new}, raw, True)
        return out


def stream_filter(wire: Wire) -> StreamFilter:
    """Return the first round's filter for a stream in ``wire``'s format."""
    if wire is Wire.RESPONSES:
        return _ResponsesFilter()
    return _MessagesFilter() if wire is Wire.MESSAGES else _ChatFilter()
