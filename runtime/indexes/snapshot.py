"""Reading the pager's session index: synced snapshots "as of" a seq, postings, corpus figures.

Owns: attaching the index hook to a store (``index_for``), checking the index against the store
and repairing it (``IndexReader.snapshot``), and the per-process caches that make a page of a
100,000-block session touch only the parts that changed since the last page.

Invariants:
- A snapshot shows exactly the entries with ``seq < upto`` that exist now; everything read from
  it (rows, postings, BM25 corpus figures) describes that same corpus.
- Caches are keyed by the index's generations: appends extend what is cached, a removal or a
  rebuild (``rgen`` changes) drops it. Nothing cached outlives a change it depends on.
- The index is checked against the store's own session record on every snapshot; a mismatch is
  repaired before anything is read (catch-up for missed appends, else a rebuild), and a
  read-only store with a stale index is refused rather than read wrongly.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.blocks import BlockKind, Entry
from runtime.errors import SessionNotFound, StoreError
from runtime.indexes import blockuses, callpoints
from runtime.indexes.bm25 import EPSILON, CorpusStats, Postings, average_idf, raw_idf, terms
from runtime.indexes.embeddings import ANN_TABLE
from runtime.indexes.sessionindex import (
    ABSENT,
    BLOCK_CACHE_DBS,
    COL_CHUNK,
    DB_NAMES,
    FLAG_PINNED,
    KIND_CODE,
    POST_CHUNK,
    POSTING,
    RECORD,
    STATE_DB,
    Meta,
    SessionIndex,
    col_key,
    empty_chunk,
)
from runtime.indexes.vectorchunks import SESSION_VECTORS_TABLE
from runtime.storage.codec import json_load
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Engine, EngineRef, Tables

_MAX_CACHED_TERMS = 50_000
_lock = threading.Lock()
# Keyed by the store's engine, weakly: a store closed and opened again has a new engine, so it
# starts with fresh caches, and a dropped store's caches go with it.
_indexes: weakref.WeakKeyDictionary[Engine, SessionIndex] = weakref.WeakKeyDictionary()
_attached: weakref.WeakKeyDictionary[Any, SessionIndex] = weakref.WeakKeyDictionary()
_readers: weakref.WeakKeyDictionary[Engine, IndexReader] = weakref.WeakKeyDictionary()


def index_for(store: BlockStore) -> SessionIndex:
    """Return the index of ``store``'s engine, attaching its hook to ``store`` once."""
    with _lock:
        index = _attached.get(store)
        if index is None:
            index = _indexes.get(store.kv)
            if index is None:
                _create_tables(store.kv)
                index = _indexes[store.kv] = SessionIndex()
            store.add_hook(index)
            _attached[store] = index
        return index


def _create_tables(kv: Engine) -> None:
    """Create the derived tables in a write of their own, before any caller's transaction.

    An engine may create a table inside the first transaction that writes it; if that
    transaction is one of a caller's and fails, the table must not be left half made (LMDB
    would keep a handle the aborted transaction took back).
    """
    if kv.readonly:
        return
    names = (
        *DB_NAMES,
        *BLOCK_CACHE_DBS,
        ANN_TABLE,
        SESSION_VECTORS_TABLE,
        STATE_DB,
        *blockuses.TABLES,
        *callpoints.TABLES,
    )
    kv.write(lambda t: [t.count(name) for name in names])


def reader_for(store: BlockStore) -> IndexReader:
    """Return the process-wide reader (and its caches) for ``store``'s engine."""
    index = index_for(store)
    with _lock:
        reader = _readers.get(store.kv)
        if reader is None:
            reader = _readers[store.kv] = IndexReader(index, store.kv)
        return reader


@dataclass
class SessionCache:
    """What one process remembers about one session's index (guarded by ``IndexReader.lock``)."""

    meta: Meta
    records: np.ndarray
    postings: dict[str, np.ndarray] = field(default_factory=dict)
    histogram: tuple[int, list[tuple[int, int]]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """A session as of ``upto``: one row per seq below it (kind 255 where nothing is)."""

    session: str
    upto: int
    meta: Meta
    records: np.ndarray
    stats: CorpusStats
    cache: SessionCache
    reader: IndexReader
    store: BlockStore

    def present(self) -> np.ndarray:
        """Return the seqs that hold an entry, ascending."""
        return np.flatnonzero(self.records["kind"] != ABSENT)

    def kind(self, seq: int) -> BlockKind:
        from runtime.indexes.sessionindex import KIND_CODES

        return KIND_CODES[int(self.records["kind"][seq])]

    def block_id(self, seq: int) -> str:
        return bytes(self.records["id"][seq]).hex()

    def has(self, seq: int) -> bool:
        return 0 <= seq < self.upto and int(self.records["kind"][seq]) != ABSENT

    def seqs_of(self, kind: BlockKind) -> np.ndarray:
        return np.flatnonzero(self.records["kind"] == KIND_CODE[kind])

    def pinned(self) -> np.ndarray:
        return np.flatnonzero((self.records["flags"] & FLAG_PINNED) != 0)

    def postings(self, query: Sequence[str]) -> list[Postings]:
        """Return each query term's postings restricted to this snapshot, in query order."""
        return self.reader.postings_many(self, query)

    def idf_floor(self, postings: Sequence[Postings]) -> float | None:
        """Return rank_bm25's epsilon floor if a query term needs it, else None."""
        if not any(p.df and raw_idf(self.stats.n_docs, p.df) < 0 for p in postings):
            return None
        return EPSILON * average_idf(self.stats.n_docs, self.reader.histogram(self))


class IndexReader:
    """Snapshots and postings of one engine's index, with the caches behind them."""

    def __init__(self, index: SessionIndex, kv: Engine) -> None:
        self.index = index
        self._kv = EngineRef(kv, "index reader")
        self.readonly = kv.readonly
        self.lock = threading.Lock()
        self._cache: dict[str, SessionCache] = {}

    @property
    def kv(self) -> Engine:
        """The engine this reader reads (alive while a store of it is)."""
        return self._kv()

    def snapshot(self, store: BlockStore, session: str, upto: int | None = None) -> Snapshot:
        """Return ``session`` as of ``upto`` (default: everything), repairing the index first."""
        meta = self._synced(store, session)
        cache = self._refresh(session, meta)
        limit = meta.next_seq if upto is None else max(0, min(int(upto), meta.next_seq))
        records = cache.records[:limit]
        stats = _stats(meta, records)
        return Snapshot(session, limit, meta, records, stats, cache, self, store)

    # -- keeping the index in step with the store ---------------------------------------
    def _synced(self, store: BlockStore, session: str) -> Meta:
        meta, next_seq, count = self.kv.read(lambda t: self._state(t, session))
        if _fresh(meta, next_seq, count):
            assert meta is not None
            return meta
        if self.readonly:
            raise StoreError(
                f"the search index of session {session!r} is behind the store (it was written "
                "by a process without the index hook); open the store writable once, e.g. run "
                "`llm386 page` on it, to bring the index up to date"
            )
        self._repair(store, session, meta, next_seq, count)
        return self._synced(store, session)

    def _state(self, t: Tables, session: str) -> tuple[Meta | None, int, int]:
        raw = t.get("sessions", session.encode())
        if raw is None:
            raise SessionNotFound(f"no session {session!r}; `llm386 sessions` lists them")
        info = json_load(raw)
        return self.index.meta(t, session), int(info["n"]), int(info["count"])

    def _repair(
        self, store: BlockStore, session: str, meta: Meta | None, next_seq: int, count: int
    ) -> None:
        start = 0 if meta is None or meta.stale else meta.next_seq
        entries = store.entries(session, start)
        appended_only = meta is not None and not meta.stale and meta.n_docs + len(entries) == count

        def fix(t: Tables) -> None:
            if self._state(t, session) != (meta, next_seq, count):
                return  # someone wrote meanwhile; the caller looks again
            if appended_only:
                self.index.catch_up(t, session, entries, next_seq)
            else:
                everything = entries if start == 0 else store.entries(session)
                self.index.reindex(t, session, everything, next_seq)

        self.kv.write(fix)

    # -- rows ---------------------------------------------------------------------------
    def _refresh(self, session: str, meta: Meta) -> SessionCache:
        with self.lock:
            cache = self._cache.get(session)
            if cache is not None and cache.meta.gen == meta.gen:
                return cache
            if cache is None or cache.meta.rgen != meta.rgen:
                records = self._load_rows(session, 0, meta.next_seq)
                cache = SessionCache(meta, records)
            else:
                cache = self._extend(session, cache, meta)
            self._cache[session] = cache
            return cache

    def _extend(self, session: str, cache: SessionCache, meta: Meta) -> SessionCache:
        old = cache.records
        first = old.shape[0] // COL_CHUNK * COL_CHUNK
        tail = self._load_rows(session, first, meta.next_seq)
        records = np.concatenate([old[:first], tail])
        return SessionCache(meta, records, cache.postings, None, cache.extras)

    def _load_rows(self, session: str, start: int, stop: int) -> np.ndarray:
        numbers = range(start // COL_CHUNK, -(-stop // COL_CHUNK))
        keys = [col_key(session, n) for n in numbers]
        chunks = self.kv.read(lambda t: t.get_many("ix_cols", keys))
        empty = empty_chunk().tobytes()
        raw = b"".join(empty if chunk is None else chunk for chunk in chunks)
        return np.frombuffer(raw, dtype=RECORD)[: max(0, stop - start)]

    # -- postings -----------------------------------------------------------------------
    def postings(self, snap: Snapshot, term: str) -> Postings:
        """Return ``term``'s postings restricted to the snapshot."""
        return self.postings_many(snap, [term])[0]

    def postings_many(self, snap: Snapshot, words: Sequence[str]) -> list[Postings]:
        """Return each term's postings restricted to the snapshot (document frequencies are
        read in one batch; only postings that grew since they were cached are read again)."""
        cache, session = snap.cache, snap.session
        dfs = self.kv.read(lambda t: self.index.dfs(t, session, words))
        out = []
        for term, df in zip(words, dfs, strict=True):
            with self.lock:
                cached = cache.postings.get(term)
            if cached is None or cached.shape[0] != df:
                cached = self._load_postings(session, term, df, cached)
                with self.lock:
                    if len(cache.postings) >= _MAX_CACHED_TERMS:
                        cache.postings.clear()
                    cache.postings[term] = cached
            # Cut at upto even for a full snapshot: a writer may have appended since it was taken.
            cut = int(np.searchsorted(cached["seq"], snap.upto))
            out.append(Postings(cached["seq"][:cut], cached["tf"][:cut]))
        return out

    def _load_postings(
        self, session: str, term: str, df: int, cached: np.ndarray | None
    ) -> np.ndarray:
        # Appends only touch the last chunk, so whole chunks already cached are kept.
        keep = 0 if cached is None or cached.shape[0] > df else cached.shape[0] // POST_CHUNK
        fresh = self.kv.read(lambda t: self.index.read_postings(t, session, term, df, keep))
        if keep == 0:
            return np.ascontiguousarray(fresh, dtype=POSTING)
        assert cached is not None
        return np.concatenate([cached[: keep * POST_CHUNK], fresh])

    # -- vocabulary histogram (for rank_bm25's epsilon floor) ---------------------------
    def histogram(self, snap: Snapshot) -> list[tuple[int, int]]:
        """Return (document frequency, number of terms) over the snapshot's corpus.

        The histogram, the index header it goes with, and the frequencies of the terms of
        every document at or after ``upto`` are read in one transaction, and those documents
        are walked back out of it; so a writer appending between the snapshot's read and this
        one changes nothing (its documents are after ``upto`` and walked back too). After a
        removal since the snapshot, it is the histogram of what is left before ``upto``."""
        cache = snap.cache
        with self.lock:
            held = cache.histogram
        if held is not None and held[0] == snap.meta.gen and snap.upto >= snap.meta.next_seq:
            return held[1]
        gen, hist, later, dfs = self.kv.read(lambda t: self._histogram_now(t, snap))
        with self.lock:
            cache.histogram = (gen, hist)  # looked up by the generation it was read at
        if not later:
            return hist
        counts = dict(hist)
        for entry in reversed(later):  # newest first, lowering each of its terms' frequency
            for term in sorted(set(terms(entry.body))):
                _move(counts, dfs[term], dfs[term] - 1)
                dfs[term] -= 1
        return sorted((df, n) for df, n in counts.items() if n > 0 and df > 0)

    def _histogram_now(
        self, t: Tables, snap: Snapshot
    ) -> tuple[int, list[tuple[int, int]], list[Entry], dict[str, int]]:
        """Read, in the caller's transaction: the index's generation and histogram, the
        documents it holds from ``snap.upto`` on, and their terms' document frequencies."""
        meta = self.index.meta(t, snap.session) or Meta()
        hist = self.index.histogram(t, snap.session)
        later: list[Entry] = []
        if meta.next_seq > snap.upto:  # a nested read: it joins this transaction
            later = [
                e for e in snap.store.entries(snap.session, snap.upto) if e.seq < meta.next_seq
            ]
        words = sorted({term for e in later for term in terms(e.body)})
        dfs = dict(zip(words, self.index.dfs(t, snap.session, words), strict=True))
        return meta.gen, hist, later, dfs


def _move(hist: dict[int, int], old: int, new: int) -> None:
    hist[old] = hist.get(old, 0) - 1
    if new > 0:
        hist[new] = hist.get(new, 0) + 1


def _fresh(meta: Meta | None, next_seq: int, count: int) -> bool:
    if meta is None:
        return next_seq == 0 and count == 0
    return not meta.stale and meta.next_seq == next_seq and meta.n_docs == count


def _stats(meta: Meta, records: np.ndarray) -> CorpusStats:
    if records.shape[0] >= meta.next_seq:
        return CorpusStats(meta.n_docs, meta.total_len)
    present = records["kind"] != ABSENT
    return CorpusStats(int(present.sum()), int(records["dlen"][present].sum()))


def blank_postings() -> np.ndarray:
    return np.zeros(0, dtype=POSTING)
