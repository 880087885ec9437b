"""Rebuilding every derived index from the store's own records: ``llm386 reindex``.

Owns: dropping the derived tables (the session index with its BM25 postings, block uses, the
per-block cost and vector caches, and the ANN graphs) and filling them again through the same code that keeps them
in step with each write: each session's entries replayed through the session index's
``on_put`` path, the trace records through block uses' and the dashboard's call points' ``sync``.

Invariants:
- Only derived tables are written; the store's and the trace store's own tables are only read.
- A rebuilt index equals one kept incrementally since the store was empty (same rows, postings,
  frequencies and pairs), except for generations, which only grow: every rebuilt session's
  ``gen`` and ``rgen`` start above any the index held before, so a reader that cached rows by
  generation (in this process or another) reloads them. The store-wide change counter grows too.
- The ANN graphs of each session long enough to have one are built again for the default
  embedder (``HashingEmbedder``); another embedder's are built on its first page.
- Each session is rebuilt in one write transaction: a crash leaves some sessions rebuilt and
  the rest missing, which the pager repairs on its next snapshot (or the next reindex).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from runtime.indexes import ann, blockuses, callpoints
from runtime.indexes.embeddings import ANN_TABLE, HashingEmbedder
from runtime.indexes.sessionindex import (
    BLOCK_CACHE_DBS,
    DB_NAMES,
    Meta,
    SessionIndex,
    bump_changes,
)
from runtime.indexes.snapshot import index_for, reader_for
from runtime.indexes.vectorchunks import SESSION_VECTORS_TABLE
from runtime.storage.codec import json_load
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Tables
from runtime.tracing.records import TraceStore

DERIVED_TABLES = (
    *DB_NAMES, *BLOCK_CACHE_DBS, ANN_TABLE, SESSION_VECTORS_TABLE, *blockuses.TABLES,
    *callpoints.TABLES,
)  # fmt: skip
_BATCH = 500  # sessions listed at a time
LONG_SESSION = 10_000  # entries: a session this long gets a progress line of its own


@dataclass(frozen=True)
class ReindexReport:
    """What ``reindex`` rebuilt."""

    sessions: int
    entries: int
    trace_records: int  # records block uses now index (None of them without a trace store)
    tables: tuple[str, ...]  # the derived tables dropped and rebuilt (or left to refill)


def reindex(
    store: BlockStore,
    traces: TraceStore | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> ReindexReport:
    """Drop every derived table of ``store`` and rebuild it from the store's entries."""
    say = progress or (lambda _line: None)
    kv, index = store.kv, index_for(store)
    floor = kv.read(_generation_floor)
    kv.write(_drop)
    total, sessions, entries = store.session_count(), 0, 0
    for offset in range(0, total, _BATCH):
        for info in store.sessions(offset, _BATCH):
            rebuild = partial(_rebuild, store=store, index=index, session=info.session, floor=floor)
            entries += kv.write(rebuild)
            sessions += 1
            if info.count >= LONG_SESSION:
                say(f"reindex: session {info.session!r}: {info.count} entries")
            if info.count >= ann.CHUNK:
                snap = reader_for(store).snapshot(store, info.session)
                ann.segments(snap, HashingEmbedder(), progress=say)
        if total > _BATCH:
            say(f"reindex: {sessions} of {total} sessions")
    records = 0
    if traces is not None:
        blockuses.sync(store, traces)
        callpoints.sync(store, traces)
        records = kv.read(lambda t: t.count("uses_calls"))
    return ReindexReport(sessions, entries, records, DERIVED_TABLES)


def _drop(t: Tables) -> None:
    for table in DERIVED_TABLES:
        t.clear(table)
    bump_changes(t)


def _rebuild(t: Tables, store: BlockStore, index: SessionIndex, session: str, floor: int) -> int:
    raw = t.get("sessions", session.encode())
    if raw is None:
        return 0  # purged since it was listed
    everything = store.entries(session)  # inside this write: the same snapshot
    index.reindex(t, session, everything, int(json_load(raw)["n"]))
    meta = index.meta(t, session) or Meta()
    index.save_meta(t, session, replace(meta, gen=floor + meta.gen, rgen=floor + meta.rgen))
    return len(everything)


def _generation_floor(t: Tables) -> int:
    """Return a generation above every one the index holds (damaged headers are skipped)."""
    top = 0
    for _, raw in t.scan("ix_meta"):
        try:
            meta = Meta.decode(raw)
        except struct.error:
            continue  # a damaged header: the rebuild replaces it
        if meta is not None:
            top = max(top, meta.gen, meta.rgen)
    return top + 1
