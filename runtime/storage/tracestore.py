"""The trace store, written once on the key-value seam (``runtime.storage.kv``) for every backend.

Layout (tables; ``cid`` is the 25-byte ASCII call id, ``h`` the 32 raw hash bytes):

    trace_meta       b"schema" -> b"2"; b"totals" -> JSON {calls, error, flagged};
                     b"generation" -> JSON {added, deleted, repairs, writes} (TraceGeneration)
    traces           cid -> canonical JSON record (TraceRecord.stored_json), or its chunks
                     when large (``runtime.storage.tracechunks``)
    trace_by_session session 0x00 turn(4 BE) cid -> b""
    trace_by_time    started_at(8 BE) cid -> b""
    trace_by_status  status 0x00 cid -> b""          status in ok | error | flagged
    trace_by_hash    h cid -> b""
    trace_requests   h -> the request's chunk nodes   once per prompt hash
    trace_responses  cid -> codec byte + bytes
    trace_flags      cid -> JSON {note, flagged_at}
    trace_sessions   session -> JSON SessionTraceStats (``runtime.tracing.aggregates``)
    trace_turns      session 0x00 turn(4 BE) -> JSON TurnGroup (layout version 2 on)

Invariants: a record, its index rows, its bytes and the session, turn and global aggregates
change in one write transaction; request bytes are deleted only when no record still names
their hash; listing reads one index and stops after ``offset + limit`` matches. Request bytes
are checked against their prompt hash when they are written, whenever they are read
(``request_bytes``) and by ``verify``; reading a record only checks that its request is stored,
so a page that shows records never decompresses or hashes request bytes. The aggregates exist
from layout version 2 (``runtime.storage.migrations``): a writable store is migrated when a trace
store is opened on it; a read-only store of an older layout reads records but refuses to
answer from aggregates it does not have, saying to run ``llm386 migrate``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from runtime.blocks import canonical_json, check_session
from runtime.errors import (
    AmbiguousPrefix,
    InvalidInput,
    StoreCorrupted,
    StoreError,
    StoreOutdated,
    TraceNotFound,
)
from runtime.storage import migrations
from runtime.storage.chunking import DIGEST_SIZE, request_parts, split_digests
from runtime.storage.codec import json_load
from runtime.storage.interface import BlockStore, RepairReport, VerifyReport
from runtime.storage.kv import Engine, Tables, prefix_end
from runtime.storage.tracechunks import (
    CHUNKED,
    CHUNKS,
    NODES,
    RAW,
    REFS,
    ZLIB,
    pack_bytes,
    put_chunked,
    put_request,
    release_row,
)
from runtime.tracing.aggregates import SessionTraceStats, TurnGroup
from runtime.tracing.records import (
    CALL_ID_LEN,
    ChunkedTrace,
    Flag,
    StoredTrace,
    TraceGeneration,
    TraceRecord,
    TraceStatus,
    TraceStore,
    check_call_id,
    check_hash,
    check_hash_prefix,
    check_record,
    now_ms,
)
from runtime.tracing.records import prompt_hash as hash_of

T = TypeVar("T")
META, TRACES, FLAGS = "trace_meta", "traces", "trace_flags"
BY_SESSION, BY_TIME = "trace_by_session", "trace_by_time"
BY_STATUS, BY_HASH = "trace_by_status", "trace_by_hash"
REQUESTS, RESPONSES = "trace_requests", "trace_responses"
SESSIONS, TURNS = "trace_sessions", "trace_turns"
INDEXES = (BY_SESSION, BY_TIME, BY_STATUS, BY_HASH)
TABLES = (META, TRACES, FLAGS, *INDEXES, REQUESTS, RESPONSES, SESSIONS, TURNS, CHUNKS, NODES, REFS)
FLAGGED = "flagged"
SCHEMA = b"2"  # the trace tables' own layout: requests as chunks (1: whole requests, still read)
READABLE_SCHEMAS = (b"1", SCHEMA)
TOTALS, GENERATION = b"totals", b"generation"
_CANDIDATES = 5  # hashes an ambiguous prefix error lists
CHUNK_RECORDS_FROM = 16 * 1024  # bytes of record JSON from which it is stored as chunks


def session_key(session: str, turn: int, cid: str = "") -> bytes:
    return session.encode() + b"\x00" + turn.to_bytes(4, "big") + cid.encode()


def session_prefix(session: str) -> bytes:
    return session.encode() + b"\x00"


def status_key(status: str, cid: str) -> bytes:
    return status.encode() + b"\x00" + cid.encode()


def index_rows(rec: TraceRecord) -> list[tuple[str, bytes]]:
    """Return the (table, key) index rows of a record (its flag row aside)."""
    cid = rec.call_id
    return [
        (BY_SESSION, session_key(rec.session, rec.turn, cid)),
        (BY_TIME, rec.started_at.to_bytes(8, "big") + cid.encode()),
        (BY_STATUS, status_key(rec.status.value, cid)),
        (BY_HASH, bytes.fromhex(rec.prompt_hash) + cid.encode()),
    ]


def unpack_bytes(stored: bytes) -> bytes:
    """Return the bytes ``pack_bytes`` stored; raise StoreCorrupted if they are damaged."""
    tag, body = stored[:1], stored[1:]
    if tag == RAW:
        return body
    if tag == ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error:
            raise StoreCorrupted(
                "stored trace bytes do not decompress; run `llm386 verify`"
            ) from None
    raise StoreCorrupted(f"stored trace bytes have unknown codec {tag!r}; run `llm386 verify`")


def load_chunked(t: Tables, stored: bytes) -> bytes:
    """Return the bytes of a row of node digests (raise StoreCorrupted if a piece is missing)."""
    out = []
    for node in split_digests(stored[1:]):
        children = t.get(NODES, node)
        if children is None or len(children) % DIGEST_SIZE:
            raise StoreCorrupted(f"request node {node.hex()[:12]} is missing; run `llm386 verify`")
        for digest, chunk in zip(
            split_digests(children), t.get_many(CHUNKS, list(split_digests(children))), strict=True
        ):
            if chunk is None:
                raise StoreCorrupted(
                    f"request chunk {digest.hex()[:12]} is missing; run `llm386 verify`"
                )
            out.append(unpack_bytes(chunk))
    return b"".join(out)


def load_request(t: Tables, stored: bytes, expected: str) -> bytes:
    """Return a request row's bytes; raise StoreCorrupted unless they hash to ``expected``."""
    data = load_chunked(t, stored) if stored[:1] == CHUNKED else unpack_bytes(stored)
    if hash_of(data) != expected:
        raise StoreCorrupted(
            f"the stored request {expected[:12]} no longer hashes to its prompt hash; "
            "run `llm386 verify`"
        )
    return data


def decode_row(t: Tables, raw: bytes) -> TraceRecord:
    """Return the record a ``traces`` row holds, whole or as chunks."""
    return TraceRecord.decode(load_chunked(t, raw) if raw[:1] == CHUNKED else raw)


def stored_stats(t: Tables, session: str) -> SessionTraceStats:
    raw = t.get(SESSIONS, session.encode())
    return (
        SessionTraceStats(session)
        if raw is None
        else SessionTraceStats.from_stored(session, json_load(raw))
    )


def put_stats(t: Tables, stats: SessionTraceStats) -> None:
    key = stats.session.encode()
    if stats.calls <= 0:
        t.delete(SESSIONS, key)
    else:
        t.put(SESSIONS, key, canonical_json(stats.stored()))


def put_group(t: Tables, session: str, turn: int, group: TurnGroup) -> None:
    t.put(TURNS, session_key(session, turn), canonical_json(group.stored()))


def _trace_layout(t: Tables) -> bytes | None:
    try:
        return t.get(META, b"schema")
    except StoreError:
        return None  # a read-only store never written by a trace store has no trace tables


def _turn_of(key: bytes, prefix: bytes) -> int:
    return int.from_bytes(key[len(prefix) : len(prefix) + 4], "big")


class KvTraceStore(TraceStore):
    """Trace records in the tables of a block store's engine (``store.kv``)."""

    def __init__(self, store: BlockStore) -> None:
        self.kv: Engine = store.kv
        if not self.kv.readonly:
            migrations.migrate(self.kv)
        self.outdated = migrations.current_version(self.kv) < migrations.CURRENT_VERSION
        schema = self.kv.read(_trace_layout)
        if schema not in (None, *READABLE_SCHEMAS):
            raise StoreCorrupted(
                f"the traces in {self.kv.location} use layout {schema!r}; this llm386 reads "
                f"{b' and '.join(READABLE_SCHEMAS)!r}: upgrade llm386"
            )
        if schema != SCHEMA and not self.kv.readonly:
            self.kv.write(lambda t: t.put(META, b"schema", SCHEMA))

    def _read(self, fn: Callable[[Tables], T]) -> T:
        return self.kv.read(fn)

    def _aggregates(self, fn: Callable[[Tables], T]) -> T:
        """Read aggregates (refused on a read-only store too old to have them)."""
        if self.outdated:
            raise StoreOutdated(
                f"the store at {self.kv.location} predates the session aggregates; run "
                "`llm386 migrate` (with write access) to upgrade it, then open it again"
            )
        return self.kv.read(fn)

    # -- writes -------------------------------------------------------------------------
    def record(self, record: TraceRecord, request: bytes, response: bytes | None = None) -> None:
        self.record_many([StoredTrace(record, request, response)])

    def record_many(self, items: Sequence[StoredTrace]) -> None:
        for item in items:
            check_record(item.record, item.request, item.response)
        self.kv.write(lambda t: self.record_many_in(t, items))

    def record_many_in(self, t: Tables, items: Sequence[StoredTrace]) -> None:
        """Record ``items`` in the caller's write transaction; the caller ran check_record."""
        self.record_chunked_in(
            t, (ChunkedTrace(i.record, request_parts(i.request), i.response, i.flag) for i in items)
        )

    def record_stream(self, items: Callable[[], Iterable[ChunkedTrace]]) -> int:
        """Record what ``items()`` yields in one write, one at a time; return how many.

        ``items`` is called again if the write is retried, so it must give the same items each
        time; none of them is held after it is written."""
        return self.kv.write(lambda t: self.record_stream_in(t, items()))

    def record_stream_in(self, t: Tables, items: Iterable[ChunkedTrace]) -> int:
        """Check and record ``items`` in the caller's write transaction; return how many."""

        def checked() -> Iterator[ChunkedTrace]:
            for item in items:
                check_record(item.record, item.request, item.response)
                yield item

        return self.record_chunked_in(t, checked())

    def record_chunked_in(self, t: Tables, items: Iterable[ChunkedTrace]) -> int:
        count = 0
        for item in items:
            self._record_in(t, item)
            count += 1
        if count:
            self._bump_generation(t, added=count)
        return count

    def _bump_generation(
        self, t: Tables, *, added: int = 0, deleted: int = 0, repairs: int = 0
    ) -> None:
        # In the caller's write transaction, so a reader never sees data without its generation.
        g = self._generation_in(t)
        g = TraceGeneration(g.added + added, g.deleted + deleted, g.repairs + repairs, g.writes + 1)
        t.put(META, GENERATION, canonical_json(g.__dict__))

    def _generation_in(self, t: Tables) -> TraceGeneration:
        raw = t.get(META, GENERATION)
        return TraceGeneration() if raw is None else TraceGeneration(**json_load(raw))

    def _record_in(self, t: Tables, item: ChunkedTrace) -> None:
        rec, cid = item.record, item.record.call_id
        key = cid.encode()
        if t.get(TRACES, key) is not None:
            raise InvalidInput(f"trace {cid} is already recorded; records never change")
        encoded = rec.encode()
        if len(encoded) < CHUNK_RECORDS_FROM:
            t.put(TRACES, key, encoded)
        else:  # an imported turn lists every earlier block: most of it is the last turn's
            put_chunked(t, TRACES, key, request_parts(encoded))
        if not self._request_intact(t, rec.prompt_hash):
            put_request(t, REQUESTS, item.request)
        if item.response is not None:
            t.put(RESPONSES, key, pack_bytes(item.response))
        for table, row in index_rows(rec):
            t.put(table, row, b"")
        self._add_to_aggregates(t, rec)
        if item.flag is not None:
            self._flag_in(t, replace(rec, flag=None), item.flag)

    def _add_to_aggregates(self, t: Tables, rec: TraceRecord) -> None:
        raw = t.get(TURNS, session_key(rec.session, rec.turn))
        group = (
            TurnGroup.of(rec) if raw is None else TurnGroup.from_stored(json_load(raw)).adding(rec)
        )
        put_group(t, rec.session, rec.turn, group)
        put_stats(t, stored_stats(t, rec.session).counting(rec, new_turn=raw is None))
        self._bump_totals(t, calls=1, error=int(rec.status is TraceStatus.ERROR))

    def _request_intact(self, t: Tables, expected: str) -> bool:
        """Whether the stored request hashes to ``expected`` (a damaged copy is replaced)."""
        stored = t.get(REQUESTS, bytes.fromhex(expected))
        if stored is None:
            return False
        try:
            load_request(t, stored, expected)
        except StoreCorrupted:
            return False
        return True

    def _bump_totals(self, t: Tables, **deltas: int) -> None:
        totals = self._totals_in(t)
        for name, delta in deltas.items():
            totals[name] = totals.get(name, 0) + delta
        t.put(META, TOTALS, canonical_json(totals))

    def _totals_in(self, t: Tables) -> dict[str, int]:
        raw = t.get(META, TOTALS)
        return {} if raw is None else dict(json_load(raw))

    def flag(self, call_id: str, note: str = "") -> TraceRecord:
        if not isinstance(note, str):
            raise InvalidInput("a flag note must be text")
        flag = Flag(note, now_ms())

        def mark(t: Tables) -> TraceRecord:
            self._bump_generation(t)
            return self._flag_in(t, self._get_in(t, call_id), flag)

        return self.kv.write(mark)

    def _flag_in(self, t: Tables, rec: TraceRecord, flag: Flag) -> TraceRecord:
        if rec.flag is None:
            t.put(BY_STATUS, status_key(FLAGGED, rec.call_id), b"")
            self._add_flag_count(t, rec.session, +1)
        t.put(FLAGS, rec.call_id.encode(), canonical_json(flag.__dict__))
        return replace(rec, flag=flag)

    def unflag(self, call_id: str) -> TraceRecord:
        def clear(t: Tables) -> TraceRecord:
            rec = self._get_in(t, call_id)
            if rec.flag is not None:
                t.delete(BY_STATUS, status_key(FLAGGED, rec.call_id))
                t.delete(FLAGS, rec.call_id.encode())
                self._add_flag_count(t, rec.session, -1)
                self._bump_generation(t)
            return replace(rec, flag=None)

        return self.kv.write(clear)

    def _add_flag_count(self, t: Tables, session: str, delta: int) -> None:
        put_stats(t, stored_stats(t, session).with_flagged(delta))
        self._bump_totals(t, flagged=delta)

    def delete_session(self, session: str) -> int:
        check_session(session)
        prefix = session_prefix(session)

        def delete(t: Tables) -> int:
            cids = [key[-CALL_ID_LEN:].decode() for key in t.keys(BY_SESSION, prefix)]
            flagged = sum(self._delete_in(t, cid) for cid in cids)
            for key in list(t.keys(TURNS, prefix)):
                t.delete(TURNS, key)
            errors = stored_stats(t, session).errors
            t.delete(SESSIONS, session.encode())
            if cids:
                self._bump_totals(t, calls=-len(cids), error=-errors, flagged=-flagged)
                self._bump_generation(t, deleted=len(cids))
            return len(cids)

        return self.kv.write(delete)

    def delete_records(self, call_ids: Sequence[str]) -> int:
        """Delete single records (repair of duplicate imports); their sessions' aggregates are
        counted again from the records left. Return how many were deleted."""

        def delete(t: Tables) -> int:
            sessions = sorted({self._load_in(t, cid).session for cid in call_ids})
            before = [stored_stats(t, s) for s in sessions]
            for cid in call_ids:
                self._delete_in(t, cid)
            after = [self._recount_in(t, s) for s in sessions]
            self._bump_totals(
                t, calls=sum(a.calls - b.calls for a, b in zip(after, before, strict=True)),
                error=sum(a.errors - b.errors for a, b in zip(after, before, strict=True)),
                flagged=sum(a.flagged - b.flagged for a, b in zip(after, before, strict=True)),
            )  # fmt: skip
            if call_ids:
                self._bump_generation(t, deleted=len(call_ids))
            return len(call_ids)

        return self.kv.write(delete)

    def _recount_in(self, t: Tables, session: str) -> SessionTraceStats:
        """Write a session's aggregates again from its records; return them."""
        prefix = session_prefix(session)
        for key in list(t.keys(TURNS, prefix)):
            t.delete(TURNS, key)
        stats = SessionTraceStats(session)
        for key in t.keys(BY_SESSION, prefix):
            rec = self._load_in(t, key[-CALL_ID_LEN:].decode())
            turn_key = session_key(session, rec.turn)
            raw = t.get(TURNS, turn_key)
            group = (
                TurnGroup.of(rec)
                if raw is None
                else TurnGroup.from_stored(json_load(raw)).adding(rec)
            )
            t.put(TURNS, turn_key, canonical_json(group.stored()))
            stats = stats.counting(rec, flagged=rec.flagged, new_turn=raw is None)
        put_stats(t, stats)
        return stats

    def _delete_in(self, t: Tables, cid: str) -> bool:
        """Delete one record's rows and bytes (not the aggregates); return whether it was flagged."""
        key = cid.encode()
        raw = t.get(TRACES, key)
        if raw is None:
            raise StoreCorrupted(f"trace {cid} is indexed but missing; run `llm386 verify`")
        rec = decode_row(t, raw)
        for table, row in index_rows(rec):
            t.delete(table, row)
        flagged = t.delete(FLAGS, key)
        if flagged:
            t.delete(BY_STATUS, status_key(FLAGGED, cid))
        release_row(t, raw)
        t.delete(TRACES, key)
        t.delete(RESPONSES, key)
        digest = bytes.fromhex(rec.prompt_hash)
        if t.first(BY_HASH, digest) is None:
            stored = t.get(REQUESTS, digest)
            if stored is not None:
                release_row(t, stored)
                t.delete(REQUESTS, digest)
        return flagged

    # -- reads --------------------------------------------------------------------------
    def get(self, call_id: str) -> TraceRecord:
        return self._read(lambda t: self._get_in(t, call_id))

    def _get_in(self, t: Tables, call_id: str) -> TraceRecord:
        """Read one record: its row once, its flag, and whether its request is stored."""
        prefix = check_call_id(call_id)
        if len(prefix) == CALL_ID_LEN:
            raw = t.get(TRACES, prefix.encode())
            if raw is None:
                raise TraceNotFound(f"no trace {prefix}; `llm386 traces` lists them")
            return self._loaded(t, prefix, raw)
        found = list(t.scan(TRACES, prefix.encode(), limit=2))
        if not found:
            raise TraceNotFound(f"no trace with id {prefix}; `llm386 traces` lists them")
        if len(found) > 1:
            raise InvalidInput(f"trace id prefix {prefix} is ambiguous; give more characters")
        return self._loaded(t, found[0][0].decode(), found[0][1])

    def _load_in(self, t: Tables, cid: str) -> TraceRecord:
        raw = t.get(TRACES, cid.encode())
        if raw is None:
            raise StoreCorrupted(f"trace {cid} is indexed but missing; run `llm386 verify`")
        return self._loaded(t, cid, raw)

    def _loaded(self, t: Tables, cid: str, raw: bytes) -> TraceRecord:
        rec = decode_row(t, raw)
        flag_raw = t.get(FLAGS, cid.encode())
        flag = None if flag_raw is None else Flag(**json_load(flag_raw))
        stored = t.get(REQUESTS, bytes.fromhex(rec.prompt_hash)) is not None
        return replace(rec, flag=flag, replay_complete=stored)

    def get_many(self, call_ids: Sequence[str]) -> list[TraceRecord]:
        """Return several records (full ids or unique prefixes) read in one transaction."""
        return self._read(lambda t: [self._get_in(t, cid) for cid in call_ids])

    def count(
        self,
        *,
        session: str | None = None,
        status: TraceStatus | str | None = None,
        flagged: bool | None = None,
    ) -> int:
        want = TraceStatus(status) if status is not None else None
        if session is not None and want is None:
            stats = self.session_stats([session])[0]
            return _count_of(stats.calls, stats.flagged, flagged)
        if session is None and (want is None or flagged is None):
            totals = self._read(self._totals_in)
            calls, errors = totals.get("calls", 0), totals.get("error", 0)
            if want is not None:
                return errors if want is TraceStatus.ERROR else calls - errors
            return _count_of(calls, totals.get("flagged", 0), flagged)
        return len(self.list(session=session, status=want, flagged=flagged, limit=None))

    def generation(self) -> TraceGeneration:
        return self._read(self._generation_in)

    def request_bytes(self, prompt_hash: str) -> bytes | None:
        """Return the request bytes with this hash; raise StoreCorrupted if they are damaged."""
        digest = bytes.fromhex(check_hash(prompt_hash))

        def load(t: Tables) -> bytes | None:
            stored = t.get(REQUESTS, digest)
            return None if stored is None else load_request(t, stored, prompt_hash)

        return self._read(load)

    def resolve_prompt_hash(self, prefix: str) -> str:
        full = self._full_hash(prefix)
        if not full:
            raise TraceNotFound(
                f"no trace sent a prompt whose hash starts with {check_hash_prefix(prefix)}; "
                "`llm386 traces` lists the hashes"
            )
        return full

    def _full_hash(self, prompt_hash: str) -> str:
        """Return the recorded hash a hash or unique prefix names ("" when none matches)."""
        wanted = check_hash_prefix(prompt_hash)
        found = self._read(lambda t: self._hashes_in(t, wanted, _CANDIDATES + 1))
        if len(found) > 1:
            raise _ambiguous(wanted, found)
        return found[0] if found else ""

    def _hashes_in(self, t: Tables, prefix: str, limit: int) -> list[str]:
        """Return up to ``limit`` distinct recorded prompt hashes starting with ``prefix``."""
        if len(prefix) == 64:
            return [prefix] if t.first(BY_HASH, bytes.fromhex(prefix)) is not None else []
        found: list[str] = []
        low: bytes | None = bytes.fromhex(prefix.ljust(64, "0"))
        while low is not None and len(found) < limit:
            key = next(t.keys(BY_HASH, lo=low, limit=1), None)
            if key is None or not key[:32].hex().startswith(prefix):
                break
            found.append(key[:32].hex())
            low = prefix_end(key[:32])  # skip the other calls that sent this hash
        return found

    def response_bytes(self, call_id: str) -> bytes | None:
        cid = check_call_id(call_id, full=True)
        stored = self._read(lambda t: t.get(RESPONSES, cid.encode()))
        return None if stored is None else unpack_bytes(stored)

    def stored_trace(self, call_id: str) -> StoredTrace:
        """Return a record with its request and response bytes (what export writes)."""
        rec = self.get(call_id)
        request = self.request_bytes(rec.prompt_hash)
        if request is None:
            raise StoreCorrupted(f"trace {rec.call_id} has no stored request; run `llm386 verify`")
        return StoredTrace(rec, request, self.response_bytes(rec.call_id))

    def session_stats(self, sessions: Sequence[str]) -> list[SessionTraceStats]:
        return self._aggregates(lambda t: [stored_stats(t, s) for s in sessions])

    def turns(self, session: str) -> list[tuple[int, str]]:
        """Return (turn, call id) of every record of a session, in turn order (index only)."""
        prefix = session_prefix(check_session(session))
        return self._read(lambda t: [(_turn_of(k, prefix), k[-CALL_ID_LEN:].decode())
                                     for k in t.keys(BY_SESSION, prefix)])  # fmt: skip

    def turn_groups(
        self, session: str, *, offset: int = 0, limit: int | None = 50, reverse: bool = False
    ) -> list[tuple[int, TurnGroup]]:
        """Return turns ``offset`` to ``offset + limit`` of a session (by turn number), each
        with its group; reads the turn table only."""
        prefix = session_prefix(check_session(session))
        end = None if limit is None else offset + limit

        def load(t: Tables) -> list[tuple[int, TurnGroup]]:
            rows = t.scan(TURNS, prefix, reverse=reverse, limit=end)
            return [(_turn_of(k, prefix), TurnGroup.from_stored(json_load(v)))
                    for i, (k, v) in enumerate(rows) if i >= offset]  # fmt: skip

        return self._aggregates(load)

    def adjacent_turns(
        self, session: str, turn: int
    ) -> tuple[tuple[int, TurnGroup] | None, tuple[int, TurnGroup] | None]:
        """Return the turns just before and just after ``turn`` in its session (or None)."""
        prefix = session_prefix(check_session(session))
        here = session_key(session, turn)

        def load(t: Tables) -> tuple[Any, Any]:
            before = next(t.scan(TURNS, prefix, hi=here, reverse=True, limit=1), None)
            after = next(t.scan(TURNS, prefix, lo=session_key(session, turn + 1), limit=1), None)
            return tuple(None if row is None else
                         (_turn_of(row[0], prefix), TurnGroup.from_stored(json_load(row[1])))
                         for row in (before, after))  # type: ignore[return-value]  # fmt: skip

        return self._aggregates(load)

    def turn_group(self, session: str, turn: int) -> TurnGroup | None:
        """Return one turn's group (None: the session has no such turn)."""
        key = session_key(check_session(session), turn)
        raw = self._aggregates(lambda t: t.get(TURNS, key))
        return None if raw is None else TurnGroup.from_stored(json_load(raw))

    def turn_call_ids(self, session: str, turn: int) -> list[str]:
        """Return the call ids of one turn's records, in call id order (index only)."""
        prefix = session_key(check_session(session), turn)
        return self._read(lambda t: [k[-CALL_ID_LEN:].decode() for k in t.keys(BY_SESSION, prefix)])

    def verify(self) -> VerifyReport:
        from runtime.storage.tracecheck import check_traces

        return self._read(check_traces)

    def repair(self) -> RepairReport:
        from runtime.storage.tracecheck import repair_traces

        def repair(t: Tables) -> RepairReport:
            self._bump_generation(t, repairs=1)
            return repair_traces(t)

        return self.kv.write(repair)

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
        want = TraceStatus(status) if status is not None else None
        full = None if prompt_hash is None else self._full_hash(prompt_hash)
        if full == "":
            return []  # no record sent a hash with that prefix
        table, prefix, exact = _pick_index(session, want, flagged, full)

        def keep(rec: TraceRecord) -> bool:
            return ((session is None or rec.session == session)
                    and (want is None or rec.status is want)
                    and (flagged is None or rec.flagged == flagged))  # fmt: skip

        def load(t: Tables) -> list[TraceRecord]:
            out: list[TraceRecord] = []
            skipped = 0
            for key in t.keys(table, prefix, reverse=newest_first):
                if exact and skipped < offset:
                    skipped += 1
                    continue
                rec = self._load_in(t, key[-CALL_ID_LEN:].decode())
                if not keep(rec):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                out.append(rec)
                if limit is not None and len(out) >= limit:
                    break
            return out

        return self._read(load)


def _pick_index(
    session: str | None, status: TraceStatus | None, flagged: bool | None, prompt_hash: str | None
) -> tuple[str, bytes, bool]:
    """Return the narrowest index for these filters, the key prefix to read in it, and whether
    its keys alone decide a match (then skipped rows need not be loaded)."""
    if prompt_hash is not None:
        exact = session is None and status is None and flagged is None
        return BY_HASH, bytes.fromhex(check_hash(prompt_hash)), exact
    if session is not None:
        return (
            BY_SESSION,
            session_prefix(check_session(session)),
            status is None and flagged is None,
        )
    if flagged:
        return BY_STATUS, FLAGGED.encode() + b"\x00", status is None
    if status is not None:
        return BY_STATUS, status.value.encode() + b"\x00", flagged is None
    return BY_TIME, b"", flagged is None


def _ambiguous(prefix: str, found: Sequence[str]) -> AmbiguousPrefix:
    shown = found[:_CANDIDATES]
    width = _distinct_width(shown)
    listed = ", ".join(h[:width] for h in shown) + (", ..." if len(found) > len(shown) else "")
    return AmbiguousPrefix(
        f"prompt hash prefix {prefix} matches {'more than ' if len(found) > len(shown) else ''}"
        f"{len(shown)} hashes: {listed}; give more characters",
        tuple(shown),
    )


def _distinct_width(hashes: Sequence[str]) -> int:
    """Return the shortest length (at least 12) at which ``hashes`` are all different."""
    width = 12
    while width < 64 and len({h[:width] for h in hashes}) < len(hashes):
        width += 4
    return min(width, 64)


def _count_of(calls: int, flagged_count: int, flagged: bool | None) -> int:
    if flagged is None:
        return calls
    return flagged_count if flagged else calls - flagged_count
