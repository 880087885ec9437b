"""A derived index over trace records, kept in step with the trace store by ``sync`` on read.

Owns: ``RecordIndex``, the catch-up machinery block uses (``runtime.indexes.blockuses``) and the
dashboard's call points (``runtime.indexes.callpoints``) share. Each index has three tables of
the store's engine: its rows (what ``rows_of`` returns for a record), a table of every call id
indexed so far, and a meta table holding the trace generation it was last brought up to.

Invariants:
- Trace records never change (only their flag, which no index keeps), so a record indexed once
  stays right; an index can only lag (records added since) or hold too much (records deleted).
- ``sync`` compares the trace store's write generation with the one the index last saw (never
  record counts: a delete then as many adds leaves the count unchanged). Only adds since: new
  records are indexed from the newest end (the common case: one agent or replay appends), then
  session by session if some are still missing (records imported with old times). Any delete
  or repair since, or no generation seen yet: the index is dropped and rebuilt session by
  session, so no request ever decodes every record at once.
- What an index holds depends only on the records, never on the order they were indexed in,
  so an index kept by ``sync`` equals one rebuilt by ``llm386 reindex``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runtime.blocks import canonical_json
from runtime.storage.codec import json_load
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Engine, Tables
from runtime.tracing.records import TraceGeneration, TraceRecord, TraceStore

NEWEST_FIRST_MAX = 1000  # a gap larger than this is closed by a session-by-session sweep
_SWEEP_BATCH = 500  # sessions listed at a time


@dataclass(frozen=True)
class RecordIndex:
    """One derived index: its tables and the rows one record contributes to it."""

    rows: str  # table of the index's rows
    calls: str  # call id -> b"" for every record indexed so far
    meta: str  # b"generation" -> JSON TraceGeneration last synced to
    rows_of: Callable[[TraceRecord], dict[bytes, bytes]]

    @property
    def tables(self) -> tuple[str, str, str]:
        return (self.rows, self.calls, self.meta)

    def index(self, kv: Engine, records: Sequence[TraceRecord]) -> None:
        def put(t: Tables) -> None:
            for rec in records:
                cid = rec.call_id.encode()
                if t.get(self.calls, cid) is None:
                    t.put(self.calls, cid, b"")
                    t.put_many(self.rows, sorted(self.rows_of(rec).items()))

        kv.write(put)

    def indexed_count(self, kv: Engine) -> int:
        return kv.read(lambda t: t.count(self.calls))

    def is_indexed(self, kv: Engine, call_ids: Sequence[str]) -> list[bool]:
        keys = [c.encode() for c in call_ids]
        return [raw is not None for raw in kv.read(lambda t: t.get_many(self.calls, keys))]

    def drop(self, kv: Engine) -> None:
        """Forget everything indexed (``sync`` then rebuilds it from the trace store)."""

        def clear(t: Tables) -> None:
            for table in self.tables:
                t.clear(table)

        kv.write(clear)

    def _sweep(self, kv: Engine, store: BlockStore, traces: TraceStore) -> None:
        """Index every record not yet indexed, one session at a time."""
        total, offset = store.session_count(), 0
        while offset < total:
            for info in store.sessions(offset, _SWEEP_BATCH):
                ids = [cid for _, cid in traces.turns(info.session)]
                done = self.is_indexed(kv, ids)
                missing = [c for c, ok in zip(ids, done, strict=True) if not ok]
                if missing:
                    self.index(kv, traces.get_many(missing))
            offset += _SWEEP_BATCH

    def _seen(self, kv: Engine) -> TraceGeneration | None:
        raw = kv.read(lambda t: t.get(self.meta, b"generation"))
        return None if raw is None else TraceGeneration(**json_load(raw))

    def _mark(self, kv: Engine, gen: TraceGeneration) -> None:
        value = canonical_json(gen.__dict__)
        kv.write(lambda t: t.put(self.meta, b"generation", value))

    def sync(self, store: BlockStore, traces: TraceStore) -> None:
        """Bring the index up to date with the trace store (a no-op when it already is)."""
        kv = store.kv
        if kv.readonly:
            return  # nothing can be written; pages show what was indexed
        now, seen = traces.generation(), self._seen(kv)  # read first: a write meanwhile shows next
        if seen == now:
            return
        if not _only_added(seen, now):
            self.drop(kv)
        total, done = traces.count(), self.indexed_count(kv)
        if done < total and total - done <= NEWEST_FIRST_MAX:
            newest = traces.list(limit=total - done)
            flags = self.is_indexed(kv, [r.call_id for r in newest])
            self.index(kv, [r for r, ok in zip(newest, flags, strict=True) if not ok])
        if self.indexed_count(kv) != total:
            self._sweep(kv, store, traces)
        self._mark(kv, now)


def _only_added(seen: TraceGeneration | None, now: TraceGeneration) -> bool:
    return (
        seen is not None
        and (seen.deleted, seen.repairs) == (now.deleted, now.repairs)
        and seen.added <= now.added
    )
