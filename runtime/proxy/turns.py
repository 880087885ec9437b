"""A captured call written as a turn: its blocks in its session, and a trace record of its bytes.

Owns: ``TurnWriter``, which the recorder's writer thread calls inside one store write per batch.
What a batch adds to derived rows is folded once per batch, not once per call: the session
index hears of all the batch's entries at once (``KvBlockStore.feed_puts``) and the trace
records go in one ``record_many`` (each session's and turn's aggregates read and written once).

Invariants:
- The record's request bytes are the captured bytes, so its prompt hash is the SHA-256 of what
  the agent really sent; its response bytes are exactly what the client received (the raw SSE
  for a stream), and ``response`` holds the message (assembled from the stream) or error body.
- Origin ``capture``; fidelity follows from it (``runtime.replay.fidelity``). Status ``error``
  for an upstream 4xx/5xx, an error event in a stream, a timeout, an unreachable upstream, an
  upstream that died mid-stream or a client that hung up: the ``error`` says which.
- Only redacted headers are recorded (``runtime.proxy.apis.redact``), and the upstream URL
  without user info or query.
- The session gets the blocks it does not hold yet: the setup (system, tools) when it changes,
  then the messages after those it already holds. The plan lists every block of the request,
  in request order, as ``required``: the agent chose its context, nothing was paged. Its
  ``upto_seq`` is the seq after the session's last entry once the call's blocks are written, so
  a re-page rebuilds the session as that call saw it.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from runtime.blocks import BlockKind, Entry, NewBlock, check_session
from runtime.errors import InvalidInput, Llm386Error, UnknownModel
from runtime.pager.sections import section_of
from runtime.paging.faults import META_KEY as STATE_KEY
from runtime.providers.response import Attempt
from runtime.proxy.conversation import Conversation, ConversationReader
from runtime.proxy.exchange import Exchange, Outcome
from runtime.proxy.originals import TABLE as ORIGINALS
from runtime.proxy.originals import keep
from runtime.proxy.replies import Reply, read_reply
from runtime.proxy.sessions import TABLE, Placement, SessionBook, response_key
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Tables
from runtime.tracing.records import (
    StoredTrace,
    TraceError,
    TraceOrigin,
    TraceRecord,
    TraceStatus,
    TraceStore,
    new_record,
    prompt_hash,
)

log = logging.getLogger("llm386.proxy")
PLAN_NOTE = "captured by the proxy: the agent chose this context itself; nothing was paged"
PAGED_NOTE = ("paged by the proxy (--page): the agent's blocks are listed; what was paged out, "
              "and why, is in the turn's paging")  # fmt: skip


@dataclass(frozen=True)
class _Held:
    """What the writer knows of a session: its last turn, the setup blocks it holds and the seq
    after its last entry."""

    turn: int
    setup: frozenset[str]
    upto: int


class TurnWriter:
    """Writes captured exchanges as turns; every method runs in the recorder's writer thread."""

    def __init__(
        self, store: BlockStore, traces: TraceStore, capacity: int = 10_000, *, reuse: int = 4096
    ) -> None:
        if not isinstance(store, KvBlockStore):
            raise InvalidInput("the proxy records into an llm386 store (LMDB or PostgreSQL)")
        self.store, self.traces = store, traces
        self.book = SessionBook()
        # Remembers the messages of the last ``reuse`` requests, so a session's next call reads
        # only the messages after them (0: read every request whole).
        self.reader = ConversationReader(store.max_block_bytes, reuse)
        self.capacity = capacity
        self._held: OrderedDict[str, _Held] = OrderedDict()
        self._pending: dict[str, _Held] = {}
        # Open the prefix table in a write of its own: LMDB forgets a table first opened inside
        # a write that is then aborted, and the first batch's write may be.
        try:
            store.kv.write(lambda t: (t.get(TABLE, b"\0"), t.get(ORIGINALS, b"\0")))
        except Llm386Error as exc:  # a store that cannot be written: every batch will say so
            log.error("the store cannot be written, so nothing will be recorded: %s", exc)

    def write_batch(self, batch: list[Exchange]) -> None:
        """Write every exchange of ``batch`` in one store write (all land, or none)."""
        self.book.begin()
        self._pending = {}
        try:
            self.store.atomic(lambda: self._write_all(batch))
        except BaseException:
            self.book.abort()
            raise
        self.book.commit()
        for session, held in self._pending.items():
            self._held[session] = held
            self._held.move_to_end(session)
        while len(self._held) > self.capacity:
            self._held.popitem(last=False)

    def _write_all(self, batch: list[Exchange]) -> None:
        # An engine may run this again (after growing the map): start from nothing each time.
        self.book.begin()
        self._pending = {}
        engine = self.store.kv
        engine.write(lambda t: self._write_each(t, batch))

    def _write_each(self, t: Tables, batch: list[Exchange]) -> None:
        # What every exchange adds to the derived rows is folded once for the batch: the
        # session index hears of all the batch's entries at once (one catalog chunk, one
        # posting append per term and one histogram update per session), and the trace
        # records go in one ``record_many`` (each session's aggregates read and written once).
        entries: list[Entry] = []
        traces: list[StoredTrace] = []
        for ex in batch:
            self._write_one(t, ex, entries, traces)
        self.store.feed_puts(t, entries)
        self.traces.record_many(traces)  # joins this write: the engine is shared

    def _write_one(
        self, t: Tables, ex: Exchange, entries: list[Entry], traces: list[StoredTrace]
    ) -> None:
        wire = ex.api.wire
        # No literal cache_control and no \u escape (which could spell it): no marks to drop.
        marks = b"cache_control" in ex.request_body or b"\\u" in ex.request_body
        data, conv = self.reader.read(wire, ex.request_body, cache_marks=marks)
        keys = conv.prefix_keys if conv else ()
        previous = data.get("previous_response_id") if data else None
        follows = response_key(previous) if isinstance(previous, str) else None
        place = self.book.place(t, keys, _session_header(ex.session), follows)
        setup_ids = list(conv.setup_ids) if conv else []
        held = self._state(place.session)
        blocks, new_ids = self._new_blocks(conv, place, held)
        upto = held.upto if held else 0
        if blocks:
            edges = [e for e in conv.edges if e.dst in new_ids] if conv else []
            prepared = self.store.prepare_put(place.session, blocks, edges)
            written = self.store.put_txn(t, prepared, feed=False)
            entries.extend(written)
            upto = written[-1].seq + 1
        if held is None:
            self.store.set_session_meta(place.session, **_meta(ex, conv))
        turn = (held.turn if held else 0) + 1
        reply = read_reply(wire, ex.response_body, streamed=ex.streamed)
        record = _record(ex, conv, place, turn, reply, upto)
        if ex.sent_body is not None:
            keep(t, record.call_id, ex.request_body)
        if ex.paging_state is not None and ex.paging_state.get("faults"):
            self.store.set_session_meta(place.session, **{STATE_KEY: ex.paging_state})
        sent = ex.sent_body or ex.request_body
        traces.append(StoredTrace(record, sent, ex.response_body or None))
        self._pending[place.session] = _Held(
            turn, frozenset(setup_ids) | (held.setup if held else frozenset()), upto
        )
        self.book.remember(t, keys, place.session, record.status is TraceStatus.OK)
        answer = record.response.get("id") if record.response else None
        if record.response and record.response.get("object") == "response" and answer:
            self.book.remember(t, (response_key(str(answer)),), place.session, True)

    def _state(self, session: str) -> _Held | None:
        """Return what the session holds, from memory or (after a restart) from the store."""
        known = self._pending.get(session) or self._held.get(session)
        if known is not None:
            return known
        turns = self.traces.turns(session)
        if not turns:
            return None
        refs = self.store.entry_refs(session)
        upto = refs[-1].seq + 1 if refs else 0
        return _Held(max(turn for turn, _ in turns), frozenset(ref.id for ref in refs), upto)

    def _new_blocks(
        self, conv: Conversation | None, place: Placement, held: _Held | None
    ) -> tuple[list[NewBlock], set[str]]:
        """Return the blocks the session does not hold yet, and their ids."""
        if conv is None:
            return [], set()
        have = held.setup if held else frozenset()
        setup = [(b, i) for b, i in zip(conv.setup, conv.setup_ids, strict=True) if i not in have]
        messages = [pair for blocks, ids in zip(conv.messages[place.known :],
                                                conv.message_ids[place.known :], strict=True)
                    for pair in zip(blocks, ids, strict=True)]  # fmt: skip
        pairs = setup + messages
        return [b for b, _ in pairs], {i for _, i in pairs}


def session_id(value: str | None) -> str | None:
    """Return the session an ``x-llm386-session`` header names (surrounding whitespace taken
    off), or None when there is none or it is not a session id. The recorder and the pager
    both read the header through this, so they agree on the session."""
    if value is None:
        return None
    try:
        return check_session(value.strip())
    except Llm386Error:
        return None


def _session_header(value: str | None) -> str | None:
    session = session_id(value)
    if session is None and value is not None:
        log.warning("ignored an x-llm386-session header that is not a session id; "
                    "use letters, digits and . _ : @ + = -")  # fmt: skip
    return session


def _meta(ex: Exchange, conv: Conversation | None) -> dict[str, Any]:
    model = conv.model if conv else "unknown"
    first = next((str(b.body) for bs in (conv.messages if conv else ()) for b in bs
                  if b.kind == "user-message"), "")  # fmt: skip
    title = " ".join(first.split())[:80] or f"captured {ex.api.family.value} calls"
    return {"source": "proxy", "provider": ex.api.provider.value, "model": model,
            "title": title, "captured": True}  # fmt: skip


@functools.cache
def _kind_section(kind: BlockKind | str) -> tuple[str, str]:
    """A block kind's name and the section it is packed into (a plan lists both per block)."""
    parsed = BlockKind(kind)
    return parsed.value, section_of(parsed).value


def _plan(conv: Conversation | None, session: str, note: str) -> dict[str, Any]:
    if conv is None:
        return {"version": 1, "session": session, "selected": [], "omitted": [], "note": note}
    blocks = [*conv.setup, *(b for bs in conv.messages for b in bs)]
    ids = [*conv.setup_ids, *(i for bs in conv.message_ids for i in bs)]
    selected = [{"block_id": block_id, "kind": kind, "section": section, "reason": "required",
                 "score": 1.0, "scores": {}}
                for (kind, section), block_id in zip((_kind_section(b.kind) for b in blocks), ids,
                                                     strict=True)]  # fmt: skip
    return {"version": 1, "session": session, "task": "", "selected": selected, "omitted": [],
            "note": note}  # fmt: skip


def _error(ex: Exchange, reply: Reply) -> TraceError | None:
    if ex.outcome is not Outcome.COMPLETE:
        return TraceError(ex.outcome.value, ex.error or ex.outcome.value, ex.status)
    if ex.status is not None and ex.status >= 400:
        message = reply.error_message or ex.response_body[:500].decode("utf-8", "replace")
        return TraceError(reply.error_type or f"http-{ex.status}", message, ex.status)
    if reply.error_type is not None:
        return TraceError(reply.error_type, reply.error_message or "", ex.status)
    return None


def _upstream(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _record(
    ex: Exchange, conv: Conversation | None, place: Placement, turn: int, reply: Reply, upto: int
) -> TraceRecord:
    error = _error(ex, reply)
    body = ex.response_body
    proxy = {
        "api": ex.api.path, "upstream": _upstream(ex.upstream_url), "stream": ex.streamed,
        "status": ex.status, "outcome": ex.outcome.value, "ttfb_ms": ex.ttfb_ms,
        "total_ms": ex.total_ms, "session_from": place.source,
        "request_headers": [list(h) for h in ex.request_headers],
        "response_headers": [list(h) for h in ex.response_headers],
    }  # fmt: skip
    model = conv.model if conv else "unknown"
    attempt = Attempt(1, ex.status, None if error is None else error.type,
                      "" if error is None else error.message[:500], ex.total_ms)  # fmt: skip
    return new_record(
        ex.sent_body or ex.request_body, session=place.session, turn=turn, started_at=ex.started_at,
        provider=ex.api.provider, model=model, origin=TraceOrigin.CAPTURE, latency_ms=ex.total_ms,
        profile=_profile(model), config={"proxy": proxy},
        plan=_plan(conv, place.session, PAGED_NOTE if ex.sent_body is not None else PLAN_NOTE),
        response=dict(reply.message) if reply.message is not None else None,
        response_hash=prompt_hash(body) if body else None, usage=reply.usage,
        stop_reason=reply.stop_reason, error=error, attempts=(attempt,), upto_seq=upto,
        paging=ex.paging or {},
    )  # fmt: skip


def _profile(model: str) -> dict[str, Any]:
    from runtime.profiles.catalog import get_profile

    try:
        return dict(get_profile(model).to_json())
    except (UnknownModel, Llm386Error):
        return {}  # a model llm386 has no profile for is still recorded
