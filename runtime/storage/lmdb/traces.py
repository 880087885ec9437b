"""The LMDB implementation of ``TraceStore``, in the block store's own environment.

Layout (named databases; ``cid`` is the 25-byte ASCII call id, ``h`` the 32 raw hash bytes):

    trace_meta       b"schema" -> b"2"; b"totals" -> JSON {calls, error, flagged, ...};
                     b"generation" -> JSON {added, deleted, repairs, writes} (TraceGeneration)
    traces           cid -> canonical JSON record (TraceRecord.stored_json), or its chunks
                     when large (``runtime.storage.lmdb.chunks``)
    trace_by_session session 0x00 turn(4 BE) cid -> b""
    trace_by_time    started_at(8 BE) cid -> b""
    trace_by_status  status 0x00 cid -> b""          status in ok | error | flagged
    trace_by_hash    h cid -> b""
    trace_requests   h -> the request's chunk nodes   once per prompt hash (runtime.storage.lmdb.chunks)
    trace_responses  cid -> codec byte + bytes
    trace_flags      cid -> JSON {note, flagged_at}
    trace_sessions   session -> JSON SessionTraceStats (without "repages": an older store's
                     figures, which counted unsent calls' tokens; recounted on read)

Invariants: a record, its index rows, its bytes and the session and global aggregates change in
one write transaction; request bytes are deleted only when no record still names their hash;
listing reads one index and stops after ``offset + limit`` matches, so a filtered page never
scans the whole store. Requests are stored as content-defined chunks shared by every request
that contains them (a session's turns repeat all earlier messages), so storage grows with new
content; responses are zlib-compressed when that saves space. Stored hashes are always of the
whole uncompressed bytes.

Schema 2 writes requests as chunks; schema 1 stores (whole requests) are read as they are and
marked 2 when first opened writable, since from then on new requests are written as chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import lmdb

from runtime.blocks import canonical_json, check_session
from runtime.errors import AmbiguousPrefix, InvalidInput, StoreCorrupted, StoreError, TraceNotFound
from runtime.storage.chunking import request_parts
from runtime.storage.codec import json_load
from runtime.storage.interface import RepairReport, VerifyReport
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.chunks import (
    CHUNKED,
    ChunkTables,
    load_chunked,
    load_request,
    pack_bytes,
    put_chunked,
    put_request,
    release_row,
    unpack_bytes,
)
from runtime.tracing.records import (
    CALL_ID_LEN,
    ChunkedTrace,
    Flag,
    SessionTraceStats,
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

FLAGGED = "flagged"
SCHEMA = b"2"
READABLE_SCHEMAS = (b"1", SCHEMA)  # 1: whole requests only, still read
_TOTALS, _GENERATION = b"totals", b"generation"
_CANDIDATES = 5  # hashes an ambiguous prefix error lists
# The field session aggregates gained when their token totals stopped counting re-pages and
# failed calls; stored aggregates without it are counted again from the records on read.
_STATS_SINCE = "repages"

CHUNK_RECORDS_FROM = 16 * 1024  # bytes of record JSON from which it is stored as chunks


def _session_key(session: str, turn: int, cid: str) -> bytes:
    return session.encode() + b"\x00" + turn.to_bytes(4, "big") + cid.encode()


def _status_key(status: str, cid: str) -> bytes:
    return status.encode() + b"\x00" + cid.encode()


def _successor(prefix: bytes) -> bytes | None:
    """Return the smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class LmdbTraceStore(TraceStore):
    """Trace records in the LMDB environment of a block store."""

    def __init__(self, store_or_path: Any) -> None:
        if isinstance(store_or_path, str | Path):
            from runtime.storage.lmdb.store import LmdbStore

            store_or_path = LmdbStore(store_or_path)  # checks the folder is an llm386 store
        self.env: lmdbenv.Env = store_or_path.env
        self.kv = store_or_path.kv  # the engine whose writes this store's writes join
        db = self.env.db
        self._meta, self._traces = db(b"trace_meta"), db(b"traces")
        self._by_session, self._by_time = db(b"trace_by_session"), db(b"trace_by_time")
        self._by_status, self._by_hash = db(b"trace_by_status"), db(b"trace_by_hash")
        self._requests, self._responses = db(b"trace_requests"), db(b"trace_responses")
        self._flags, self._sessions = db(b"trace_flags"), db(b"trace_sessions")
        schema = self._read(lambda txn: _get(txn, b"schema", db=self._meta))
        if schema not in (None, *READABLE_SCHEMAS):
            raise StoreCorrupted(
                f"the traces in {self.env.path} use layout {schema!r}; this llm386 reads "
                f"{b' and '.join(READABLE_SCHEMAS)!r}: upgrade llm386"
            )
        self._chunks = self._open_chunks()
        if schema != SCHEMA and not self.env.readonly:
            lmdbenv.write(self.env, lambda txn: txn.put(b"schema", SCHEMA, db=self._meta))

    def _open_chunks(self) -> ChunkTables | None:
        try:
            return ChunkTables.open(self.env)
        except StoreError:
            return None  # a read-only store never written by schema 2 has no chunks to read

    @property
    def chunked_rows(self) -> tuple[Any, ...]:
        """The tables whose rows may name chunks (what chunk counts are derived from)."""
        return (self._requests, self._traces)

    def decode_record(self, txn: lmdb.Transaction, raw: bytes) -> TraceRecord:
        """Return the record a ``traces`` row holds, whole or as chunks."""
        return TraceRecord.decode(
            load_chunked(txn, self._chunks, raw) if raw[:1] == CHUNKED else raw
        )

    @property
    def chunks(self) -> ChunkTables:
        if self._chunks is None:
            raise StoreCorrupted(
                f"{self.env.path} names request chunks but has no chunk tables; run `llm386 verify`"
            )
        return self._chunks

    # -- writes -------------------------------------------------------------------------
    def record(self, record: TraceRecord, request: bytes, response: bytes | None = None) -> None:
        self.record_many([StoredTrace(record, request, response)])

    def record_many(self, items: Sequence[StoredTrace]) -> None:
        for item in items:
            check_record(item.record, item.request, item.response)
        lmdbenv.write(self.env, lambda txn: self.record_many_txn(txn, items))

    def record_many_txn(self, txn: lmdb.Transaction, items: Sequence[StoredTrace]) -> None:
        """Record ``items`` in the caller's write transaction; the caller ran check_record."""
        chunked = (
            ChunkedTrace(i.record, request_parts(i.request), i.response, i.flag) for i in items
        )
        self.record_chunked_txn(txn, chunked)

    def record_stream(self, items: Callable[[], Iterable[ChunkedTrace]]) -> int:
        """Record what ``items()`` yields in one write, one at a time; return how many.

        ``items`` is called again if the write is retried (the map grew), so it must give the
        same items each time; none of them is held after it is written."""
        return cast(int, lmdbenv.write(self.env, lambda txn: self.record_stream_txn(txn, items())))

    def record_stream_txn(self, txn: lmdb.Transaction, items: Iterable[ChunkedTrace]) -> int:
        """Check and record ``items`` in the caller's write transaction; return how many."""

        def checked() -> Iterator[ChunkedTrace]:
            for item in items:
                check_record(item.record, item.request, item.response)
                yield item

        return self.record_chunked_txn(txn, checked())

    def record_chunked_txn(self, txn: lmdb.Transaction, items: Iterable[ChunkedTrace]) -> int:
        count = 0
        for item in items:
            self._record_txn(txn, item)
            count += 1
        if count:
            self._bump_generation(txn, added=count)
        return count

    def _bump_generation(
        self, txn: lmdb.Transaction, *, added: int = 0, deleted: int = 0, repairs: int = 0
    ) -> None:
        # In the caller's write transaction, so a reader never sees data without its generation.
        g = self._generation_txn(txn)
        g = TraceGeneration(g.added + added, g.deleted + deleted, g.repairs + repairs, g.writes + 1)
        txn.put(_GENERATION, canonical_json(g.__dict__), db=self._meta)

    def _generation_txn(self, txn: lmdb.Transaction) -> TraceGeneration:
        raw = _get(txn, _GENERATION, db=self._meta)
        return TraceGeneration() if raw is None else TraceGeneration(**json_load(raw))

    def _record_txn(self, txn: lmdb.Transaction, item: ChunkedTrace) -> None:
        rec, cid = item.record, item.record.call_id
        self._upgrade_stats_txn(txn, rec.session)
        if _get(txn, cid.encode(), db=self._traces) is not None:
            raise InvalidInput(f"trace {cid} is already recorded; records never change")
        encoded = rec.encode()
        if len(encoded) < CHUNK_RECORDS_FROM:
            txn.put(cid.encode(), encoded, db=self._traces)
        else:  # an imported turn lists every earlier block: most of it is the last turn's
            put_chunked(txn, self.chunks, self._traces, cid.encode(), request_parts(encoded))
        if not self._request_intact(txn, rec.prompt_hash):
            put_request(txn, self.chunks, self._requests, item.request)
        if item.response is not None:
            txn.put(cid.encode(), pack_bytes(item.response), db=self._responses)
        for key, db in self._index_rows(rec):
            txn.put(key, b"", db=db)
        self._bump(txn, rec, +1, flagged=False)
        if item.flag is not None:
            self._flag_txn(txn, replace(rec, flag=None), item.flag)

    def _request_intact(self, txn: lmdb.Transaction, expected: str) -> bool:
        return self._request_txn(txn, expected) is not None

    def _request_txn(self, txn: lmdb.Transaction, expected: str) -> bytes | None:
        """Return the stored request hashing to ``expected``, or None if missing or damaged."""
        stored = _get(txn, bytes.fromhex(expected), db=self._requests)
        if stored is None:
            return None
        try:
            return load_request(txn, self._chunks, stored, expected)
        except StoreCorrupted:
            return None  # a damaged copy reads as not replay-complete; a new record replaces it

    def _index_rows(self, rec: TraceRecord) -> list[tuple[bytes, Any]]:
        cid = rec.call_id
        return [
            (_session_key(rec.session, rec.turn, cid), self._by_session),
            (rec.started_at.to_bytes(8, "big") + cid.encode(), self._by_time),
            (_status_key(rec.status.value, cid), self._by_status),
            (bytes.fromhex(rec.prompt_hash) + cid.encode(), self._by_hash),
        ]

    def _bump(self, txn: lmdb.Transaction, rec: TraceRecord, sign: int, *, flagged: bool) -> None:
        """Add (sign +1) or take away (-1) one record in its session's and the global counts."""
        stats = self._stats_txn(txn, rec.session).counting(rec, sign, flagged=flagged)
        self._put_stats(txn, stats)
        self._bump_totals(txn, calls=sign, error=sign * (rec.status is TraceStatus.ERROR))

    def _put_stats(self, txn: lmdb.Transaction, stats: SessionTraceStats) -> None:
        key = stats.session.encode()
        if stats.calls <= 0:
            txn.delete(key, db=self._sessions)
            return
        data = stats.to_json()
        del data["session"], data["total_tokens"]
        txn.put(key, canonical_json(data), db=self._sessions)

    def _bump_totals(self, txn: lmdb.Transaction, **deltas: int) -> None:
        totals = self._totals_txn(txn)
        for name, delta in deltas.items():
            totals[name] = totals.get(name, 0) + delta
        txn.put(_TOTALS, canonical_json(totals), db=self._meta)

    def _totals_txn(self, txn: lmdb.Transaction) -> dict[str, int]:
        raw = _get(txn, _TOTALS, db=self._meta)
        return {} if raw is None else dict(json_load(raw))

    def flag(self, call_id: str, note: str = "") -> TraceRecord:
        if not isinstance(note, str):
            raise InvalidInput("a flag note must be text")
        flag = Flag(note, now_ms())

        def mark(txn: lmdb.Transaction) -> TraceRecord:
            self._bump_generation(txn)
            return self._flag_txn(txn, self._get_txn(txn, call_id), flag)

        return lmdbenv.write(self.env, mark)

    def _flag_txn(self, txn: lmdb.Transaction, rec: TraceRecord, flag: Flag) -> TraceRecord:
        self._upgrade_stats_txn(txn, rec.session)
        if rec.flag is None:
            txn.put(_status_key(FLAGGED, rec.call_id), b"", db=self._by_status)
            self._add_flag_count(txn, rec.session, +1)
        txn.put(rec.call_id.encode(), canonical_json(flag.__dict__), db=self._flags)
        return replace(rec, flag=flag)

    def unflag(self, call_id: str) -> TraceRecord:
        def clear(txn: lmdb.Transaction) -> TraceRecord:
            rec = self._get_txn(txn, call_id)
            self._upgrade_stats_txn(txn, rec.session)
            if rec.flag is not None:
                txn.delete(_status_key(FLAGGED, rec.call_id), db=self._by_status)
                txn.delete(rec.call_id.encode(), db=self._flags)
                self._add_flag_count(txn, rec.session, -1)
                self._bump_generation(txn)
            return replace(rec, flag=None)

        return lmdbenv.write(self.env, clear)

    def _add_flag_count(self, txn: lmdb.Transaction, session: str, delta: int) -> None:
        stats = self._stats_txn(txn, session)
        self._put_stats(txn, replace(stats, flagged=stats.flagged + delta))
        self._bump_totals(txn, flagged=delta)

    def delete_session(self, session: str) -> int:
        check_session(session)

        def delete(txn: lmdb.Transaction) -> int:
            cids = [
                key[-CALL_ID_LEN:].decode()
                for key in _keys(txn, self._by_session, session.encode() + b"\x00")
            ]
            for cid in cids:
                self._delete_txn(txn, cid)
            if cids:
                self._bump_generation(txn, deleted=len(cids))
            return len(cids)

        return lmdbenv.write(self.env, delete)

    def _delete_txn(self, txn: lmdb.Transaction, cid: str) -> None:
        rec = self._get_txn(txn, cid)
        self._upgrade_stats_txn(txn, rec.session)
        key = cid.encode()
        for row, db in self._index_rows(rec):
            txn.delete(row, db=db)
        if rec.flag is not None:
            txn.delete(_status_key(FLAGGED, cid), db=self._by_status)
            txn.delete(key, db=self._flags)
            self._bump_totals(txn, flagged=-1)
        stored = _get(txn, key, db=self._traces)
        if stored is not None and stored[:1] == CHUNKED:
            release_row(txn, self.chunks, stored)
        for db in (self._traces, self._responses):
            txn.delete(key, db=db)
        digest = bytes.fromhex(rec.prompt_hash)
        if not _keys(txn, self._by_hash, digest, limit=1):
            stored = _get(txn, digest, db=self._requests)
            if stored is not None:
                release_row(txn, self.chunks, stored)
                txn.delete(digest, db=self._requests)
        self._bump(txn, rec, -1, flagged=rec.flag is not None)

    # -- reads --------------------------------------------------------------------------
    def _read(self, fn: Callable[[lmdb.Transaction], Any]) -> Any:
        return lmdbenv.read(self.env, fn)

    def get(self, call_id: str) -> TraceRecord:
        return self._read(lambda txn: self._get_txn(txn, call_id))

    def _get_txn(self, txn: lmdb.Transaction, call_id: str) -> TraceRecord:
        cid = self._resolve_txn(txn, check_call_id(call_id))
        return self._load_txn(txn, cid)

    def _resolve_txn(self, txn: lmdb.Transaction, prefix: str) -> str:
        if len(prefix) == CALL_ID_LEN:
            if _get(txn, prefix.encode(), db=self._traces) is None:
                raise TraceNotFound(f"no trace {prefix}; `llm386 traces` lists them")
            return prefix
        found = _keys(txn, self._traces, prefix.encode(), limit=2)
        if not found:
            raise TraceNotFound(f"no trace with id {prefix}; `llm386 traces` lists them")
        if len(found) > 1:
            raise InvalidInput(f"trace id prefix {prefix} is ambiguous; give more characters")
        return found[0].decode()

    def _load_txn(self, txn: lmdb.Transaction, cid: str) -> TraceRecord:
        raw = _get(txn, cid.encode(), db=self._traces)
        if raw is None:
            raise StoreCorrupted(f"trace {cid} is indexed but missing; run `llm386 verify`")
        rec = self.decode_record(txn, raw)
        flag_raw = _get(txn, cid.encode(), db=self._flags)
        flag = None if flag_raw is None else Flag(**json_load(flag_raw))
        return replace(rec, flag=flag, replay_complete=self._request_intact(txn, rec.prompt_hash))

    def get_many(self, call_ids: Sequence[str]) -> list[TraceRecord]:
        """Return several records (full ids or unique prefixes) read in one transaction."""
        return self._read(lambda txn: [self._get_txn(txn, cid) for cid in call_ids])

    def _pick_index(
        self, session: str | None, status: TraceStatus | None, flagged: bool | None,
        prompt_hash: str | None,
    ) -> tuple[Any, bytes, bool]:  # fmt: skip
        """Return the narrowest index for these filters, the key prefix to read in it, and
        whether its keys alone decide a match (then skipped rows need not be loaded)."""
        if prompt_hash is not None:
            exact = session is None and status is None and flagged is None
            return self._by_hash, bytes.fromhex(check_hash(prompt_hash)), exact
        if session is not None:
            prefix = check_session(session).encode() + b"\x00"
            return self._by_session, prefix, status is None and flagged is None
        if flagged:
            return self._by_status, FLAGGED.encode() + b"\x00", status is None
        if status is not None:
            return self._by_status, status.value.encode() + b"\x00", flagged is None
        return self._by_time, b"", flagged is None

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
            totals = self._read(self._totals_txn)
            calls, errors = totals.get("calls", 0), totals.get("error", 0)
            if want is not None:
                return errors if want is TraceStatus.ERROR else calls - errors
            return _count_of(calls, totals.get("flagged", 0), flagged)
        # Two filters at once: read the narrower index (a session, or the flagged set).
        return len(self.list(session=session, status=want, flagged=flagged, limit=None))

    def generation(self) -> TraceGeneration:
        return cast(TraceGeneration, self._read(self._generation_txn))

    def request_bytes(self, prompt_hash: str) -> bytes | None:
        """Return the request bytes with this hash; raise StoreCorrupted if they are damaged."""
        digest = bytes.fromhex(check_hash(prompt_hash))

        def load(txn: lmdb.Transaction) -> bytes | None:
            stored = _get(txn, digest, db=self._requests)
            return None if stored is None else load_request(txn, self._chunks, stored, prompt_hash)

        return cast("bytes | None", self._read(load))

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
        found = self._read(lambda txn: self._hashes_txn(txn, wanted, _CANDIDATES + 1))
        if len(found) > 1:
            raise _ambiguous(wanted, found)
        return found[0] if found else ""

    def _hashes_txn(self, txn: lmdb.Transaction, prefix: str, limit: int) -> list[str]:
        """Return up to ``limit`` distinct recorded prompt hashes starting with ``prefix``."""
        if len(prefix) == 64:
            return [prefix] if _keys(txn, self._by_hash, bytes.fromhex(prefix), 1) else []
        found: list[str] = []
        with txn.cursor(db=self._by_hash) as cur:
            ok = cur.set_range(bytes.fromhex(prefix.ljust(64, "0")))
            while ok and len(found) < limit:
                digest = cast(bytes, cur.key())[:32]
                if not digest.hex().startswith(prefix):
                    break
                found.append(digest.hex())
                after = _successor(digest)  # skip the other calls that sent this hash
                ok = after is not None and cur.set_range(after)
        return found

    def response_bytes(self, call_id: str) -> bytes | None:
        cid = check_call_id(call_id, full=True)
        stored = self._read(lambda txn: _get(txn, cid.encode(), db=self._responses))
        return None if stored is None else unpack_bytes(stored)

    def stored_trace(self, call_id: str) -> StoredTrace:
        """Return a record with its request and response bytes (what export writes)."""
        rec = self.get(call_id)
        request = self.request_bytes(rec.prompt_hash)
        if request is None:
            raise StoreCorrupted(f"trace {rec.call_id} has no stored request; run `llm386 verify`")
        return StoredTrace(rec, request, self.response_bytes(rec.call_id))

    def session_stats(self, sessions: Sequence[str]) -> list[SessionTraceStats]:
        return self._read(lambda txn: [self._stats_txn(txn, s) for s in sessions])

    def _stats_txn(self, txn: lmdb.Transaction, session: str) -> SessionTraceStats:
        stats, current = self.stored_stats_txn(txn, session)
        if not current:
            # Written before token totals left out re-pages and failed calls: count again
            # from the records (the next write or `llm386 repair` stores the new figures).
            return self._recount_txn(txn, session)
        return stats

    def stored_stats_txn(
        self, txn: lmdb.Transaction, session: str
    ) -> tuple[SessionTraceStats, bool]:
        """Return a session's aggregates as stored, and whether they are in the current form
        (an older store's token totals counted re-pages and failed calls too)."""
        raw = _get(txn, session.encode(), db=self._sessions)
        if raw is None:
            return SessionTraceStats(session), True
        data = json_load(raw)
        return SessionTraceStats(session, **data), _STATS_SINCE in data

    def _upgrade_stats_txn(self, txn: lmdb.Transaction, session: str) -> None:
        """Store an older store's aggregates of ``session`` recounted, before a write changes
        the records they are counted from (a recount after would count the change twice)."""
        if not self.stored_stats_txn(txn, session)[1]:
            self._put_stats(txn, self._recount_txn(txn, session))

    def _recount_txn(self, txn: lmdb.Transaction, session: str) -> SessionTraceStats:
        """Return a session's aggregates counted from its records (not the stored ones)."""
        stats = SessionTraceStats(session)
        for key in _keys(txn, self._by_session, session.encode() + b"\x00"):
            rec = self._load_txn(txn, key[-CALL_ID_LEN:].decode())
            stats = stats.counting(rec, flagged=rec.flag is not None)
        return stats

    def turns(self, session: str) -> list[tuple[int, str]]:
        """Return (turn, call id) of every record of a session, in turn order (index only)."""
        prefix = check_session(session).encode() + b"\x00"

        def load(txn: lmdb.Transaction) -> list[tuple[int, str]]:
            keys = _keys(txn, self._by_session, prefix)
            return [(int.from_bytes(k[len(prefix) : len(prefix) + 4], "big"),
                     k[-CALL_ID_LEN:].decode()) for k in keys]  # fmt: skip

        return self._read(load)

    def verify(self) -> VerifyReport:
        from runtime.storage.lmdb.tracecheck import check_traces

        return self._read(lambda txn: check_traces(txn, self))

    def repair(self) -> RepairReport:
        from runtime.storage.lmdb.tracecheck import repair_traces

        def repair(txn: lmdb.Transaction) -> RepairReport:
            self._bump_generation(txn, repairs=1)
            return repair_traces(txn, self)

        return lmdbenv.write(self.env, repair)

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
        db, prefix, exact = self._pick_index(session, want, flagged, full)

        def keep(rec: TraceRecord) -> bool:
            return (
                (session is None or rec.session == session)
                and (want is None or rec.status is want)
                and (flagged is None or rec.flagged == flagged)
            )

        def load(txn: lmdb.Transaction) -> list[TraceRecord]:
            out: list[TraceRecord] = []
            skipped = 0
            for key in _iter_keys(txn, db, prefix, reverse=newest_first):
                if exact and skipped < offset:
                    skipped += 1
                    continue
                rec = self._load_txn(txn, key[-CALL_ID_LEN:].decode())
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


def _keys(txn: lmdb.Transaction, db: Any, prefix: bytes, limit: int | None = None) -> list[bytes]:
    out: list[bytes] = []
    for key in _iter_keys(txn, db, prefix, reverse=False):
        out.append(key)
        if limit is not None and len(out) >= limit:
            break
    return out


def _iter_keys(txn: lmdb.Transaction, db: Any, prefix: bytes, *, reverse: bool) -> Iterator[bytes]:
    with txn.cursor(db=db) as cur:
        if not reverse:
            ok = cur.set_range(prefix)
            while ok and (key := cast(bytes, cur.key())).startswith(prefix):
                yield key
                ok = cur.next()
            return
        upper = _successor(prefix)
        ok = cur.prev() if upper is not None and cur.set_range(upper) else cur.last()
        while ok and (key := cast(bytes, cur.key())).startswith(prefix):
            yield key
            ok = cur.prev()


def _get(txn: lmdb.Transaction, key: bytes, *, db: Any) -> bytes | None:
    return cast("bytes | None", txn.get(key, db=db))


def _count_of(calls: int, flagged_count: int, flagged: bool | None) -> int:
    if flagged is None:
        return calls
    return flagged_count if flagged else calls - flagged_count
