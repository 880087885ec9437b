"""Ingesting OTLP trace exports: GenAI spans become sessions of blocks and "from spans" turns.

Owns: ``ingest`` (a body as sent to ``/v1/traces``), ``ingest_request`` (a decoded
``ExportTraceServiceRequest``), their two stages ``prepare`` / ``prepare_body`` (no store: a
``Prepared``, plain data a worker process can send back, ``runtime.otel.workers``) and
``commit`` (the write), and ``IngestResult`` (accepted and rejected spans, and the OTLP
partial-success message).

Invariants:
- A request's write is all or nothing: every accepted span's turn, blocks and span row land
  together or not at all. Requests that reach ``commit`` while another is written share the
  next transaction, each with the result a write of its own would give (see ``commit``). Spans refused (``SpanRefused``) are counted and named in the result;
  they write nothing. A request is refused whole (``OtlpRejected``) only when it cannot be read.
- Idempotent: a turn remembers its span (``record.config["otlp"]``); a span already recorded
  with the same request is skipped, and one recorded with a different request, or into
  another session (its stored row's conversation), is refused.
  Within a request a span sent twice is taken once, and a span id given to two different
  spans refuses them all (which one is meant cannot be told).
- A session's entries grow by what each turn adds: its blocks (tools, then messages, then
  the answer; built by the importer's ``_Builder``) are compared with the session's entries
  and only the part after their common prefix is appended, so a conversation sent one call
  per span, in any order, holds each message once.
- A turn's request is the canonical JSON of the OpenAI chat request its messages make
  (the importer's format: provider ``openai``, origin ``import``): rebuilt from what the span
  says, never the bytes that were sent; ``runtime.replay.fidelity`` badges it "from spans".
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from runtime.blocks import Edge, NewBlock, canonical_json
from runtime.errors import InvalidInput, StoreError
from runtime.indexes.sessionindex import analyses_of, remember_analyses
from runtime.limits import InputRejected, check_value
from runtime.otel.attrjson import LIMITS, AttributeJson
from runtime.otel.genai import ModelCall, SpanRefused, is_model_call, model_call
from runtime.otel.plans import Plans
from runtime.otel.rebuild import Rebuilder
from runtime.otel.spans import (
    CONTENT_ATTRIBUTES,
    SPANS,
    SpanData,
    ensure_tables,
    get_span,
    put_rows,
    span_data,
    span_row,
)
from runtime.otel.wire import DEFAULT_OTLP_LIMITS, OtlpLimits, decode_request
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.chunking import Chunk, RequestParts
from runtime.storage.tracechunks import pack_bytes
from runtime.tokenizers import counts_by_key, remember_counts
from runtime.tracing.records import (
    ChunkedTrace,
    Provider,
    TraceError,
    TraceOrigin,
    TraceRecord,
    TraceStore,
    new_record,
)
from runtime.transfer.importer import TOKENIZER, _Builder, tokenizer_info

OTLP_KEY = "otlp"  # record.config key of a turn rebuilt from a span
SOURCE = "otlp"  # session meta "source"
_MESSAGE_LIMIT = 20  # refusals named in one partial-success message
# Requests written in one shared transaction at most: bounds its size and each one's wait.
MAX_SHARED_COMMIT = 16
log = logging.getLogger("llm386.otel")


@dataclass(frozen=True)
class IngestResult:
    """What one export request did: spans taken and refused, turns written and skipped."""

    accepted: int
    rejected: int
    turns_recorded: int
    turns_skipped: int
    sessions: tuple[str, ...]
    errors: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """The OTLP partial-success error message: why spans were refused ("" if none were)."""
        shown = "; ".join(self.errors[:_MESSAGE_LIMIT])
        more = len(self.errors) - _MESSAGE_LIMIT
        return shown + (f"; and {more} more" if more > 0 else "")

    def to_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected,
                "turns_recorded": self.turns_recorded, "turns_skipped": self.turns_skipped,
                "sessions": list(self.sessions), "errors": list(self.errors)}  # fmt: skip


def ingest(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    store: KvBlockStore,
    traces: TraceStore,
    limits: OtlpLimits = DEFAULT_OTLP_LIMITS,
) -> IngestResult:
    """Decode an OTLP/HTTP trace export and ingest it; raise OtlpRejected if it cannot be read."""
    return commit(prepare_body(body, content_type, content_encoding, limits,
                               **preparing_for(store)), store, traces)  # fmt: skip


def ingest_request(request: Any, store: KvBlockStore, traces: TraceStore) -> IngestResult:
    """Ingest a decoded ``ExportTraceServiceRequest`` in one write transaction."""
    return commit(prepare(request, **preparing_for(store)), store, traces)


# -- preparing: everything that needs no store ---------------------------------------------


@dataclass(frozen=True)
class _Built:
    """A model call with its rebuilt request and the builder of its turn's blocks (or why
    its blocks cannot be built)."""

    call: ModelCall  # lean: no messages, tools or content attributes (its blocks hold them)
    request: RequestParts
    builder: _Builder | None
    error: str | None
    title: str  # the session's title, from the call's first user message
    response: Chunk | None  # the answer's canonical JSON (packed too, when prepared in a worker)


@dataclass(frozen=True)
class Prepared:
    """An export request read, mapped and rebuilt without the store: what ``commit`` writes.

    Plain data (it crosses to and from a worker process, ``runtime.otel.workers``): the spans'
    keys, the rows they keep, the model calls (their spans without message content) in call
    order with their requests and blocks, the spans refused so far, and the token counts of
    every block the calls make, per tokenizer."""

    keys: tuple[str, ...]  # every readable span's key, as sent (copies included)
    unreadable: tuple[str, ...]
    rows: tuple[tuple[str, bytes, bytes], ...]  # (span key, row key, row) of each kept span
    refused: Mapping[str, str]  # span key -> why
    calls: tuple[_Built, ...]
    counts: Mapping[str, Mapping[str, int]]  # tokenizer -> block id -> tokens
    analyses: Mapping[str, tuple[dict[str, int], int]]  # block id -> the term index's analysis


def preparing_for(store: KvBlockStore) -> dict[str, Any]:
    """What ``prepare`` needs of a store: its block size limit and the tokenizers it counts."""
    return {"max_block_bytes": store.max_block_bytes,
            "tokenizers": tuple(sorted({TOKENIZER, *store.tokenizers}))}  # fmt: skip


def prepare_body(
    body: bytes, content_type: str | None, content_encoding: str | None, limits: OtlpLimits,
    *, max_block_bytes: int, tokenizers: Sequence[str], pack: bool = False,
) -> Prepared:  # fmt: skip
    """Decode a body and ``prepare`` it; raise OtlpRejected if it cannot be read."""
    request = decode_request(body, content_type, content_encoding, limits)
    return prepare(request, max_block_bytes=max_block_bytes, tokenizers=tokenizers, pack=pack)


def prepare(
    request: Any, *, max_block_bytes: int, tokenizers: Sequence[str], pack: bool = False
) -> Prepared:
    """Read a decoded ``ExportTraceServiceRequest`` into what ``commit`` writes (no store).

    ``pack``: also compress every distinct chunk of the requests (``Chunk.packed``), so the
    write stores them as they are. A worker process does (it has a core of its own); in the
    writing process it is not worth it, since chunks stored before are not stored again."""
    spans, unreadable = _read_spans(request)
    calls: list[ModelCall] = []
    unique, refused = _distinct(spans)  # refused: span key -> why
    parsed = AttributeJson()  # a conversation's spans repeat their messages: parse each once
    for span in unique:
        if span.key in refused:
            continue
        model = is_model_call(span)
        try:
            _check_values(span, model)
            if model:
                calls.append(model_call(span, parsed))
        except SpanRefused as exc:
            refused[span.key] = str(exc)
    rows = tuple((s.key, *span_row(s)) for s in unique if s.key not in refused)
    built = _build(calls, max_block_bytes)
    if pack:
        built = _packed(built)
    bodies = _bodies(built)
    return Prepared(
        keys=tuple(s.key for s in spans), unreadable=tuple(unreadable), rows=rows,
        refused=refused, calls=built, counts=_counts(bodies, tokenizers),
        analyses=analyses_of(bodies),
    )  # fmt: skip


def _build(calls: Sequence[ModelCall], max_block_bytes: int) -> tuple[_Built, ...]:
    """Each call's request and blocks, in call order, a session's calls sharing a
    ``Rebuilder`` (what a call gets never depends on which other calls it sees)."""
    by_session: dict[str, list[ModelCall]] = {}
    for call in sorted(calls, key=_call_order):
        by_session.setdefault(call.session, []).append(call)
    out: list[_Built] = []
    for session in sorted(by_session):
        rebuild = Rebuilder(max_block_bytes)  # this session in this request only
        for call in by_session[session]:
            request = rebuild.request(call)
            try:
                builder, error = rebuild.blocks(call), None
            except (InvalidInput, KeyError) as exc:
                builder, error = None, _where(call) + f": {exc}"
            out.append(_Built(_lean(call), request, builder, error, _title(call),
                              _response(call)))  # fmt: skip
    return tuple(out)


def _response(call: ModelCall) -> Chunk | None:
    return Chunk.of(canonical_json(call.output)) if call.output else None


def _packed(built: Sequence[_Built]) -> tuple[_Built, ...]:
    """The calls with their requests' chunks and answers compressed, each distinct chunk once."""
    chunks: dict[bytes, Chunk] = {}
    out = []
    for b in built:
        parts = tuple(chunks.get(c.digest) or chunks.setdefault(c.digest, _pack(c))
                      for c in b.request.chunks)  # fmt: skip
        response = None if b.response is None else _pack(b.response)
        out.append(replace(b, request=replace(b.request, chunks=parts), response=response))
    return tuple(out)


def _pack(chunk: Chunk) -> Chunk:
    return Chunk(chunk.digest, chunk.data, pack_bytes(chunk.data))


def _lean(call: ModelCall) -> ModelCall:
    """The call as the commit needs it: without its messages, tools, and span's message
    attributes and events (its request and blocks hold them; they are most of what a worker
    would send back)."""
    span = call.span
    kept = {k: v for k, v in span.attributes.items() if not k.startswith(CONTENT_ATTRIBUTES)}
    return replace(call, span=replace(span, attributes=kept, events=()), messages=(), tools=())


def _title(call: ModelCall) -> str:
    first = next((m.get("content") for m in call.messages if m.get("role") == "user"), "") or ""
    return " ".join(str(first).split())[:80] or call.span.name


def _bodies(built: Sequence[_Built]) -> dict[str, str]:
    """Every distinct block the calls make: its body by its id."""
    bodies: dict[str, str] = {}
    for b in built:
        if b.builder is not None:
            for block_id, block in zip(b.builder.ids, b.builder.blocks, strict=True):
                bodies.setdefault(block_id, cast(str, block.body))  # the builder's: checked
    return bodies


def _counts(bodies: Mapping[str, str], tokenizers: Sequence[str]) -> dict[str, dict[str, int]]:
    """The token counts of the blocks, per tokenizer."""
    ids, texts = list(bodies), list(bodies.values())
    return {name: dict(zip(ids, counts_by_key(name, ids, texts), strict=True))
            for name in tokenizers}  # fmt: skip


# -- committing: one write ------------------------------------------------------------------


def commit(prepared: Prepared, store: KvBlockStore, traces: TraceStore) -> IngestResult:
    """Write a prepared request in one write transaction: the spans' rows and each session's
    new turns, checked against what the store holds (spans ingested before, foreign sessions).

    Requests committed at once from several threads share a transaction (``_Group``): the
    first waits for none, and those that came while it wrote are written next, together, in
    the order they came, at most ``MAX_SHARED_COMMIT`` in one. Each gets the result a write of
    its own would have given it. A thread already inside a write of the store writes in it,
    alone: its write may still roll back, and waiting for another thread's would wait for the
    lock it holds itself."""
    if store.kv.writing():
        slot = _Slot(prepared)
        _commit_batch([slot], store, traces)
        return slot.value()
    with _groups_lock:
        group = _groups.get(traces)
        if group is None:
            group = _groups[traces] = _Group()
    return group.commit(prepared, store, traces)


class _Slot:
    """One request waiting in a group: its result, or what its write raised."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.done = False
        self.result: IngestResult | None = None
        self.error: BaseException | None = None

    def value(self) -> IngestResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class _Group:
    """The requests waiting to be committed to one trace store, and whether one is writing."""

    def __init__(self) -> None:
        self.ready = threading.Condition()
        self.waiting: list[_Slot] = []
        self.writing = False

    def commit(self, prepared: Prepared, store: KvBlockStore, traces: TraceStore) -> IngestResult:
        slot = _Slot(prepared)
        with self.ready:
            self.waiting.append(slot)
        while True:
            with self.ready:
                while self.writing and not slot.done:
                    self.ready.wait()
                if slot.done:  # written by the thread that was writing
                    return slot.value()
                self.writing = True  # this thread writes the next batch, its own or not
                batch = self.waiting[:MAX_SHARED_COMMIT]
                del self.waiting[:MAX_SHARED_COMMIT]
            try:
                _commit_batch(batch, store, traces)
            except BaseException as exc:  # noqa: BLE001 - every waiting request hears of it
                _failed(batch, slot, exc)
                if slot not in batch and not isinstance(exc, Exception):
                    # An interrupt of this thread: it stops here, its own request unwritten.
                    with self.ready:
                        if slot in self.waiting:
                            self.waiting.remove(slot)
                    raise
            finally:
                with self.ready:
                    self.writing = False
                    self.ready.notify_all()


class CommitInterrupted(StoreError):
    """The thread writing a shared commit was interrupted (Ctrl-C, exit) before it stored this
    request: nothing of it was stored, and an exporter may send it again."""


def _failed(batch: Sequence[_Slot], mine: _Slot, exc: BaseException) -> None:
    """Give each unwritten request of ``batch`` the error; an interrupt (not an ``Exception``)
    belongs to this thread alone, so the others hear that their write was cut short."""
    for waiting in batch:
        if waiting.done:
            continue
        if waiting is mine or isinstance(exc, Exception):
            waiting.error = exc
        else:
            waiting.error = CommitInterrupted(
                f"the write of these spans was interrupted ({type(exc).__name__}) before it "
                "stored them; nothing of this request was stored"
            )
        waiting.done = True


_groups: weakref.WeakKeyDictionary[TraceStore, _Group] = weakref.WeakKeyDictionary()
_groups_lock = threading.Lock()


def _commit_batch(batch: Sequence[_Slot], store: KvBlockStore, traces: TraceStore) -> None:
    """Write a batch in one transaction; if that fails, each request in one of its own (so
    one request the store refuses does not take the others with it)."""
    for slot in batch:
        for name, counts in slot.prepared.counts.items():
            remember_counts(name, counts)  # so the write counts and analyses no block again
        remember_analyses(slot.prepared.analyses)
    # Created in a write of its own: a table first opened in a write that then fails would
    # leave the engine holding a handle that died with it.
    ensure_tables(store.kv, SPANS)
    if len(batch) > 1:
        try:
            outcomes = store.atomic(lambda: [_write(store, traces, s.prepared) for s in batch])
        except Exception as exc:  # noqa: BLE001 - written again one by one, each with its own error
            log.warning("a shared write of %d OTLP requests failed (%s); writing each alone",
                        len(batch), exc)  # fmt: skip
        else:
            for slot, outcome in zip(batch, outcomes, strict=True):
                slot.result, slot.done = _result(slot.prepared, outcome), True
            return
    for slot in batch:
        try:
            one = store.atomic(lambda: _write(store, traces, slot.prepared))  # noqa: B023
            slot.result = _result(slot.prepared, one)
        except Exception as exc:  # noqa: BLE001 - raised in the thread that sent it
            slot.error = exc
        slot.done = True


def _result(prepared: Prepared, outcome: _Outcome) -> IngestResult:
    refused = {**prepared.refused, **outcome.refused}
    accepted = sum(1 for k in prepared.keys if k not in refused)
    sessions = {b.call.session for b in prepared.calls if b.call.span.key not in refused}
    return IngestResult(
        accepted=accepted, rejected=len(prepared.keys) - accepted + len(prepared.unreadable),
        turns_recorded=outcome.recorded, turns_skipped=outcome.skipped,
        sessions=tuple(sorted(sessions)),
        errors=prepared.unreadable + tuple(refused[k] for k in sorted(refused)),
    )  # fmt: skip


def _read_spans(request: Any) -> tuple[list[SpanData], list[str]]:
    spans: list[SpanData] = []
    errors: list[str] = []
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    errors.append(f"a span named {span.name!r} has a trace id of "
                                  f"{len(span.trace_id)} bytes and a span id of "
                                  f"{len(span.span_id)}; OTLP ids are 16 and 8 bytes")  # fmt: skip
                    continue
                spans.append(span_data(span, resource))
    return spans, errors


def _distinct(spans: Sequence[SpanData]) -> tuple[list[SpanData], dict[str, str]]:
    """Return each span once (a copy sent again in the same request is the same span) and
    why the spans whose id names two different spans in this request are all refused."""
    by_key: dict[str, SpanData] = {}
    counts: dict[str, int] = {}
    for span in spans:
        by_key.setdefault(span.key, span)
        counts[span.key] = counts.get(span.key, 0) + 1
    clashing = {span.key for span in spans if by_key[span.key] != span}
    refused = {
        key: f"span {by_key[key].span_id} (trace {by_key[key].trace_id}) appears "
        f"{counts[key]} times in this request as different spans; none was kept: "
        "give each span its own span id"
        for key in sorted(clashing)
    }
    return list(by_key.values()), refused


_TURN_ATTRIBUTES = ("gen_ai.", "llm.", "llm386.", "resource.")


def _check_values(span: SpanData, model: bool) -> None:
    """Refuse a span with a value that has no JSON (NaN, infinities) or is over the limits
    (nesting): those its turn may be made of if it is a model call (its ``gen_ai.*``,
    ``llm.*``, ``llm386.*`` and resource attributes and its events), else those its row
    keeps. Strings are not walked: the decoder checked them (and ``AttributeJson`` checks
    what they parse to)."""
    if model:
        values = {k: v for k, v in span.attributes.items() if k.startswith(_TURN_ATTRIBUTES)}
    else:
        values = span.row()["attributes"]
    events = span.events if model else ()
    named = [
        *values.items(),
        *((f"{e.name} {k}", v) for e in events for k, v in e.attributes.items()),
    ]
    for name, value in named:
        if isinstance(value, str):
            continue
        try:
            check_value(value, f"attribute {name}", LIMITS)
        except InputRejected as exc:
            where = f"span {span.span_id} ({span.name!r}, trace {span.trace_id})"
            raise SpanRefused(f"{where}: {exc}") from None


def _attrs(pairs: Any) -> dict[str, Any]:
    from runtime.otel.spans import attributes_of

    return {f"resource.{k}": v for k, v in attributes_of(pairs).items() if k == "service.name"}


# -- the write ---------------------------------------------------------------------------------


@dataclass
class _Outcome:
    recorded: int = 0
    skipped: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # span key -> why


def _call_order(call: ModelCall) -> tuple[int, int, int, str]:
    """Calls in the order they were made: by start time; calls of one millisecond (records
    exported from an import share one) by the length of the history they were sent, then by
    our own turn attribute when the span carries it; the span id last, so the order is total."""
    turn = call.span.attributes.get("llm386.turn")
    return (call.span.start_ns, len(call.messages),
            turn if isinstance(turn, int) and not isinstance(turn, bool) else 0,
            call.span.span_id)  # fmt: skip


def _write(store: KvBlockStore, traces: TraceStore, prepared: Prepared) -> _Outcome:
    """Write the spans' rows and each session's new turns (in the caller's write)."""
    outcome = _Outcome(refused=_elsewhere(store, [b.call for b in prepared.calls]))
    by_session: dict[str, list[_Built]] = {}
    for built in prepared.calls:  # in call order
        if built.call.span.key not in outcome.refused:
            by_session.setdefault(built.call.session, []).append(built)
    for session in sorted(by_session):
        _session(store, traces, session, by_session[session], outcome)
    rows = [(k, v) for key, k, v in prepared.rows if key not in outcome.refused]
    store.kv.write(lambda t: put_rows(t, rows))
    return outcome


def _elsewhere(store: KvBlockStore, calls: Sequence[ModelCall]) -> dict[str, str]:
    """Why the calls whose span was ingested before into another session are refused (a span
    is one call of one conversation: sent again with another, it would be a second turn)."""
    rows = store.kv.read(lambda t: [get_span(t, c.span.trace_id, c.span.span_id) for c in calls])
    refused: dict[str, str] = {}
    for call, row in zip(calls, rows, strict=True):
        if row is None:
            continue
        conversation = row["attributes"].get("gen_ai.conversation.id")
        before = str(row["trace"] if conversation is None else conversation)
        if before != call.session:
            refused[call.span.key] = _where(call) + (
                f" was ingested before into session {before!r}; nothing was changed "
                "(a span's gen_ai.conversation.id must not change)"
            )
    return refused


class _SessionState:
    """A session's entries (ids and seqs) and turns as this write sees them, and the blocks
    and edges its new turns will append (written together by ``flush``)."""

    def __init__(self, store: KvBlockStore, traces: TraceStore, session: str) -> None:
        refs = store.entry_refs(session)
        self.ids = [ref.id for ref in refs]
        self.seqs = [ref.seq for ref in refs]
        records = traces.get_many([call_id for _, call_id in traces.turns(session)])
        self.last_turn = max((r.turn for r in records), default=0)
        self.spans: dict[str, str] = {}  # span key -> prompt hash
        for r in records:
            otlp = r.config.get(OTLP_KEY)
            if isinstance(otlp, Mapping):
                self.spans[f"{otlp.get('trace')}/{otlp.get('span')}"] = r.prompt_hash
        self.foreign = bool(refs or records) and not self.spans
        self.pending: list[NewBlock] = []
        self.edges: dict[Edge, None] = {}  # in order, each once
        self.plans = Plans(session)

    def flush(self, store: KvBlockStore, session: str) -> None:
        """Append every pending block in one ``put_many`` (one index update, not one a turn)."""
        new = store.put_many(session, self.pending, list(self.edges)) if self.pending else []
        if not new and self.edges:
            store.add_edges(list(self.edges))
        self.seqs += [e.seq for e in new]
        self.pending, self.edges = [], {}


@dataclass(frozen=True)
class _Planned:
    """A turn whose blocks are pending: where they sit among the session's entries."""

    call: ModelCall
    request: RequestParts
    builder: _Builder
    common: int  # its first blocks are the session's first ``common`` entries
    at: int  # and the rest are appended at entry index ``at``
    response: Chunk | None


def _session(
    store: KvBlockStore, traces: TraceStore, session: str, calls: Sequence[_Built],
    outcome: _Outcome,
) -> None:  # fmt: skip
    state = _SessionState(store, traces, session)
    if state.foreign:
        for call in (b.call for b in calls):
            outcome.refused[call.span.key] = _where(call) + (
                f": session {session!r} holds turns that did not come from spans; "
                "give gen_ai.conversation.id another value"
            )
        return
    new_session = not state.ids and not state.last_turn
    planned: list[_Planned] = []
    for built in calls:
        turn = _plan_turn(state, built)
        if isinstance(turn, str):
            outcome.refused[built.call.span.key] = turn
        elif turn is None:
            outcome.skipped += 1
        else:
            planned.append(turn)
    if not planned:
        return
    state.flush(store, session)
    tokens = dict(zip(state.ids, store.token_counts(state.ids, TOKENIZER), strict=True))
    traces.record_stream(lambda: (_stored(p, session, state, state.last_turn + i, tokens)
                                  for i, p in enumerate(planned, start=1)))  # fmt: skip
    if new_session:
        store.set_session_meta(session, **_meta(calls[0]))
    outcome.recorded += len(planned)


def _where(call: ModelCall) -> str:
    return f"span {call.span.span_id} ({call.span.name!r}, trace {call.span.trace_id})"


def _plan_turn(state: _SessionState, built: _Built) -> _Planned | str | None:
    """Plan a call's turn (its new blocks pending), None if recorded already, or why refused."""
    call, digest = built.call, built.request.prompt_hash
    key = call.span.key
    if key in state.spans:
        if state.spans[key] == digest:
            return None
        return _where(call) + " was ingested before with different messages; nothing was changed"
    if built.builder is None:
        return built.error
    builder = built.builder
    common = 0
    for have, want in zip(state.ids, builder.ids, strict=False):
        if have != want:
            break
        common += 1
    at = len(state.ids)
    state.ids += builder.ids[common:]
    state.pending += builder.blocks[common:]
    state.edges.update(dict.fromkeys(builder.edges))
    state.spans[key] = digest
    return _Planned(call, built.request, builder, common, at, built.response)


def _stored(
    p: _Planned, session: str, state: _SessionState, turn: int, tokens: Mapping[str, int]
) -> ChunkedTrace:
    """Return the record of a planned turn, its blocks written (``state.seqs`` complete)."""
    n_new = len(p.builder.ids) - p.common
    seqs = state.seqs[: p.common] + state.seqs[p.at : p.at + n_new]
    n_input = len(p.builder.ids) - _output_blocks(p.call)
    counts = [tokens[i] for i in p.builder.ids]
    kinds = [block.kind for block in p.builder.blocks]
    plan = state.plans.plan(p.builder.ids, kinds, seqs, counts, n_input)
    record = _record(p.call, session, turn, p.request, plan, seqs, counts, n_input, p.response)
    answer = p.response
    return ChunkedTrace(record, p.request, None if answer is None else answer.data,
                        encoded=state.plans.encode(record),
                        response_packed=None if answer is None else answer.packed)  # fmt: skip


def _output_blocks(call: ModelCall) -> int:
    out = call.output
    if not out:
        return 0
    return int(bool(out.get("content"))) + len(out.get("tool_calls") or ())


def _record(
    call: ModelCall, session: str, turn: int, request: RequestParts, plan: dict[str, Any],
    seqs: Sequence[int], tokens: Sequence[int], n_input: int, answer: Chunk | None,
) -> TraceRecord:  # fmt: skip
    span = call.span
    error = (
        TraceError("span-error", span.status_message or "the span's status is error")
        if span.status == "error"
        else None
    )
    response = dict(call.output) if call.output else None
    return new_record(
        request, session=session, turn=turn, started_at=span.start_ns // 1_000_000,
        provider=Provider.OPENAI, model=call.model, origin=TraceOrigin.IMPORT,
        latency_ms=span.duration_ms,
        tokenizer=tokenizer_info(), config={OTLP_KEY: _provenance(call)},
        upto_seq=(seqs[n_input - 1] + 1) if n_input else 0,
        plan=plan,
        estimated_input_tokens=sum(tokens[:n_input]), response=response,
        response_hash=answer.digest.hex() if answer is not None else None,
        estimated_output_tokens=sum(tokens[n_input:]), usage=call.usage,
        stop_reason=call.finish_reason, error=error,
    )  # fmt: skip


def _provenance(call: ModelCall) -> dict[str, Any]:
    """What a turn keeps of its span: where it came from and what the page must say."""
    return {"trace": call.span.trace_id, "span": call.span.span_id, "name": call.span.name,
            "provider": call.provider_name, "convention": call.convention,
            "dropped_parts": call.dropped_parts, "params": dict(call.params),
            "service": call.span.attributes.get("resource.service.name")}  # fmt: skip


def _meta(built: _Built) -> dict[str, Any]:
    call = built.call
    return {"source": SOURCE, "model": call.model, "provider": call.provider_name,
            "title": built.title, "trace": call.span.trace_id}  # fmt: skip


def spans_of(request: Any) -> Iterator[SpanData]:
    """Yield a decoded request's spans as ``SpanData`` (those with valid ids)."""
    yield from _read_spans(request)[0]
