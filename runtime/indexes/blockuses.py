"""Which turns packed or left out a block, and why: an index from block id to trace records.

Owns: the layout below (tables of the store's engine), keeping it in step
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
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Engine, Tables
from runtime.tracing.records import (
    CALL_ID_LEN,
    TraceGeneration,
    TraceOrigin,
    TraceRecord,
    TraceStore,
)

_USES, _CALLS, _META = "uses_by_block", "uses_calls", "uses_meta"
TABLES = (_USES, _CALLS, _META)
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


def _index(kv: Engine, records: Sequence[TraceRecord]) -> None:
    def put(t: Tables) -> None:
        for rec in records:
            cid = rec.call_id.encode()
            if t.get(_CALLS, cid) is None:
                t.put(_CALLS, cid, b"")
                t.put_many(_USES, sorted(_rows(rec).items()))

    kv.write(put)


def _indexed_count(kv: Engine) -> int:
    return kv.read(lambda t: t.count(_CALLS))


def _is_indexed(kv: Engine, call_ids: Sequence[str]) -> list[bool]:
    keys = [c.encode() for c in call_ids]
    return [raw is not None for raw in kv.read(lambda t: t.get_many(_CALLS, keys))]


def drop(kv: Engine) -> None:
    """Forget everything indexed (``sync`` then rebuilds it from the trace store)."""

    def clear(t: Tables) -> None:
        for table in TABLES:
            t.clear(table)

    kv.write(clear)


def _sweep(kv: Engine, store: BlockStore, traces: TraceStore) -> None:
    """Index every record not yet indexed, one session at a time."""
    total, offset, batch = store.session_count(), 0, 500
    while offset < total:
        for info in store.sessions(offset, batch):
            ids = [cid for _, cid in traces.turns(info.session)]
            missing = [c for c, done in zip(ids, _is_indexed(kv, ids), strict=True) if not done]
            if missing:
                _index(kv, traces.get_many(missing))
        offset += batch


def _seen(kv: Engine) -> TraceGeneration | None:
    raw = kv.read(lambda t: t.get(_META, b"generation"))
    return None if raw is None else TraceGeneration(**json_load(raw))


def _mark(kv: Engine, gen: TraceGeneration) -> None:
    value = canonical_json(gen.__dict__)
    kv.write(lambda t: t.put(_META, b"generation", value))


def _only_added(seen: TraceGeneration | None, now: TraceGeneration) -> bool:
    return (
        seen is not None
        and (seen.deleted, seen.repairs) == (now.deleted, now.repairs)
        and seen.added <= now.added
    )


def sync(store: BlockStore, traces: TraceStore) -> None:
    """Bring the index up to date with the trace store (a no-op when it already is)."""
    kv = store.kv
    if kv.readonly:
        return  # nothing can be written; pages show what was indexed
    now, seen = traces.generation(), _seen(kv)  # read first: a write meanwhile shows next time
    if seen == now:
        return
    if not _only_added(seen, now):
        drop(kv)
    total, done = traces.count(), _indexed_count(kv)
    if done < total and total - done <= _NEWEST_FIRST_MAX:
        newest = traces.list(limit=total - done)
        fresh = [r for r, ok in zip(newest, _is_indexed(kv, [r.call_id for r in newest]), strict=True)
                 if not ok]  # fmt: skip
        _index(kv, fresh)
    if _indexed_count(kv) != total:
        _sweep(kv, store, traces)
    _mark(kv, now)


def block_uses(store: BlockStore, traces: TraceStore, block_id: str, *, offset: int = 0,
               limit: int = 50) -> UsesPage:  # fmt: skip
    """Return the records (oldest first) that packed or omitted ``block_id``, one page of them."""
    sync(store, traces)
    prefix = bytes.fromhex(block_id)

    def load(t: Tables) -> tuple[int, list[tuple[bytes, bytes | None]]]:
        count, window = 0, []
        for key in t.keys(_USES, prefix):
            if offset <= count < offset + limit:
                window.append(key)
            count += 1
        return count, list(zip(window, t.get_many(_USES, window), strict=True))

    count, rows = store.kv.read(load)
    uses = [use for key, raw in rows if raw is not None for use in _decode(key, raw)]
    return UsesPage(tuple(uses), count, offset, limit)


def _decode(key: bytes, raw: bytes) -> list[BlockUse]:
    data = json_load(raw)
    cid = key[-CALL_ID_LEN:].decode()
    return [BlockUse(cid, data["s"], data["t"], TraceOrigin(data["o"]), bool(sel), section,
                     reason, score) for sel, section, reason, score in data["u"]]  # fmt: skip
