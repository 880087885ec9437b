"""Text embeddings for the similarity retriever: a pluggable ``Embedder`` and a local default.

Owns: the ``Embedder`` protocol, ``HashingEmbedder`` (needs no model download), and the vector
cache: per block id in a process dictionary and, for writable stores, in the store's ``ix_vec``
table (key: block id, then embedder key), so a block is embedded once per embedder, not once
per page. The session index hook deletes a block's vectors when the store deletes the block.

Invariants:
- ``HashingEmbedder`` is a pure function of the text: features are hashed with fixed
  arithmetic (never Python's salted ``hash()``), so vectors are identical in every process and
  on every machine. Vectors are float32, L2-normalised (all zeros for text with no features).
- Features: the UTF-8 byte 3-, 4- and 5-grams of the lower-cased words without stop words
  (robust to inflection and typos), plus each index term of ``bm25.terms`` at twice the weight;
  each feature adds +1 or -1 (a hash bit) to one of ``dimensions`` buckets.
- A cached vector is keyed by ``Embedder.key`` (name, dimensions, version) and the block id, so
  two embedders never share vectors.
"""

from __future__ import annotations

import re
import threading
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import numpy as np

from runtime.indexes import vectorchunks
from runtime.indexes.bm25 import STOPWORDS, index_term, terms
from runtime.storage.kv import Engine, EngineCache, EngineRef, Tables

if TYPE_CHECKING:
    from runtime.indexes.snapshot import Snapshot

NGRAMS = (3, 4, 5)
WORD_WEIGHT = 2.0
_WORD = re.compile(r"\w+")
_MIX1 = np.uint64(0x9E3779B97F4A7C15)
_MIX2 = np.uint64(0xBF58476D1CE4E5B9)
_MAX_CACHED = 200_000
_BATCH = 2_048  # texts hashed together by embed_many: bounds its temporary arrays


@runtime_checkable
class Embedder(Protocol):
    """Turns text into a fixed-size vector; ``key`` names the vector space for caching."""

    @property
    def key(self) -> str: ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, text: str) -> np.ndarray: ...


# An embedder may also offer ``embed_many(texts) -> np.ndarray`` (a row per text, each equal to
# ``embed``'s): the vector cache uses it to embed a cold session's blocks in batches.


class HashingEmbedder:
    """Hashed character n-gram and word features in a fixed number of dimensions."""

    version = 2  # follows bm25.terms

    def __init__(self, dimensions: int = 256) -> None:
        if dimensions < 8:
            raise ValueError("an embedding needs at least 8 dimensions")
        self._dimensions = int(dimensions)

    @property
    def key(self) -> str:
        return f"hashing-v{self.version}/{self._dimensions}"

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def embed(self, text: str) -> np.ndarray:
        """Return the unit-length vector of ``text``."""
        vector = np.zeros(self._dimensions, dtype=np.float64)
        words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
        self._add_ngrams(vector, (" " + " ".join(words) + " ").encode("utf-8"))
        for term in terms(text):
            code = zlib.crc32(b"w\x00" + term.encode("utf-8"))
            vector[code % self._dimensions] += WORD_WEIGHT if code & 0x10000 else -WORD_WEIGHT
        norm = float(np.sqrt(vector @ vector))
        return (vector / norm if norm else vector).astype(np.float32)

    def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """Return the vectors of ``texts``, one float32 row each: ``embed`` of each text, bit
        for bit, with the n-grams of many texts hashed in one pass of array arithmetic.

        Bit for bit because every feature adds an integer (+-1, +-2) to a float64 bucket: the
        sums, and the sum of squares under the norm, are exact in any order."""
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        words = _WordFeatures()  # this call's own: an embedder may serve several threads
        for start in range(0, len(texts), _BATCH):
            out[start : start + _BATCH] = self._embed_batch(texts[start : start + _BATCH], words)
        return out

    def _embed_batch(self, texts: Sequence[str], features: _WordFeatures) -> np.ndarray:
        dim, known = self._dimensions, features.ids
        datas: list[bytes] = []
        ids: list[int] = []
        counts: list[int] = []
        for text in texts:
            words = _WORD.findall(text.lower())
            for word in words:
                if word not in known:
                    known[word] = len(features.terms)
                    features.terms.append(self._term_feature(word))
            ids.extend(map(known.__getitem__, words))
            counts.append(len(words))
            kept = " ".join([w for w in words if w not in STOPWORDS])
            datas.append((" " + kept + " ").encode("utf-8"))
        cells = len(texts) * dim
        table = np.asarray(features.terms, dtype=np.float64).reshape(-1, 2)
        words_of = np.asarray(ids, dtype=np.int64)
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
        cell = rows * dim + table[words_of, 0].astype(np.int64)
        sums = np.zeros(cells, dtype=np.float64)
        sums += np.bincount(cell, table[words_of, 1], cells)  # the terms, at +-WORD_WEIGHT or 0
        lengths = np.fromiter(map(len, datas), dtype=np.int64, count=len(datas))
        raw = np.frombuffer(b"".join(datas), dtype=np.uint8).astype(np.uint64)
        owner = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        end = np.repeat(np.cumsum(lengths), lengths)  # where each byte's text ends
        grams = np.zeros(raw.shape[0], dtype=np.uint64)  # the bytes of each n-gram, shifted
        for j in range(max(NGRAMS)):
            count = raw.shape[0] - j
            if count <= 0:
                break
            grams = grams[:count]
            grams |= raw[j:] << np.uint64(8 * (j + 1))
            n = j + 1
            if n not in NGRAMS:
                continue
            inside = np.arange(n, count + n, dtype=np.int64) <= end[:count]
            mixed = _mix(grams[inside] | np.uint64(n))
            buckets = _bucket(mixed >> np.uint64(33), dim)
            signs = np.where((mixed >> np.uint64(7)) & np.uint64(1), 1.0, -1.0)
            sums += np.bincount(owner[:count][inside] * dim + buckets, signs, cells)
        vectors = sums.reshape(len(texts), dim)
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        np.divide(vectors, norms[:, None], out=vectors, where=norms[:, None] > 0)
        return vectors.astype(np.float32)

    def _term_feature(self, word: str) -> tuple[int, float]:
        """Return the bucket and signed weight that a lower-cased word's index term adds (a
        weight of 0 where it has none: a stop word)."""
        term = index_term(word)
        if not term:
            return 0, 0.0
        code = zlib.crc32(b"w\x00" + term.encode("utf-8"))
        return code % self._dimensions, WORD_WEIGHT if code & 0x10000 else -WORD_WEIGHT

    def _add_ngrams(self, vector: np.ndarray, data: bytes) -> None:
        raw = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
        for n in NGRAMS:
            if raw.shape[0] < n:
                continue
            count = raw.shape[0] - n + 1
            code = np.full(count, np.uint64(n), dtype=np.uint64)
            for j in range(n):
                code |= raw[j : j + count] << np.uint64(8 * (j + 1))
            mixed = _mix(code)
            buckets = (mixed >> np.uint64(33)) % np.uint64(self._dimensions)
            signs = np.where((mixed >> np.uint64(7)) & np.uint64(1), 1.0, -1.0)
            vector += np.bincount(buckets.astype(np.int64), signs, self._dimensions)


class _WordFeatures:
    """The words one ``embed_many`` call has met: each word's row in ``terms``, which holds the
    bucket and signed weight of its index term."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.terms: list[tuple[int, float]] = []


def _bucket(values: np.ndarray, dimensions: int) -> np.ndarray:
    """Return ``values % dimensions`` as int64 (a mask where the dimensions are a power of 2)."""
    if dimensions & (dimensions - 1) == 0:
        return (values & np.uint64(dimensions - 1)).astype(np.int64)
    return (values % np.uint64(dimensions)).astype(np.int64)


def _mix(code: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser: array arithmetic wraps modulo 2**64 by design.
    h = code * _MIX1
    h ^= h >> np.uint64(31)
    h *= _MIX2
    h ^= h >> np.uint64(29)
    return h


def embed_all(embedder: Embedder, texts: Sequence[str]) -> list[np.ndarray]:
    """Return the vector of each text: in one batch where the embedder has ``embed_many`` (an
    optional method: one call per text otherwise)."""
    many = getattr(embedder, "embed_many", None)
    if many is None or not texts:
        return [embedder.embed(text) for text in texts]
    return list(many(texts))


VECTORS_TABLE = "ix_vec"
ANN_TABLE = "ix_ann"  # the HNSW graphs of runtime.indexes.ann, per session


class VectorCache:
    """Block vectors by (embedder key, block id): process memory first, then the store."""

    def __init__(self, kv: Engine) -> None:
        self._kv = EngineRef(kv, "vector cache")
        self.stored = not kv.readonly  # a read-only store may not have the table
        self.lock = threading.Lock()
        self._memory: dict[tuple[str, str], np.ndarray] = {}

    @property
    def kv(self) -> Engine:
        return self._kv()

    def vectors(self, embedder: Embedder, ids: Sequence[str], bodies: Any) -> np.ndarray:
        """Return the vector of each block id, one row each; ``bodies(ids)`` gives the texts of
        misses."""
        key = embedder.key
        with self.lock:
            found: list[np.ndarray | None] = [self._memory.get((key, bid)) for bid in ids]
        missing = [i for i, vec in enumerate(found) if vec is None]
        if len(missing) == len(ids) and ids:
            # None in memory (a cold store): read them as one matrix, not one array per block.
            loaded = self._load_matrix(embedder, ids)
            if loaded is not None:
                return loaded
        if missing:
            self._fill(embedder, ids, missing, found, bodies)
        return np.stack([vec for vec in found if vec is not None])

    def _load_matrix(self, embedder: Embedder, ids: Sequence[str]) -> np.ndarray | None:
        """Return the stored vectors of ``ids`` as one read-only matrix, remembered per row;
        None when some are not stored (or not of the embedder's size)."""
        stored = self._load(embedder.key.encode(), ids)
        if any(raw is None for raw in stored):
            return None
        joined = b"".join(cast(list[bytes], stored))
        if len(joined) != len(ids) * embedder.dimensions * 4:
            return None
        matrix = np.frombuffer(joined, dtype=np.float32).reshape(len(ids), embedder.dimensions)
        with self.lock:
            if len(self._memory) > _MAX_CACHED:
                self._memory.clear()
            key = embedder.key
            self._memory.update(((key, bid), row) for bid, row in zip(ids, matrix, strict=True))
        return matrix

    def _fill(
        self,
        embedder: Embedder,
        ids: Sequence[str],
        missing: list[int],
        found: list[np.ndarray | None],
        bodies: Any,
    ) -> None:
        suffix = embedder.key.encode()
        stored = self._load(suffix, [ids[i] for i in missing])
        fresh = [i for i, raw in zip(missing, stored, strict=True) if raw is None]
        texts = bodies([ids[i] for i in fresh]) if fresh else []
        made = dict(zip(fresh, embed_all(embedder, texts), strict=True))
        for i, raw in zip(missing, stored, strict=True):
            found[i] = made[i] if raw is None else np.frombuffer(raw, dtype=np.float32)
        self._save(suffix, [(ids[i], made[i]) for i in fresh])
        with self.lock:
            if len(self._memory) > _MAX_CACHED:
                self._memory.clear()
            for i in missing:
                vec = found[i]
                assert vec is not None
                self._memory[(embedder.key, ids[i])] = vec

    def _load(self, suffix: bytes, ids: Sequence[str]) -> list[bytes | None]:
        if not self.stored:
            return [None] * len(ids)
        keys = [bytes.fromhex(b) + suffix for b in ids]
        return self.kv.read(lambda t: t.get_many(VECTORS_TABLE, keys))

    def _save(self, suffix: bytes, pairs: Sequence[tuple[str, np.ndarray]]) -> None:
        if not self.stored or not pairs:
            return
        items = [(bytes.fromhex(bid) + suffix, vec.astype(np.float32).tobytes())
                 for bid, vec in pairs]  # fmt: skip

        def save(t: Tables) -> None:
            t.put_many(VECTORS_TABLE, items)

        self.kv.write(save)


_caches = EngineCache(VectorCache)


def vector_cache(kv: Engine) -> VectorCache:
    """Return the process-wide vector cache of a store's engine."""
    return _caches.get(kv)


def vector_table(snap: Snapshot, embedder: Embedder, seqs: np.ndarray) -> VectorTable:
    """Return the session's vector table, holding the vectors of at least ``seqs``."""
    key = f"vectors:{embedder.key}"
    with snap.reader.lock:
        table = snap.cache.extras.get(key)
        if table is None:
            table = snap.cache.extras[key] = VectorTable(embedder.dimensions)
    missing = table.missing(seqs)
    if not missing.shape[0]:
        return table
    parts, rest = vectorchunks.load(snap, embedder, missing)  # a large cold session's chunks
    if rest.shape[0]:
        hexed = snap.records["id"][rest].tobytes().hex()
        ids = [hexed[n : n + 64] for n in range(0, len(hexed), 64)]
        parts.append((rest, vector_cache(snap.reader.kv).vectors(embedder, ids, _bodies(snap))))
    if len(parts) == 1:
        table.add(*parts[0])
    else:  # one add: the table's first fill takes the matrix as it is
        table.add(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    if rest.shape[0]:
        vectorchunks.save(snap, embedder, table, rest)
    return table


def _bodies(snap: Snapshot) -> Any:
    def bodies(ids: Sequence[str]) -> list[str]:
        return [block.body for block in snap.store.get_many(list(ids))]

    return bodies


DOT_ROWS = 1_024  # rows multiplied at once by ``exact_dots``: its float64 copy stays in cache


def exact_dots(rows: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Return each float32 row's dot product with ``target`` as float64, the same bits on any
    machine: each product is exact in float64 (24-bit by 24-bit mantissas) and each row's sum
    is numpy's pairwise summation, whose order is fixed. BLAS (``@``) and ``einsum`` choose
    their kernels, and so their order of summation and their use of fused multiply-adds, by
    the CPU: the same vectors scored differently in the last bits on another machine, and a
    plan recording those scores was not the same bytes there."""
    vector = np.asarray(target, dtype=np.float64)
    out = np.empty(rows.shape[0], dtype=np.float64)
    for start in range(0, rows.shape[0], DOT_ROWS):
        part = rows[start : start + DOT_ROWS].astype(np.float64)
        part *= vector
        part.sum(axis=1, out=out[start : start + DOT_ROWS])
    return out


class VectorTable:
    """Vectors of the seqs of one session seen so far: a row index by seq into a growing matrix
    (only seqs that were candidates take memory, not the whole session)."""

    def __init__(self, dimensions: int) -> None:
        self.lock = threading.Lock()
        self.row = np.full(0, -1, dtype=np.int64)
        self.matrix = np.zeros((0, dimensions), dtype=np.float32)
        self.used = 0

    def missing(self, seqs: np.ndarray) -> np.ndarray:
        with self.lock:
            if seqs.shape[0] and int(seqs.max()) >= self.row.shape[0]:
                grown = np.full(max(int(seqs.max()) + 1, 2 * self.row.shape[0]), -1, np.int64)
                grown[: self.row.shape[0]] = self.row
                self.row = grown
            wanted = seqs[self.row[seqs] < 0]
            if wanted.shape[0] > 1 and not bool(np.all(wanted[1:] > wanted[:-1])):
                wanted = np.unique(wanted)  # already sorted and distinct: the usual case
            return wanted

    def add(self, seqs: np.ndarray, vectors: np.ndarray) -> None:
        with self.lock:
            keep = self.row[seqs] < 0  # another thread may have added some meanwhile
            if not keep.all():
                seqs, vectors = seqs[keep], vectors[keep]
            need = self.used + seqs.shape[0]
            if self.used == 0 and need > self.matrix.shape[0]:
                # The first fill (a cold session): take the rows as they are, one copy at most.
                # Rows are never written in place, so a read-only matrix serves; the next add
                # grows into a new one.
                self.matrix = np.ascontiguousarray(vectors, dtype=np.float32)
                self.row[seqs] = np.arange(need)
                self.used = need
                return
            if need > self.matrix.shape[0]:
                size = max(need, 2 * self.matrix.shape[0])
                grown = np.zeros((size, self.matrix.shape[1]), np.float32)
                grown[: self.used] = self.matrix[: self.used]
                self.matrix = grown
            self.matrix[self.used : need] = vectors
            self.row[seqs] = np.arange(self.used, need)
            self.used = need

    def scores(self, seqs: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Return the dot product of each of ``seqs``' vectors with ``target`` (float64, the
        same bits on every machine: ``exact_dots``, row by row, so the same whichever rows are
        multiplied with them).

        The product runs outside the lock: rows below ``used`` are never written again (a
        growing table moves to a new matrix), so the matrix and count read under it stay
        valid."""
        with self.lock:
            rows = self.row[seqs]
            matrix, used = self.matrix, self.used
            few = rows.shape[0] * 4 < used
            picked = matrix[rows] if few else None  # a copy: a few rows of many
        if picked is not None:
            return exact_dots(picked, target)
        # Most of the table: one product over it beats copying the rows out first.
        return exact_dots(matrix[:used], target)[rows]

    def rows(self, seqs: np.ndarray) -> np.ndarray:
        """Return a copy of the vectors of ``seqs`` (all of them held), one row each."""
        with self.lock:
            return self.matrix[self.row[seqs]]
