"""Which turns packed or left out a block, and why: an index from block id to trace records.

Owns: the LMDB layout below (named databases in the store's environment), keeping it in step
with the trace store (``sync``), and reading a block's uses a page at a time (``block_uses``).

Layout (``bid`` is the block id's 32 raw bytes, ``cid`` the 25-byte ASCII call id)::

    uses_by_block  bid cid -> canonical JSON {"s": session, "t": turn, "o": origin,
                              "u": [[selected 0|1, section, reason, score|null], ...]}
    uses_calls     cid     -> b""           every record indexed so far
    uses_meta      b"generation" -> JSON TraceGeneration the index was last brought up to

Invariants:
- Trace records never change (only their flag, which is not indexed), so a record indexed once
  stays right; the index can only lag (records added since) or hold too much (records deleted).
- ``sync`` compares the trace store's write generation with the one the index last saw (never
  record counts: a delete then as many adds leaves the count unchanged). Only adds since: new
  records are indexed from the newest end (the common case: one agent or replay appends), then
  session by session if some are still missing (records imported with old times). Any delete
  or repair since, or no generation seen yet: the index is dropped and rebuilt session by
  session, so no request ever decodes every record at once.
- A plan that lists a block twice (a repeated message) keeps both occurrences, in plan order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runtime.blocks import canonical_json
from runtime.inspect.turn import plan_entries
from runtime.storage.codec import json_load
from runtime.storage.lmdb import env as lmdbenv
from runtime.tracing.records import (
    CALL_ID_LEN,
    TraceGeneration,
    TraceOrigin,
    TraceRecord,
    TraceStore,
)

_USES, _CALLS, _META = b"uses_by_block", b"uses_calls", b"uses_meta"
_NEWEST_FIRST_MAX = 1000  # a gap larger than this is closed by a session-by-session sweep


@dataclass(frozen=True)
class BlockUse:
    """One appearance of a block in one record's plan."""

    call_id: str
    session: str
    turn: int
    origin: TraceOrigin
    selected: bool
    section: str
    reason: str
    score: float | None


@dataclass(frozen=True)
class UsesPage:
    uses: tuple[BlockUse, ...]
    records: int  # records that packed or omitted the block (all pages)
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.records else None

    @property
    def prev_offset(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset else None

    @property
    def range_text(self) -> str:
        end = min(self.offset + self.limit, self.records)
        return f"records {self.offset + 1}–{end} of {self.records}" if end > self.offset else ""


def _dbs(env: lmdbenv.Env) -> tuple[Any, Any]:
    return env.db(_USES), env.db(_CALLS)


def _rows(rec: TraceRecord) -> dict[bytes, bytes]:
    """Return the index rows of one record: one per distinct block, occurrences in plan order."""
    uses: dict[str, list[list[Any]]] = {}
    for selected in (True, False):
        for e in plan_entries(rec.plan, selected=selected):
            if len(e.block_id) == 64:
                uses.setdefault(e.block_id, []).append(
                    [int(selected), e.section, e.reason, e.score]
                )
    head = {"s": rec.session, "t": rec.turn, "o": rec.origin.value}
    return {bytes.fromhex(bid) + rec.call_id.encode(): canonical_json(head | {"u": u})
            for bid, u in uses.items()}  # fmt: skip


def _index(env: lmdbenv.Env, records: Sequence[TraceRecord]) -> None:
    uses_db, calls_db = _dbs(env)

    def put(txn: Any) -> None:
        for rec in records:
            if txn.put(rec.call_id.encode(), b"", db=calls_db, overwrite=False):
                for key, value in _rows(rec).items():
                    txn.put(key, value, db=uses_db)

    lmdbenv.write(env, put)


def _indexed_count(env: lmdbenv.Env) -> int:
    _, calls_db = _dbs(env)
    return int(lmdbenv.read(env, lambda txn: txn.stat(calls_db)["entries"]))


def _is_indexed(env: lmdbenv.Env, call_ids: Sequence[str]) -> list[bool]:
    _, calls_db = _dbs(env)
    return lmdbenv.read(
        env, lambda txn: [txn.get(c.encode(), db=calls_db) is not None for c in call_ids]
    )


def _drop(env: lmdbenv.Env) -> None:
    uses_db, calls_db = _dbs(env)

    def clear(txn: Any) -> None:
        txn.drop(uses_db, delete=False)
        txn.drop(calls_db, delete=False)

    lmdbenv.write(env, clear)


def _sweep(env: lmdbenv.Env, store: Any, traces: TraceStore) -> None:
    """Index every record not yet indexed, one session at a time."""
    total, offset, batch = store.session_count(), 0, 500
    while offset < total:
        for info in store.sessions(offset, batch):
            ids = [cid for _, cid in traces.turns(info.session)]
            missing = [c for c, done in zip(ids, _is_indexed(env, ids), strict=True) if not done]
            if missing:
                _index(env, traces.get_many(missing))
        offset += batch


def _seen(env: lmdbenv.Env) -> TraceGeneration | None:
    meta = env.db(_META)  # opened outside the transaction: opening may itself write
    raw = lmdbenv.read(env, lambda txn: txn.get(b"generation", db=meta))
    return None if raw is None else TraceGeneration(**json_load(raw))


def _mark(env: lmdbenv.Env, gen: TraceGeneration) -> None:
    meta, value = env.db(_META), canonical_json(gen.__dict__)
    lmdbenv.write(env, lambda txn: txn.put(b"generation", value, db=meta))


def _only_added(seen: TraceGeneration | None, now: TraceGeneration) -> bool:
    return (
        seen is not None
        and (seen.deleted, seen.repairs) == (now.deleted, now.repairs)
        and seen.added <= now.added
    )


def sync(store: Any, traces: TraceStore) -> None:
    """Bring the index up to date with the trace store (a no-op when it already is)."""
    env = store.env
    if env.readonly:
        return  # nothing can be written; pages show what was indexed
    now, seen = traces.generation(), _seen(env)  # read first: a write meanwhile shows next time
    if seen == now:
        return
    if not _only_added(seen, now):
        _drop(env)
    total, done = traces.count(), _indexed_count(env)
    if done < total and total - done <= _NEWEST_FIRST_MAX:
        newest = traces.list(limit=total - done)
        fresh = [r for r, ok in zip(newest, _is_indexed(env, [r.call_id for r in newest]), strict=True)
                 if not ok]  # fmt: skip
        _index(env, fresh)
    if _indexed_count(env) != total:
        _sweep(env, store, traces)
    _mark(env, now)


def block_uses(store: Any, traces: TraceStore, block_id: str, *, offset: int = 0,
               limit: int = 50) -> UsesPage:  # fmt: skip
    """Return the records (oldest first) that packed or omitted ``block_id``, one page of them."""
    sync(store, traces)
    uses_db, _ = _dbs(store.env)
    prefix = bytes.fromhex(block_id)

    def load(txn: Any) -> tuple[int, list[tuple[bytes, bytes]]]:
        count, rows = 0, []
        with txn.cursor(db=uses_db) as cur:
            ok = cur.set_range(prefix)
            while ok and (key := cur.key()).startswith(prefix):
                if offset <= count < offset + limit:
                    rows.append((key, cur.value()))
                count += 1
                ok = cur.next()
        return count, rows

    count, rows = lmdbenv.read(store.env, load)
    uses = [use for key, raw in rows for use in _decode(key, raw)]
    return UsesPage(tuple(uses), count, offset, limit)


def _decode(key: bytes, raw: bytes) -> list[BlockUse]:
    data = json_load(raw)
    cid = key[-CALL_ID_LEN:].decode()
    return [BlockUse(cid, data["s"], data["t"], TraceOrigin(data["o"]), bool(sel), section,
                     reason, score) for sel, section, reason, score in data["u"]]  # fmt: skip
