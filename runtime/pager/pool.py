"""The candidate pool of one page: which blocks are considered and how each one scores.

Owns: running the retriever stack, the union that forms the pool (required, pinned, standing,
each retriever's best, the neighbours of the most relevant, tool partners), and the merged
score with its per-retriever breakdown.

Invariants:
- The pool is built from seqs, so it never lists a block of the session twice at the same seq;
  the same block at two seqs is two candidates (duplicates are decided by selection).
- Each retriever proposes at most ``limit`` seqs. Recency reads the tail, BM25 and lexical read
  postings; the embedding retriever is an exact scan of the session's cached vectors (one
  matrix-vector product), at every session size.
- The pool handed to selection is the fixed seqs (required, pinned, standing), the ``limit``
  best by merged score (ties to the newer seq), and the tool partners of those: selection works
  in merged-score order, so what is cut could only have been packed with a larger ``limit``.
- Scores are those of ``runtime.pager.retrievers``: normalised per retriever over the pool (blocks
  from outside the session included), merged as a weighted mean, so every merged score is in
  [0, 1] and every candidate has a score from every retriever in the stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runtime.pager.retrievers import (
    Ranking,
    RetrievalQuery,
    Weighted,
    normalise,
    run_retriever,
    spread,
)

NEIGHBOURS = "neighbours"


@dataclass(frozen=True)
class OutsideScore:
    """A block from outside the session that a retriever returned."""

    block_id: str
    scores: tuple[tuple[str, float], ...]
    merged: float


@dataclass(frozen=True)
class Pool:
    """The scored candidates of the session (by seq) and from outside it."""

    seqs: np.ndarray  # int64, ascending
    names: tuple[str, ...]  # score rows: the stack's retrievers, then "neighbours" if used
    normalised: np.ndarray  # (len(names), len(seqs)) in [0, 1]
    merged: np.ndarray
    recency_led: np.ndarray  # bool: non-relevance retrievers outweigh the relevance ones
    outside: tuple[OutsideScore, ...]

    def breakdowns(self) -> list[tuple[tuple[str, float], ...]]:
        """Return each candidate's (retriever, normalised score) pairs, sorted by name."""
        order = sorted(range(len(self.names)), key=self.names.__getitem__)
        names = [self.names[i] for i in order]
        rows = self.normalised[order].T.tolist() if order else [[]] * self.seqs.shape[0]
        return [tuple(zip(names, row, strict=True)) for row in rows]


@dataclass(frozen=True)
class Spread:
    """The neighbour retriever: a kernel over seq distance 1, 2, ... and its weight."""

    kernel: tuple[float, ...]
    weight: float

    @property
    def active(self) -> bool:
        return self.weight > 0 and any(k > 0 for k in self.kernel)


def build_pool(
    query: RetrievalQuery,
    stack: Sequence[Weighted],
    neighbours: Spread,
    fixed: np.ndarray,
) -> Pool:
    """Run ``stack``, score the union of its proposals with the ``fixed`` seqs, keep the best."""
    active = [w for w in stack if w.weight > 0]
    rankings = [run_retriever(w, query) for w in active]
    seqs = _union([fixed, *(r.top.seqs for r in rankings)])
    if neighbours.active:
        seqs = _with_neighbours(query, seqs, active, rankings, len(neighbours.kernel))
    seqs = _with_partners(query, seqs)
    return _best(query, _score(seqs, active, rankings, neighbours), fixed)


def _best(query: RetrievalQuery, pool: Pool, fixed: np.ndarray) -> Pool:
    """Keep the ``fixed`` seqs, the ``limit`` best by merged score, and their tool partners."""
    if pool.seqs.shape[0] <= query.limit + fixed.shape[0]:
        return pool
    order = np.lexsort((-pool.seqs, -pool.merged))[: query.limit]
    keep = np.zeros(pool.seqs.shape[0], dtype=bool)
    keep[order] = True
    keep |= np.isin(pool.seqs, fixed)
    partners = query.snapshot.records["pair"][pool.seqs[keep]].astype(np.int64) - 1
    keep |= np.isin(pool.seqs, partners[partners >= 0])
    return Pool(
        pool.seqs[keep], pool.names, pool.normalised[:, keep], pool.merged[keep],
        pool.recency_led[keep], pool.outside,
    )  # fmt: skip


def _union(parts: Sequence[np.ndarray]) -> np.ndarray:
    arrays = [np.asarray(p, dtype=np.int64) for p in parts if len(p)]
    return np.unique(np.concatenate(arrays)) if arrays else np.zeros(0, dtype=np.int64)


def _relevance(
    seqs: np.ndarray, active: Sequence[Weighted], rankings: Sequence[Ranking]
) -> np.ndarray:
    total, weight = np.zeros(seqs.shape[0]), 0.0
    for w, ranking in zip(active, rankings, strict=True):
        if w.relevance:
            total += w.weight * normalise(ranking.score(seqs))
            weight += w.weight
    return total / weight if weight > 0 else total


def _with_neighbours(
    query: RetrievalQuery,
    seqs: np.ndarray,
    active: Sequence[Weighted],
    rankings: Sequence[Ranking],
    reach: int,
) -> np.ndarray:
    relevance = _relevance(seqs, active, rankings)
    hits = seqs[relevance > 0]
    # The spread matters around the strongest hits; a quarter of the limit bounds the growth.
    order = np.lexsort((-hits, -relevance[relevance > 0]))[: max(16, query.limit // 4)]
    offsets = np.concatenate([np.arange(-reach, 0), np.arange(1, reach + 1)])
    near = (hits[order][:, None] + offsets[None, :]).ravel()
    near = near[(near >= 0) & (near < query.upto)]
    near = near[query.snapshot.records["kind"][near] != 255]
    return _union([seqs, near])


def _with_partners(query: RetrievalQuery, seqs: np.ndarray) -> np.ndarray:
    pair = query.snapshot.records["pair"][seqs].astype(np.int64) - 1
    partners = pair[(pair >= 0) & (pair < query.upto)]
    return _union([seqs, partners]) if partners.shape[0] else seqs


def _score(
    seqs: np.ndarray,
    active: Sequence[Weighted],
    rankings: Sequence[Ranking],
    neighbours: Spread,
) -> Pool:
    outside_ids = sorted({bid for r in rankings for bid, _ in r.outside})
    rows, outside_rows, weights = [], [], []
    for w, ranking in zip(active, rankings, strict=True):
        given = dict(ranking.outside)
        raw = np.concatenate([ranking.score(seqs), [given.get(b, 0.0) for b in outside_ids]])
        scaled = normalise(np.maximum(raw, 0.0))
        rows.append(scaled[: seqs.shape[0]])
        outside_rows.append(scaled[seqs.shape[0] :])
        weights.append(w.weight)
    names = [w.name for w in active]
    relevant = np.array([w.relevance for w in active], dtype=bool)
    if neighbours.active:
        relevance = _weighted(rows, weights, relevant, seqs.shape[0])
        # Scaled by its largest possible value (every neighbour fully relevant), not by the pool's
        # best, so the spread keeps the scale of the relevance it spreads.
        reach = 2 * sum(neighbours.kernel)
        rows.append(spread(seqs, relevance, neighbours.kernel) / reach)
        outside_rows.append(np.zeros(len(outside_ids)))
        weights.append(neighbours.weight)
        names.append(NEIGHBOURS)
        relevant = np.append(relevant, True)
    matrix = np.vstack(rows) if rows else np.zeros((0, seqs.shape[0]))
    weight = np.array(weights, dtype=np.float64)
    merged = (weight @ matrix) / weight.sum() if weight.sum() > 0 else np.zeros(seqs.shape[0])
    led = (weight[~relevant] @ matrix[~relevant]) > (weight[relevant] @ matrix[relevant])
    outside = _outside(outside_ids, outside_rows, names, weight)
    return Pool(seqs, tuple(names), matrix, merged, led, outside)


def _weighted(
    rows: Sequence[np.ndarray], weights: Sequence[float], relevant: np.ndarray, size: int
) -> np.ndarray:
    total, weight = np.zeros(size), 0.0
    for row, w, rel in zip(rows, weights, relevant, strict=True):
        if rel:
            total += w * row
            weight += w
    return total / weight if weight > 0 else total


def _outside(
    ids: Sequence[str], rows: Sequence[np.ndarray], names: Sequence[str], w: np.ndarray
) -> tuple[OutsideScore, ...]:
    out = []
    for i, block_id in enumerate(ids):
        values = [float(row[i]) for row in rows]
        merged = float(w @ np.array(values)) / float(w.sum()) if w.sum() > 0 else 0.0
        out.append(OutsideScore(block_id, tuple(sorted(zip(names, values, strict=True))), merged))
    return tuple(out)
