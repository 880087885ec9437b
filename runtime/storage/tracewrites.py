"""Changes to the trace tables inside one write transaction: a record in, a flag, a deletion.

Owns the functions the trace store (``runtime.storage.tracestore``) runs in its write
transactions, each taking the transaction's ``Tables``.

Invariants: a record, its index rows, its bytes and the session, turn and global aggregates
change together (``record_in``, ``delete_in`` with ``recount_in``); request bytes are deleted
only when no record still names their hash; every write bumps the generation in its own
transaction, so a reader never sees data without its generation.
"""

from __future__ import annotations

from dataclasses import replace

from runtime.blocks import canonical_json
from runtime.errors import InvalidInput, StoreCorrupted
from runtime.storage.chunking import request_parts
from runtime.storage.codec import json_load
from runtime.storage.kv import Tables
from runtime.storage.tracechunks import pack_bytes, put_chunked, put_request, release_row
from runtime.storage.tracerows import (
    BY_HASH,
    BY_SESSION,
    BY_STATUS,
    CHUNK_RECORDS_FROM,
    CLIENT_REQUESTS,
    FLAGGED,
    FLAGS,
    GENERATION,
    META,
    REQUESTS,
    RESPONSES,
    TOTALS,
    TRACES,
    TURNS,
    add_to_turn,
    decode_row,
    index_rows,
    load_in,
    put_group,
    put_stats,
    request_intact,
    session_key,
    session_prefix,
    status_key,
    stored_stats,
)
from runtime.tracing.aggregates import SessionTraceStats, TurnGroup
from runtime.tracing.records import (
    CALL_ID_LEN,
    ChunkedTrace,
    Flag,
    TraceGeneration,
    TraceRecord,
    TraceStatus,
)


class Aggregates:
    """The session, turn and total aggregates of the records one write adds, each row read
    once and written once (by ``write``) instead of once a record: what writing them record
    by record would leave, for a batch of any size."""

    def __init__(self, t: Tables) -> None:
        self.t = t
        self.stats: dict[str, SessionTraceStats] = {}
        self.turns: dict[tuple[str, int], TurnGroup] = {}
        self.totals: dict[str, int] | None = None

    def _session(self, session: str) -> SessionTraceStats:
        stats = self.stats.get(session)
        return stored_stats(self.t, session) if stats is None else stats

    def _bump(self, **deltas: int) -> None:
        totals = totals_in(self.t) if self.totals is None else self.totals
        for name, delta in deltas.items():
            totals[name] = totals.get(name, 0) + delta
        self.totals = totals

    def add(self, rec: TraceRecord) -> None:
        """Count a new record in its turn, its session and the totals."""
        key = (rec.session, rec.turn)
        group = self.turns.get(key)
        if group is None:
            raw = self.t.get(TURNS, session_key(*key))
            new_turn = raw is None
            group = (
                TurnGroup.of(rec)
                if raw is None
                else TurnGroup.from_stored(json_load(raw)).adding(rec)
            )
        else:
            new_turn, group = False, group.adding(rec)
        self.turns[key] = group
        self.stats[rec.session] = self._session(rec.session).counting(rec, new_turn=new_turn)
        self._bump(calls=1, error=int(rec.status is TraceStatus.ERROR))

    def flagged(self, session: str, delta: int) -> None:
        self.stats[session] = self._session(session).with_flagged(delta)
        self._bump(flagged=delta)

    def write(self) -> None:
        for (session, turn), group in sorted(self.turns.items()):
            put_group(self.t, session, turn, group)
        for session in sorted(self.stats):
            put_stats(self.t, self.stats[session])
        if self.totals is not None:
            self.t.put(META, TOTALS, canonical_json(self.totals))


def record_in(t: Tables, item: ChunkedTrace, aggregates: Aggregates | None = None) -> None:
    """Write one record; its aggregates go to ``aggregates`` (written by the caller), or now."""
    batch = Aggregates(t) if aggregates is None else aggregates
    rec, cid = item.record, item.record.call_id
    key = cid.encode()
    if t.get(TRACES, key) is not None:
        raise InvalidInput(f"trace {cid} is already recorded; records never change")
    encoded = rec.encode() if item.encoded is None else item.encoded
    if len(encoded) < CHUNK_RECORDS_FROM:
        t.put(TRACES, key, encoded)
    else:  # an imported turn lists every earlier block: most of it is the last turn's
        put_chunked(t, TRACES, key, request_parts(encoded))
    if not request_intact(t, rec.prompt_hash):
        put_request(t, REQUESTS, item.request)
    if item.response is not None:
        packed = item.response_packed or pack_bytes(item.response)
        t.put(RESPONSES, key, packed)
    for table, row in index_rows(rec):
        t.put(table, row, b"")
    batch.add(rec)
    if item.flag is not None:
        _flag_rows(t, rec.call_id, item.flag)
        batch.flagged(rec.session, +1)
    if aggregates is None:
        batch.write()


def bump_totals(t: Tables, **deltas: int) -> None:
    totals = totals_in(t)
    for name, delta in deltas.items():
        totals[name] = totals.get(name, 0) + delta
    t.put(META, TOTALS, canonical_json(totals))


def totals_in(t: Tables) -> dict[str, int]:
    raw = t.get(META, TOTALS)
    return {} if raw is None else dict(json_load(raw))


def bump_generation(t: Tables, *, added: int = 0, deleted: int = 0, repairs: int = 0) -> None:
    # In the caller's write transaction, so a reader never sees data without its generation.
    g = generation_in(t)
    g = TraceGeneration(g.added + added, g.deleted + deleted, g.repairs + repairs, g.writes + 1)
    t.put(META, GENERATION, canonical_json(g.__dict__))


def generation_in(t: Tables) -> TraceGeneration:
    raw = t.get(META, GENERATION)
    return TraceGeneration() if raw is None else TraceGeneration(**json_load(raw))


def flag_in(t: Tables, rec: TraceRecord, flag: Flag) -> TraceRecord:
    if rec.flag is None:
        add_flag_count(t, rec.session, +1)
    _flag_rows(t, rec.call_id, flag, status=rec.flag is None)
    return replace(rec, flag=flag)


def _flag_rows(t: Tables, call_id: str, flag: Flag, *, status: bool = True) -> None:
    if status:
        t.put(BY_STATUS, status_key(FLAGGED, call_id), b"")
    t.put(FLAGS, call_id.encode(), canonical_json(flag.__dict__))


def add_flag_count(t: Tables, session: str, delta: int) -> None:
    put_stats(t, stored_stats(t, session).with_flagged(delta))
    bump_totals(t, flagged=delta)


def recount_in(t: Tables, session: str) -> SessionTraceStats:
    """Write a session's aggregates again from its records; return them."""
    prefix = session_prefix(session)
    for key in list(t.keys(TURNS, prefix)):
        t.delete(TURNS, key)
    stats = SessionTraceStats(session)
    for key in t.keys(BY_SESSION, prefix):
        rec = load_in(t, key[-CALL_ID_LEN:].decode())
        stats = stats.counting(rec, flagged=rec.flagged, new_turn=add_to_turn(t, rec))
    put_stats(t, stats)
    return stats


def delete_in(t: Tables, cid: str) -> bool:
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
    t.delete(CLIENT_REQUESTS, key)  # the client's own bytes, if the proxy paged the call
    digest = bytes.fromhex(rec.prompt_hash)
    if t.first(BY_HASH, digest) is None:
        stored = t.get(REQUESTS, digest)
        if stored is not None:
            release_row(t, stored)
            t.delete(REQUESTS, digest)
    return flagged
