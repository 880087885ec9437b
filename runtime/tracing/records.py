"""Trace records: what one model call saw, why, what came back, and the store interface for them.

Owns: ``TraceRecord`` and its value types, the stored encoding (canonical JSON with a schema
version), call ids, and the ``TraceStore`` interface (LMDB in ``runtime.storage.lmdb.traces``; PostgreSQL
can implement the same ABC later).

Invariants:
- ``prompt_hash`` is the SHA-256 (hex) of the exact request bytes, and a store refuses a record
  whose request bytes do not hash to it (the reference design stored a constant hash of b"").
  Request bytes are stored once per hash, apart from the records.
- ``replay_complete`` is never stored: a store sets it on every read from whether the request
  bytes are stored. Their hash is checked when they are written, whenever they are read and by
  ``verify``, so damaged bytes are refused and reported, never returned.
- A record is immutable once stored. The only thing that changes later is the user's flag
  (failing + note), kept beside the record, never inside it.
- Call ids sort by creation time: 13 digits of ms since the epoch, a 4-hex per-process counter
  and 8 hex random digits. The clock makes them; nothing here reaches a prompt.
- Turns are numbered from 1 within a session; a replay keeps its parent's turn number.

Expected plan shape (the pager's ``PagePlan.to_json()``; stored as given, read tolerantly)::

    {"selected": [{"block_id", "seq"?, "kind"?, "section", "reason", "score",
                   "scores": {retriever: score}, "tokens"}, ...],
     "omitted":  [same keys, "reason" says why it was left out],
     "sections": [{"section", "allocated", "used"}, ...], "budget"?: int, "tokens"?: int}
"""

from __future__ import annotations

import abc
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from runtime import __version__, limits
from runtime.blocks import canonical_json, check_session
from runtime.errors import InvalidInput, StoreCorrupted
from runtime.providers.response import Attempt as AttemptRecord  # one type for an HTTP attempt
from runtime.providers.usage import Usage as TokenUsage  # the one usage type
from runtime.storage.chunking import RequestParts
from runtime.storage.codec import json_load
from runtime.storage.interface import RepairReport, VerifyReport

if TYPE_CHECKING:
    from runtime.tracing.aggregates import SessionTraceStats, TurnGroup

TRACE_SCHEMA = 1
CALL_ID_LEN = 25
# 13-digit ms timestamp + 4-hex per-process counter: distinct for every call one process makes
# (the first 12 characters are shared by every call in the same ~100 s).
SHORT_CALL_ID_LEN = 17
_CALL_ID_RE = re.compile(r"^\d{13}[0-9a-f]{12}$")
_CALL_PREFIX_RE = re.compile(r"^[0-9a-f]{4,25}$")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
# A prompt hash may be shortened to a unique prefix of this many hex characters or more (pages
# show 12); fewer would match too many hashes to be worth a lookup.
MIN_HASH_PREFIX = 8
_HASH_PREFIX_RE = re.compile(r"^[0-9a-f]{1,64}$")


class TraceStatus(StrEnum):
    OK = "ok"
    ERROR = "error"


class Provider(StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    OFFLINE = "offline"


class TraceOrigin(StrEnum):
    """How a record came to be: a live call, a replay, an import, or a capture by the proxy."""

    LIVE = "live"
    REPLAY = "replay"
    IMPORT = "import"
    CAPTURE = "capture"  # an agent's own call, recorded byte for byte by `llm386 proxy`


@dataclass(frozen=True)
class TokenizerInfo:
    name: str
    version: str


@dataclass(frozen=True)
class TraceError:
    """Why a call failed: the error type (API or ours), the HTTP status if any, the message."""

    type: str
    message: str
    status: int | None = None


@dataclass(frozen=True)
class Flag:
    """A user's mark that a record shows the agent failing, with their note."""

    note: str
    flagged_at: int  # ms since the epoch


@dataclass(frozen=True)
class TraceRecord:
    """One model call: inputs (profile, config, plan, request hash), outcome, and accounting."""

    call_id: str
    session: str
    turn: int
    started_at: int  # ms since the epoch
    provider: Provider
    model: str
    prompt_hash: str
    request_size: int
    status: TraceStatus = TraceStatus.OK
    origin: TraceOrigin = TraceOrigin.LIVE
    parent_call_id: str | None = None
    latency_ms: float | None = None
    runtime_version: str = ""
    tokenizer: TokenizerInfo | None = None
    # What re-paging needs: the profile and pager config as they were, the task, and how much of
    # the session existed (entries with seq < upto_seq).
    profile: Mapping[str, Any] = field(default_factory=dict, hash=False)
    config: Mapping[str, Any] = field(default_factory=dict, hash=False)
    task: str = ""
    upto_seq: int | None = None
    plan: Mapping[str, Any] = field(default_factory=dict, hash=False)
    estimated_input_tokens: int | None = None
    response: Mapping[str, Any] | None = field(default=None, hash=False)
    response_hash: str | None = None
    estimated_output_tokens: int | None = None
    usage: TokenUsage | None = None
    stop_reason: str | None = None
    error: TraceError | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    paging: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Set by the store on read; never stored.
    flag: Flag | None = None
    replay_complete: bool = False

    @property
    def flagged(self) -> bool:
        return self.flag is not None

    @property
    def total_tokens(self) -> int:
        """Provider-reported input + output when known, else the local estimates."""
        if self.usage is not None:
            return self.usage.total_input_tokens + self.usage.output_tokens
        return (self.estimated_input_tokens or 0) + (self.estimated_output_tokens or 0)

    def to_json(self) -> dict[str, Any]:
        """Return every field as JSON-ready data, including the read-time flag and replay check."""
        data = self.stored_json()
        data["flag"] = None if self.flag is None else json_ready(self.flag)
        data["replay_complete"] = self.replay_complete
        return data

    def stored_json(self) -> dict[str, Any]:
        """Return the fields a store keeps (no flag, no replay check), with the schema version."""
        data: dict[str, Any] = {"schema": TRACE_SCHEMA}
        for name in _STORED_FIELDS:
            data[name] = json_ready(getattr(self, name))
        return data

    def encode(self) -> bytes:
        return canonical_json(self.stored_json())

    @classmethod
    def decode(cls, raw: bytes) -> TraceRecord:
        """Read stored bytes; refuse an unknown schema version rather than guess."""
        data = json_load(raw)
        if not isinstance(data, dict) or data.get("schema") != TRACE_SCHEMA:
            schema = data.get("schema") if isinstance(data, dict) else None
            raise StoreCorrupted(
                f"a trace record has schema {schema!r}, this runtime reads {TRACE_SCHEMA}; "
                "upgrade llm386 or run `llm386 verify`"
            )
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TraceRecord:
        """Build a record from ``to_json``/``stored_json`` data (flag and replay check ignored)."""
        try:
            kwargs = {name: _read_field(name, data[name]) for name in _REQUIRED}
            kwargs |= {name: _read_field(name, data[name]) for name in _OPTIONAL if name in data}
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"trace record data is not valid ({exc}); export it again") from None


_READ_ONLY = ("flag", "replay_complete")
_STORED_FIELDS = tuple(name for name in TraceRecord.__dataclass_fields__ if name not in _READ_ONLY)
_REQUIRED = (
    "call_id", "session", "turn", "started_at", "provider", "model", "prompt_hash", "request_size"
)  # fmt: skip
_OPTIONAL = tuple(name for name in _STORED_FIELDS if name not in _REQUIRED)


def json_ready(value: Any) -> Any:
    """Return ``value`` as JSON-ready data (enums by value, dataclasses as dicts, tuples as lists)."""
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "__dataclass_fields__"):
        return {name: json_ready(getattr(value, name)) for name in value.__dataclass_fields__}
    if isinstance(value, tuple | list):
        return [json_ready(item) for item in value]
    return value  # mappings (plan, profile, response...) are JSON already; the encoder checks


def _read_field(name: str, value: Any) -> Any:
    reader = _READERS.get(name)
    if value is None or reader is None:
        return value
    return reader(value)


_READERS: dict[str, Any] = {
    "provider": Provider,
    "status": TraceStatus,
    "origin": TraceOrigin,
    "tokenizer": lambda v: TokenizerInfo(**v),
    "usage": lambda v: TokenUsage(**v),
    "error": lambda v: TraceError(**v),
    "attempts": lambda v: tuple(AttemptRecord(**a) for a in v),
    "turn": int,
    "started_at": int,
    "request_size": int,
}


def prompt_hash(request: bytes) -> str:
    """Return the prompt hash of request bytes: their SHA-256, hex."""
    return hashlib.sha256(request).hexdigest()


def check_record(
    record: TraceRecord, request: bytes | RequestParts, response: bytes | None = None
) -> None:
    """Raise InvalidInput unless ``record`` is well formed and its bytes hash to its hashes.

    Chunked request parts carry the hash and size their builder computed from the bytes."""
    limits.check_fields(record, "trace record")
    check_call_id(record.call_id, full=True)
    check_session(record.session)
    if not 1 <= record.turn < 2**32:
        raise InvalidInput(f"turn {record.turn} is not valid; turns are numbered from 1")
    if not 0 <= record.started_at < 2**63:
        raise InvalidInput(f"started_at {record.started_at} is not a time in ms since the epoch")
    if isinstance(request, RequestParts):
        actual, size = request.prompt_hash, request.size
    else:
        actual, size = prompt_hash(request), len(request)
    if record.prompt_hash != actual or record.request_size != size:
        raise InvalidInput(
            f"trace {record.call_id} says prompt hash {record.prompt_hash[:12]} over "
            f"{record.request_size} bytes, but the request bytes hash to {actual[:12]} over "
            f"{size}; build the record with TraceRecord fields from prompt_hash(request)"
        )
    if response is not None and record.response_hash not in (None, prompt_hash(response)):
        raise InvalidInput(
            f"trace {record.call_id}: the response bytes do not hash to its response_hash"
        )
    if (record.status is TraceStatus.ERROR) != (record.error is not None):
        raise InvalidInput(
            f"trace {record.call_id}: status error goes with an error, and only then"
        )
    if record.parent_call_id is not None:
        check_call_id(record.parent_call_id, full=True)


def check_call_id(call_id: str, *, full: bool = False) -> str:
    """Return ``call_id`` lower-cased if it is a call id (or, unless ``full``, a 4+ prefix)."""
    cid = call_id.strip().lower() if isinstance(call_id, str) else ""
    if _CALL_ID_RE.match(cid) if full else _CALL_PREFIX_RE.match(cid):
        return cid
    what = "a call id (25 characters)" if full else "a call id or a prefix of 4+ characters"
    raise InvalidInput(f"{call_id!r} is not {what}; `llm386 traces` lists them")


def check_hash(value: str) -> str:
    """Return a lower-case SHA-256 hex digest or raise InvalidInput."""
    digest = value.strip().lower() if isinstance(value, str) else ""
    if not _HASH_RE.match(digest):
        raise InvalidInput(f"{value!r} is not a SHA-256 hash (64 hex characters)")
    return digest


def check_hash_prefix(value: str) -> str:
    """Return a lower-case prompt hash or prefix of it (8 to 64 hex characters), or raise."""
    prefix = value.strip().lower() if isinstance(value, str) else ""
    if not _HASH_PREFIX_RE.match(prefix):
        raise InvalidInput(
            f"{value!r} is not a prompt hash: expected {MIN_HASH_PREFIX}-64 hex characters"
        )
    if len(prefix) < MIN_HASH_PREFIX:
        raise InvalidInput(
            f"prompt hash prefix {prefix!r} is too short: give at least {MIN_HASH_PREFIX} "
            "hex characters (pages show 12)"
        )
    return prefix


class _CallIds:
    """Monotonic within a process: a later call never gets a smaller id, even if the clock steps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def next(self, now_ms: int | None = None) -> str:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:
                ms, self._counter = self._last_ms, self._counter + 1
                if self._counter > 0xFFFF:
                    ms, self._counter = ms + 1, 0
            else:
                self._counter = 0
            self._last_ms = ms
            counter = self._counter
        return f"{ms:013d}{counter:04x}{os.urandom(4).hex()}"


_call_ids = _CallIds()


def new_call_id() -> str:
    """Return a new unique call id that sorts after every id this process made before."""
    return _call_ids.next()


def new_record(
    request: bytes | RequestParts, *, error: TraceError | None = None, **fields: Any
) -> TraceRecord:
    """Return the record of a new call that sent ``request``: a fresh call id, the request's
    hash and size, status ``error`` when there is an ``error``, and this runtime's version.

    Chunked request parts carry the hash and size their builder computed from the bytes."""
    if isinstance(request, RequestParts):
        digest, size = request.prompt_hash, request.size
    else:
        digest, size = prompt_hash(request), len(request)
    return TraceRecord(
        call_id=new_call_id(), prompt_hash=digest, request_size=size,
        status=TraceStatus.OK if error is None else TraceStatus.ERROR, error=error,
        runtime_version=__version__, **fields,
    )  # fmt: skip


def short_call_id(call_id: str) -> str:
    """Return the display prefix of a call id: timestamp and counter, unique in practice."""
    return call_id[:SHORT_CALL_ID_LEN]


def now_ms() -> int:
    return int(time.time() * 1000)


def with_read_state(record: TraceRecord, flag: Flag | None, stored: bytes | None) -> TraceRecord:
    """Return ``record`` with its flag and a replay check re-derived from the stored bytes."""
    complete = stored is not None and prompt_hash(stored) == record.prompt_hash
    return replace(record, flag=flag, replay_complete=complete)


REPAGE_KEY = "repage"  # record.config key of a re-paged request (recorded, not sent)
SPANS_KEY = "otlp"  # record.config key of a turn rebuilt from an OpenTelemetry span


def from_spans(record: TraceRecord) -> bool:
    """Whether ``record`` was rebuilt from an OpenTelemetry span (``runtime.otel.ingest``)."""
    return record.origin is TraceOrigin.IMPORT and isinstance(record.config.get(SPANS_KEY), Mapping)


class Delivery(StrEnum):
    """What became of a recorded call: answered, failed (no usage reported), or never sent."""

    ANSWERED = "answered"
    FAILED = "failed"
    NOT_SENT = "not-sent"  # a re-page: recorded so it can be replayed, never sent itself


def delivery(record: TraceRecord) -> Delivery:
    """Return whether ``record`` was answered, failed, or was never sent (a re-page)."""
    if record.status is TraceStatus.ERROR:
        return Delivery.FAILED
    if REPAGE_KEY in record.config and record.response is None:
        return Delivery.NOT_SENT
    return Delivery.ANSWERED


@dataclass(frozen=True)
class StoredTrace:
    """A record with the bytes that go with it (what export and import move around)."""

    record: TraceRecord
    request: bytes
    response: bytes | None = None
    flag: Flag | None = None  # recorded with the record, as if flagged right after


@dataclass(frozen=True)
class ChunkedTrace:
    """A new record whose request comes as chunks (``runtime.storage.chunking``), never whole.

    What a long session's import writes: its requests share almost all their bytes, and
    building each one whole would cost memory and time growing with the square of its length."""

    record: TraceRecord
    request: RequestParts
    response: bytes | None = None
    flag: Flag | None = None
    encoded: bytes | None = None  # ``record.encode()``, when the caller made it more cheaply
    response_packed: bytes | None = None  # ``pack_bytes(response)``, made by the same caller


@dataclass(frozen=True)
class TraceGeneration:
    """How many writes a trace store has taken, bumped in the same transaction as each write.

    A derived index that remembers the generation it last saw can tell appends (only ``added``
    moved) from anything it cannot follow by appending (``deleted`` or ``repairs`` moved):
    comparing record counts cannot, since a delete followed by as many adds leaves the count unchanged.
    """

    added: int = 0  # records ever stored
    deleted: int = 0  # records ever deleted
    repairs: int = 0  # repairs, which may drop or restore records' index rows
    writes: int = 0  # write transactions that changed something (flags included)


@dataclass(frozen=True)
class TraceQuery:
    """What one ``TraceStore.list`` asks for: filters (None matches every record) and a window."""

    session: str | None = None
    status: TraceStatus | None = None
    flagged: bool | None = None
    prompt_hash: str | None = None
    offset: int = 0
    limit: int | None = 50
    newest_first: bool = True


class TraceStore(abc.ABC):
    """Durable trace records with indexes by session, time, status, flag and prompt hash."""

    @abc.abstractmethod
    def record(self, record: TraceRecord, request: bytes, response: bytes | None = None) -> None:
        """Store a new record with its request bytes and raw response bytes, atomically."""

    @abc.abstractmethod
    def record_many(self, items: Sequence[StoredTrace]) -> None:
        """Store several new records in one atomic write."""

    def record_stream(self, items: Callable[[], Iterable[ChunkedTrace]]) -> int:
        """Store what ``items()`` yields in one atomic write; return how many were stored.

        A store may call ``items`` again to retry; this default holds them all at once."""
        batch = [StoredTrace(i.record, i.request.join(), i.response, i.flag) for i in items()]
        self.record_many(batch)
        return len(batch)

    @abc.abstractmethod
    def get(self, call_id: str) -> TraceRecord:
        """Return the record with this call id or unique prefix; raise TraceNotFound otherwise."""

    @abc.abstractmethod
    def get_many(self, call_ids: Sequence[str]) -> list[TraceRecord]:
        """Return several records (full ids or unique prefixes), in the order given."""

    @abc.abstractmethod
    def stored_trace(self, call_id: str) -> StoredTrace:
        """Return a record with its request and response bytes (what export writes)."""

    @abc.abstractmethod
    def turns(self, session: str) -> list[tuple[int, str]]:
        """Return (turn, call id) of every record of a session, in turn order."""

    @abc.abstractmethod
    def turn_groups(
        self, session: str, *, offset: int = 0, limit: int | None = 50, reverse: bool = False
    ) -> list[tuple[int, TurnGroup]]:
        """Return a page of a session's turns (by turn number) with their aggregates."""

    @abc.abstractmethod
    def turn_group(self, session: str, turn: int) -> TurnGroup | None:
        """Return one turn's aggregates (None: the session has no such turn)."""

    @abc.abstractmethod
    def adjacent_turns(
        self, session: str, turn: int
    ) -> tuple[tuple[int, TurnGroup] | None, tuple[int, TurnGroup] | None]:
        """Return the turns just before and after ``turn`` in its session (or None)."""

    @abc.abstractmethod
    def turn_call_ids(self, session: str, turn: int) -> list[str]:
        """Return the call ids of one turn's records, in call id order."""

    def count(
        self,
        *,
        session: str | None = None,
        status: TraceStatus | str | None = None,
        flagged: bool | None = None,
    ) -> int:
        """Return how many records match, from the kept aggregates."""
        want = TraceStatus(status) if status is not None else None
        return self.count_matching(TraceQuery(session, want, flagged, limit=None))

    @abc.abstractmethod
    def count_matching(self, query: TraceQuery) -> int:
        """Return how many records match ``query``'s session, status and flagged filters."""

    @abc.abstractmethod
    def request_bytes(self, prompt_hash: str) -> bytes | None:
        """Return the stored request bytes for a prompt hash exactly as stored (unchecked)."""

    @abc.abstractmethod
    def resolve_prompt_hash(self, prefix: str) -> str:
        """Return the one recorded prompt hash starting with ``prefix`` (8 to 64 hex characters).

        Raises ``TraceNotFound`` when no record sent such a hash and ``AmbiguousPrefix`` (listing
        the candidates) when several did.
        """

    @abc.abstractmethod
    def response_bytes(self, call_id: str) -> bytes | None:
        """Return the raw response bytes of a record, if it got a response."""

    @abc.abstractmethod
    def flag(self, call_id: str, note: str = "") -> TraceRecord:
        """Mark a record as failing with a note (again: replace the note)."""

    @abc.abstractmethod
    def unflag(self, call_id: str) -> TraceRecord:
        """Remove a record's failing mark."""

    @abc.abstractmethod
    def session_stats(self, sessions: Sequence[str]) -> list[SessionTraceStats]:
        """Return the aggregates of each session, in the order given (zeros if it has none)."""

    @abc.abstractmethod
    def delete_session(self, session: str) -> int:
        """Delete every record of a session (and bytes no other record uses); return how many."""

    @abc.abstractmethod
    def verify(self) -> VerifyReport:
        """Re-hash every stored request and check every index and count; change nothing.

        The report's ``entries`` counts records and ``blocks`` counts stored requests.
        """

    @abc.abstractmethod
    def generation(self) -> TraceGeneration:
        """Return the write counters (all zero for a store written before they existed)."""

    @abc.abstractmethod
    def repair(self) -> RepairReport:
        """Rebuild indexes and counts from the records; drop request bytes no record uses."""

    @abc.abstractmethod
    def select(self, query: TraceQuery) -> list[TraceRecord]:
        """Return the records ``query`` matches, read through an index (never a scan)."""

    # `list` comes last: below it, the name would shadow the builtin in annotations.
    def list(
        self,
        *,
        session: str | None = None,
        status: TraceStatus | str | None = None,
        flagged: bool | None = None,
        prompt_hash: str | None = None,
        offset: int = 0,
        limit: int | None = 50,
        newest_first: bool = True,
    ) -> list[TraceRecord]:
        """Return records matching every filter given, read through an index (never a scan)."""
        want = TraceStatus(status) if status is not None else None
        query = TraceQuery(session, want, flagged, prompt_hash, offset, limit, newest_first)
        return self.select(query)
