"""Approximate nearest neighbours for the embedding retriever: faiss HNSW graphs over a session.

Owns: which seqs of a session are searched through a graph rather than scanned, building those
graphs, and keeping them in the store's ``ix_ann`` table, a derived table (``llm386 reindex``
drops and rebuilds it; an entry that is missing or damaged is rebuilt from the block vectors).

Layout: a session's seqs are cut into chunks of ``CHUNK`` seqs. The full chunks below ``upto``
form segments by a pure function of ``upto`` (``segment_ranges``): runs of ``GROUP`` chunks, then
what is left in binary (two chunks, then one). Each segment holds one HNSW graph of the present
seqs in its range; the seqs past the last full chunk (fewer than ``CHUNK``) are left to the
caller's exact scan. Growing a session builds only the segments its new chunks complete (and
merges small ones into a run, like a binary counter): an index grown one block at a time equals
one built at once, because the segments depend on ``upto`` only, never on what was built before.

Invariants:
- Deterministic: a segment is built in one call, on one thread, from its seqs in ascending order,
  by a fresh faiss index (whose level generator has a fixed seed); the same vectors give the
  same graph, the same serialised bytes, and the same search answers in every process.
- A stored segment is keyed by a digest of the session, one of the embedder key, the session
  index's ``rgen`` and its seq range. Any removal from the session deletes its graphs (in the
  removal's transaction, ``sessionindex.on_remove``), so a graph never outlives the blocks it
  holds; a rebuild bumps ``rgen``. Its value carries a CRC-32 of its payload; an entry that fails the check or does not
  load is logged on ``llm386.ann`` and rebuilt, never raised.
- Search answers are candidates only: the retriever rescores them exactly and breaks ties by
  seq, so no float the graph computed reaches a prompt.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from runtime.indexes.embeddings import ANN_TABLE, Embedder, vector_table
from runtime.indexes.sessionindex import ABSENT, session_cache_prefix
from runtime.indexes.snapshot import Snapshot
from runtime.storage.kv import Tables

log = logging.getLogger("llm386.ann")

CHUNK = 16_384  # measured: below it an exact scan answers a page's query faster (bench_ann)
GROUP = 4  # chunks per full segment: one graph of 65,536 seqs at most
CONNECTIONS = 16  # HNSW M
EF_CONSTRUCTION = 128
EF_SEARCH = 128  # at least; a search for k neighbours explores max(k, EF_SEARCH)
_MAGIC = b"llm386-ann/2\n"
_HEADER = struct.Struct("<QQQ")  # start, stop, count of seqs
# A checksum against damage, not tampering (the store is trusted): CRC-32 reads a graph of
# 100 MB in about a third of SHA-256's time, which the first page after opening a store pays.
_CRC = struct.Struct("<I")
_faiss_lock = threading.Lock()  # faiss' thread count is process-wide


@dataclass(frozen=True)
class Segment:
    """One HNSW graph over the present seqs of [start, stop) of a session."""

    start: int
    stop: int
    seqs: np.ndarray  # int64, ascending: the graph's row order
    graph: Any  # faiss.IndexHNSWFlat; a loaded one reads its arrays from ``buffer``, in place
    buffer: Any = field(default=None, repr=False, compare=False)  # kept alive with the graph

    def search(self, target: np.ndarray, k: int) -> np.ndarray:
        """Return the seqs of (about) the ``k`` nearest vectors to ``target``, any order."""
        if self.seqs.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        with _faiss_lock:
            faiss.omp_set_num_threads(1)
            self.graph.hnsw.efSearch = max(k, EF_SEARCH)
            _, rows = self.graph.search(target.reshape(1, -1).astype(np.float32), k)
        found = rows[0]
        return self.seqs[found[found >= 0]]


def segment_ranges(upto: int, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """Return the seq ranges of the segments of a session as of ``upto``, ascending."""
    full = upto // chunk
    sizes = [GROUP] * (full // GROUP)
    rest = full % GROUP
    sizes += [size for size in (2, 1) if rest & size]
    ranges, at = [], 0
    for size in sizes:
        ranges.append((at * chunk, (at + size) * chunk))
        at += size
    return ranges


def covered(upto: int, chunk: int = CHUNK) -> int:
    """Return the first seq past the segments of ``upto`` (the exact scan starts there)."""
    return upto // chunk * chunk


def candidates(
    snap: Snapshot, embedder: Embedder, target: np.ndarray, k: int, chunk: int = CHUNK
) -> np.ndarray:
    """Return the seqs the segments propose for ``target`` (``k`` each), ascending."""
    found = [seg.search(target, k) for seg in segments(snap, embedder, chunk)]
    return np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *found]))


def segments(
    snap: Snapshot,
    embedder: Embedder,
    chunk: int = CHUNK,
    progress: Callable[[str], None] | None = None,
) -> list[Segment]:
    """Return the segments of ``snap``: cached in this process, else stored, else built."""
    key = f"ann:{embedder.key}:{snap.meta.rgen}"
    with snap.reader.lock:
        held: dict[tuple[int, int], Segment] = snap.cache.extras.setdefault(key, {})
    out = []
    for start, stop in segment_ranges(snap.upto, chunk):
        seg = held.get((start, stop))
        if seg is None:
            seg = _load_or_build(snap, embedder, (start, stop, chunk), progress)
            with snap.reader.lock:
                seg = held.setdefault((start, stop), seg)
        out.append(seg)
    return out


def _load_or_build(
    snap: Snapshot,
    embedder: Embedder,
    span: tuple[int, int, int],
    progress: Callable[[str], None] | None,
) -> Segment:
    start, stop, chunk = span
    prefix = _prefix(snap.session, embedder)
    key = prefix + struct.pack(">QQQ", snap.meta.rgen, start, stop)
    kv = snap.reader.kv
    raw = kv.read(lambda t: t.get(ANN_TABLE, key) if _has_table(t) else None)
    if raw is not None:
        loaded = _decode(bytes(raw), start, stop)  # bytes: owned and immutable (a no-op copy)
        if loaded is not None:
            return loaded
        log.warning(
            "the ANN index of session %r (seqs %d-%d) is damaged; rebuilding it from the "
            "block vectors (run `llm386 reindex` if this repeats)",
            snap.session, start, stop - 1,
        )  # fmt: skip
    if progress is not None:
        progress(f"ann: session {snap.session!r}: building seqs {start}-{stop - 1}")
    seg = build(snap, embedder, start, stop)
    if not kv.readonly:
        ranges = segment_ranges(int(snap.meta.next_seq), chunk)
        wanted = {prefix + struct.pack(">QQQ", snap.meta.rgen, a, b) for a, b in ranges}
        kv.write(lambda t: _save(t, prefix, key, encode(seg), wanted))
    return seg


def _has_table(t: Tables) -> bool:
    # A read-only store written before this table existed does not have it.
    return not t.readonly or ANN_TABLE in t.table_names()


def _save(t: Tables, prefix: bytes, key: bytes, value: bytes, wanted: set[bytes]) -> None:
    """Write one segment; drop this session's entries no current range uses (older rgens,
    small segments a larger one replaced)."""
    t.put(ANN_TABLE, key, value)
    stale = [k for k in t.keys(ANN_TABLE, prefix=prefix) if k not in wanted and k != key]
    for old in stale:
        t.delete(ANN_TABLE, old)


def _prefix(session: str, embedder: Embedder) -> bytes:
    # The session's digest first: the session index deletes a session's graphs on any removal.
    space = hashlib.blake2b(embedder.key.encode(), digest_size=8).digest()
    return session_cache_prefix(session) + space


def build(snap: Snapshot, embedder: Embedder, start: int, stop: int) -> Segment:
    """Build the graph of the present seqs of [start, stop) from their vectors."""
    kinds = snap.records["kind"][start:stop]
    seqs = (np.flatnonzero(kinds != ABSENT) + start).astype(np.int64)
    vectors = vector_table(snap, embedder, seqs).rows(seqs) if seqs.shape[0] else None
    return Segment(start, stop, seqs, build_graph(vectors, embedder.dimensions))


def build_graph(vectors: np.ndarray | None, dimensions: int) -> faiss.IndexHNSWFlat:
    """Return an HNSW graph (inner product) of ``vectors``' rows, built on one thread."""
    graph = faiss.IndexHNSWFlat(dimensions, CONNECTIONS, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = EF_CONSTRUCTION
    if vectors is not None and vectors.shape[0]:
        with _faiss_lock:
            faiss.omp_set_num_threads(1)
            graph.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return graph


def encode(seg: Segment) -> bytes:
    """Serialise a segment: magic, CRC-32 of the payload, then range, seqs and faiss bytes."""
    payload = (
        _HEADER.pack(seg.start, seg.stop, seg.seqs.shape[0])
        + seg.seqs.astype("<i8").tobytes()
        + faiss.serialize_index(seg.graph).tobytes()
    )
    return _MAGIC + _CRC.pack(zlib.crc32(payload)) + payload


def _decode(raw: bytes, start: int, stop: int) -> Segment | None:
    """Return the segment ``raw`` holds, or None when it is damaged or of another range."""
    head = len(_MAGIC) + _CRC.size
    payload = memoryview(raw)[head:]  # a view: a graph is tens of megabytes
    if raw[: len(_MAGIC)] != _MAGIC or _CRC.unpack_from(raw, len(_MAGIC))[0] != zlib.crc32(payload):
        return None
    if len(payload) < _HEADER.size:
        return None
    a, b, count = _HEADER.unpack_from(payload)
    body = _HEADER.size + 8 * count
    if (a, b) != (start, stop) or len(payload) < body:
        return None
    seqs = np.frombuffer(payload, dtype="<i8", count=count, offset=_HEADER.size).astype(np.int64)
    # Read in place: the graph's vectors and links stay in ``data`` (which keeps ``raw``, an
    # immutable bytes object, alive) instead of being copied, about 100 MB for 100,000 blocks.
    # Such a graph cannot grow (faiss aborts the process on an add to a viewed vector); no
    # segment is ever added to after it is made.
    data = np.frombuffer(payload, dtype=np.uint8, offset=body)
    try:
        reader = faiss.ZeroCopyIOReader(faiss.swig_ptr(data), data.size)  # type: ignore[attr-defined]
        graph = faiss.read_index(reader, faiss.IO_FLAG_MMAP_IFC)
    except RuntimeError:
        return None
    if graph.ntotal != count:
        return None
    return Segment(start, stop, seqs, graph, buffer=data)
