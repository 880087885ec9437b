"""The trace store, written once on the key-value seam (``runtime.storage.kv``) for every backend.

The layout of its tables is in ``runtime.storage.tracerows``; the changes each write makes
in its transaction are in ``runtime.storage.tracewrites``.

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

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from runtime.blocks import check_session
from runtime.errors import (
    InvalidInput,
    StoreCorrupted,
    StoreOutdated,
    TraceNotFound,
)
from runtime.storage import migrations
from runtime.storage.chunking import request_parts
from runtime.storage.codec import json_load
from runtime.storage.interface import BlockStore, RepairReport, VerifyReport
from runtime.storage.kv import Engine, Tables
from runtime.storage.tracerows import (
    BY_SESSION,
    BY_STATUS,
    CANDIDATES,
    FLAGGED,
    FLAGS,
    META,
    READABLE_SCHEMAS,
    REQUESTS,
    RESPONSES,
    SCHEMA,
    SESSIONS,
    TURNS,
    ambiguous_hash,
    get_in,
    hashes_in,
    load_in,
    load_request,
    pick_index,
    session_key,
    session_prefix,
    status_key,
    stored_stats,
    trace_layout,
    turn_of,
    unpack_bytes,
)
from runtime.storage.tracewrites import (
    Aggregates,
    add_flag_count,
    bump_generation,
    bump_totals,
    delete_in,
    flag_in,
    generation_in,
    record_in,
    recount_in,
    totals_in,
)
from runtime.tracing.aggregates import SessionTraceStats, TurnGroup
from runtime.tracing.records import (
    CALL_ID_LEN,
    ChunkedTrace,
    Flag,
    StoredTrace,
    TraceGeneration,
    TraceQuery,
    TraceRecord,
    TraceStatus,
    TraceStore,
    check_call_id,
    check_hash,
    check_hash_prefix,
    check_record,
    now_ms,
)

T = TypeVar("T")


class KvTraceStore(TraceStore):
    """Trace records in the tables of a block store's engine (``store.kv``)."""

    def __init__(self, store: BlockStore) -> None:
        self.kv: Engine = store.kv
        if not self.kv.readonly:
            migrations.migrate(self.kv)
        self.outdated = migrations.current_version(self.kv) < migrations.CURRENT_VERSION
        schema = self.kv.read(trace_layout)
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
        aggregates = Aggregates(t)  # read and written once for the whole batch
        for item in items:
            record_in(t, item, aggregates)
            count += 1
        aggregates.write()
        if count:
            bump_generation(t, added=count)
        return count

    def flag(self, call_id: str, note: str = "") -> TraceRecord:
        if not isinstance(note, str):
            raise InvalidInput("a flag note must be text")
        flag = Flag(note, now_ms())

        def mark(t: Tables) -> TraceRecord:
            bump_generation(t)
            return flag_in(t, get_in(t, call_id), flag)

        return self.kv.write(mark)

    def unflag(self, call_id: str) -> TraceRecord:
        def clear(t: Tables) -> TraceRecord:
            rec = get_in(t, call_id)
            if rec.flag is not None:
                t.delete(BY_STATUS, status_key(FLAGGED, rec.call_id))
                t.delete(FLAGS, rec.call_id.encode())
                add_flag_count(t, rec.session, -1)
                bump_generation(t)
            return replace(rec, flag=None)

        return self.kv.write(clear)

    def delete_session(self, session: str) -> int:
        check_session(session)
        prefix = session_prefix(session)

        def delete(t: Tables) -> int:
            cids = [key[-CALL_ID_LEN:].decode() for key in t.keys(BY_SESSION, prefix)]
            flagged = sum(delete_in(t, cid) for cid in cids)
            for key in list(t.keys(TURNS, prefix)):
                t.delete(TURNS, key)
            errors = stored_stats(t, session).errors
            t.delete(SESSIONS, session.encode())
            if cids:
                bump_totals(t, calls=-len(cids), error=-errors, flagged=-flagged)
                bump_generation(t, deleted=len(cids))
            return len(cids)

        return self.kv.write(delete)

    def delete_records(self, call_ids: Sequence[str]) -> int:
        """Delete single records (repair of duplicate imports); their sessions' aggregates are
        counted again from the records left. Return how many were deleted."""

        def delete(t: Tables) -> int:
            sessions = sorted({load_in(t, cid).session for cid in call_ids})
            before = [stored_stats(t, s) for s in sessions]
            for cid in call_ids:
                delete_in(t, cid)
            after = [recount_in(t, s) for s in sessions]
            bump_totals(
                t, calls=sum(a.calls - b.calls for a, b in zip(after, before, strict=True)),
                error=sum(a.errors - b.errors for a, b in zip(after, before, strict=True)),
                flagged=sum(a.flagged - b.flagged for a, b in zip(after, before, strict=True)),
            )  # fmt: skip
            if call_ids:
                bump_generation(t, deleted=len(call_ids))
            return len(call_ids)

        return self.kv.write(delete)

    # -- reads --------------------------------------------------------------------------
    def get(self, call_id: str) -> TraceRecord:
        return self._read(lambda t: get_in(t, call_id))

    def get_many(self, call_ids: Sequence[str]) -> list[TraceRecord]:
        """Return several records (full ids or unique prefixes) read in one transaction."""
        return self._read(lambda t: [get_in(t, cid) for cid in call_ids])

    def count_matching(self, query: TraceQuery) -> int:
        session, want, flagged = query.session, query.status, query.flagged
        if session is not None and want is None:
            stats = self.session_stats([session])[0]
            return _count_of(stats.calls, stats.flagged, flagged)
        if session is None and (want is None or flagged is None):
            totals = self._read(totals_in)
            calls, errors = totals.get("calls", 0), totals.get("error", 0)
            if want is not None:
                return errors if want is TraceStatus.ERROR else calls - errors
            return _count_of(calls, totals.get("flagged", 0), flagged)
        return len(self.select(TraceQuery(session, want, flagged, limit=None)))

    def generation(self) -> TraceGeneration:
        return self._read(generation_in)

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
        found = self._read(lambda t: hashes_in(t, wanted, CANDIDATES + 1))
        if len(found) > 1:
            raise ambiguous_hash(wanted, found)
        return found[0] if found else ""

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
        return self._read(lambda t: [(turn_of(k, prefix), k[-CALL_ID_LEN:].decode())
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
            return [(turn_of(k, prefix), TurnGroup.from_stored(json_load(v)))
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
                         (turn_of(row[0], prefix), TurnGroup.from_stored(json_load(row[1])))
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
            bump_generation(t, repairs=1)
            return repair_traces(t)

        return self.kv.write(repair)

    def select(self, query: TraceQuery) -> list[TraceRecord]:
        session, want, flagged = query.session, query.status, query.flagged
        offset, limit = query.offset, query.limit
        full = None if query.prompt_hash is None else self._full_hash(query.prompt_hash)
        if full == "":
            return []  # no record sent a hash with that prefix
        table, prefix, exact = pick_index(session, want, flagged, full)

        def keep(rec: TraceRecord) -> bool:
            return ((session is None or rec.session == session)
                    and (want is None or rec.status is want)
                    and (flagged is None or rec.flagged == flagged))  # fmt: skip

        def load(t: Tables) -> list[TraceRecord]:
            out: list[TraceRecord] = []
            skipped = 0
            for key in t.keys(table, prefix, reverse=query.newest_first):
                if exact and skipped < offset:
                    skipped += 1
                    continue
                rec = load_in(t, key[-CALL_ID_LEN:].decode())
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


def _count_of(calls: int, flagged_count: int, flagged: bool | None) -> int:
    if flagged is None:
        return calls
    return flagged_count if flagged else calls - flagged_count
