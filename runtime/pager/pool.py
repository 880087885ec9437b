"""The candidate pool of one page: which blocks are considered and how each one scores.

Owns: running the retriever stack, the union that forms the pool (required, pinned, standing,
each retriever's best, the neighbours of the most relevant, tool partners), and the merged
score with its per-retriever breakdown.

Invariants:
- The pool is built from seqs, so it never lists a block of the session twice at the same seq;
  the same block at two seqs is two candidates (duplicates are decided by selection).
- Every block of the session is scored by every active retriever, over numpy arrays (cost
  linear in the session's size; no fixed count of candidates). A block is a candidate when a
  retriever proposes it or scores it above 0, when it is fixed (required, pinned, standing), or
  when it is the tool partner of a candidate.
- Selection's Python stage sees the fixed seqs, the best candidates by merged score (ties to
  the newer seq) until their tokens reach the ``Horizon`` (two input budgets, at least 64
  candidates), and the tool partners of those. The rest (``Beyond``) stay arrays: selection
  works in merged-score order, so with two budgets of better blocks ahead of them the prompt is
  full before it would reach them; the plan counts them and lists them on demand.
- Scores are those of ``runtime.pager.retrievers``: normalised per retriever over the
  candidates (blocks from outside the session included), merged as a weighted mean, so every
  merged score is in [0, 1] and every candidate has a score from every retriever in the stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

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
    beyond: Beyond | None = None  # scored blocks past the horizon (None: every one is kept)

    def breakdowns(self) -> list[tuple[tuple[str, float], ...]]:
        """Return each candidate's (retriever, normalised score) pairs, sorted by name."""
        return self.breakdowns_of(self.seqs)

    def breakdowns_of(
        self, seqs: Sequence[int] | np.ndarray
    ) -> list[tuple[tuple[str, float], ...]]:
        """Return the breakdown of each of ``seqs`` (an empty one for a seq not in the pool)."""
        return breakdowns(self.seqs, self.names, self.normalised, seqs)


def breakdowns(
    have: np.ndarray, names: Sequence[str], normalised: np.ndarray, seqs: Sequence[int] | np.ndarray
) -> list[tuple[tuple[str, float], ...]]:
    """Return (retriever, normalised score) pairs by name for each of ``seqs``, read from the
    columns of ``normalised`` (one per seq of ``have``, ascending); empty for a seq not there."""
    want = np.asarray(seqs, dtype=np.int64)
    if have.shape[0] == 0 or not names:
        return [()] * want.shape[0]
    order = sorted(range(len(names)), key=names.__getitem__)
    named = [names[i] for i in order]
    at = np.clip(np.searchsorted(have, want), 0, have.shape[0] - 1)
    found = (have[at] == want).tolist()
    rows = normalised[order][:, at].T.tolist()
    return [
        tuple(zip(named, row, strict=True)) if ok else ()
        for row, ok in zip(rows, found, strict=True)
    ]


@dataclass(frozen=True)
class Spread:
    """The neighbour retriever: a kernel over seq distance 1, 2, ... and its weight."""

    kernel: tuple[float, ...]
    weight: float

    @property
    def active(self) -> bool:
        return self.weight > 0 and any(k > 0 for k in self.kernel)


@dataclass(frozen=True)
class Horizon:
    """How far down the merged order candidates reach selection's Python stage.

    Every block of the session is scored; selection then looks at the fixed seqs, the best by
    merged score until their estimated tokens reach ``tokens`` (at least ``least`` of them, at
    most ``cap`` when the caller set one), and their tool partners. Blocks past the horizon are
    decided from the arrays (``Beyond``): with ``tokens`` several budgets' worth of better
    blocks ahead of them, the prompt is full before selection would reach them.
    """

    tokens: int
    cost: Callable[[np.ndarray], np.ndarray]  # seqs -> their tokens (int64)
    least: int = 64
    cap: int | None = None


@dataclass(frozen=True)
class Beyond:
    """The scored blocks of the session past the horizon: arrays, made into objects on demand.

    It holds positions in the pool every block was scored in, not copies: a plan lists these
    blocks only when asked (``PagePlan.every_omission``), and cutting the (retrievers x session)
    score matrix on every page cost more than the rest of the page at 100,000 blocks.
    """

    scored: Pool  # the pool before the horizon cut
    at: np.ndarray  # positions in ``scored``, ascending

    @property
    def count(self) -> int:
        return int(self.at.shape[0])

    @property
    def seqs(self) -> np.ndarray:
        return self.scored.seqs[self.at]

    @property
    def merged(self) -> np.ndarray:
        return self.scored.merged[self.at]

    @property
    def names(self) -> tuple[str, ...]:
        return self.scored.names

    @property
    def normalised(self) -> np.ndarray:
        """(len(names), count) normalised scores."""
        return self.scored.normalised[:, self.at]

    def only(self, keep: np.ndarray) -> Beyond:
        """Return the blocks of this one that ``keep`` (a mask over them) marks."""
        return Beyond(self.scored, self.at[keep])


def build_pool(
    query: RetrievalQuery,
    stack: Sequence[Weighted],
    neighbours: Spread,
    fixed: np.ndarray,
    horizon: Horizon,
) -> Pool:
    """Run ``stack``, score every block of the session, keep the horizon for selection."""
    active = [w for w in stack if w.weight > 0]
    rankings = [run_retriever(w, query) for w in active]
    every = query.snapshot.present().astype(np.int64)
    pool = _score(every, active, rankings, neighbours)
    # A candidate is a block some retriever proposes or scores, a fixed one, or a partner.
    # When every block scores (recency on, mostly), proposals add none: they are not read.
    candidate = pool.merged > 0
    if not candidate.all():
        proposed = among(every, np.concatenate([fixed, *(r.top.seqs for r in rankings)]))
        candidate = _with_partners(query, every, proposed | candidate)
    return _best(query, _cut(pool, candidate), fixed, horizon)


def _best(query: RetrievalQuery, pool: Pool, fixed: np.ndarray, horizon: Horizon) -> Pool:
    """Keep the ``fixed`` seqs, the best by merged score up to the horizon, and their partners."""
    size = pool.seqs.shape[0]
    top = _horizon(query, pool, horizon)
    if size <= top.shape[0] + fixed.shape[0]:
        return pool
    keep = np.zeros(size, dtype=bool)
    keep[top] = True
    keep |= among(pool.seqs, fixed)
    keep = _with_partners(query, pool.seqs, keep)
    beyond = Beyond(pool, np.flatnonzero(~keep))
    return replace(_cut(pool, keep), beyond=beyond)


def _with_partners(query: RetrievalQuery, seqs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Return ``keep`` with the tool partners of the kept seqs added."""
    partners = query.snapshot.records["pair"][seqs[keep]].astype(np.int64) - 1
    return keep | among(seqs, partners[(partners >= 0) & (partners < query.upto)])


def among(seqs: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Return which of ``seqs`` are in ``wanted`` (both >= 0), by a dense mark: linear."""
    if seqs.shape[0] == 0 or wanted.shape[0] == 0:
        return np.zeros(seqs.shape[0], dtype=bool)
    mark = np.zeros(max(int(seqs.max()), int(wanted.max())) + 1, dtype=bool)
    mark[wanted] = True
    return mark[seqs]


def _cut(pool: Pool, keep: np.ndarray) -> Pool:
    if keep.all():
        return pool
    at = np.flatnonzero(keep)  # one scan of the mask, then gathers (few are kept, mostly)
    return Pool(
        pool.seqs[at], pool.names, pool.normalised[:, at], pool.merged[at],
        pool.recency_led[at], pool.outside,
    )  # fmt: skip


def _horizon(query: RetrievalQuery, pool: Pool, horizon: Horizon) -> np.ndarray:
    """Return the positions of the best candidates, best first, until their tokens reach the
    horizon (the first one that reaches it included; at least ``least``, at most ``cap``)."""
    size = pool.seqs.shape[0]
    stats = query.snapshot.stats
    average = 1.5 * stats.total_length / max(stats.n_docs, 1) + 8
    guess = horizon.least + int(0.5 * horizon.tokens / average)  # a first guess; doubled if short
    while True:
        guess = min(guess, size)
        top = _top(pool.seqs, pool.merged, guess)
        reached = np.cumsum(horizon.cost(pool.seqs[top])) >= horizon.tokens
        if reached.any() or guess >= size:
            count = int(np.argmax(reached)) + 1 if reached.any() else size
            break
        guess *= 2
    count = max(count, horizon.least)
    if horizon.cap is not None:
        count = min(count, horizon.cap)
    if count > top.shape[0]:
        top = _top(pool.seqs, pool.merged, count)
    return top[:count]


def _top(seqs: np.ndarray, merged: np.ndarray, count: int) -> np.ndarray:
    """Return the positions of the ``count`` best by merged score (ties to the newer seq), best
    first: a linear partition, then a sort of the survivors and every tie at the cut."""
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    at = np.arange(seqs.shape[0])
    if seqs.shape[0] > count:
        cut = merged[np.argpartition(-merged, count - 1)[count - 1]]
        at = at[merged >= cut]
    return at[np.lexsort((-seqs[at], -merged[at]))[:count]]


def _score(
    seqs: np.ndarray,
    active: Sequence[Weighted],
    rankings: Sequence[Ranking],
    neighbours: Spread,
) -> Pool:
    outside_ids = sorted({bid for r in rankings for bid, _ in r.outside})
    rows, outside_rows, weights = [], [], []
    for w, ranking in zip(active, rankings, strict=True):
        raw = ranking.score(seqs)
        if outside_ids:
            given = dict(ranking.outside)
            raw = np.concatenate([raw, [given.get(b, 0.0) for b in outside_ids]])
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
    total = float(sum(weights))
    merged = _combine(weight, matrix) / total if total > 0 else np.zeros(seqs.shape[0])
    led = _combine(weight[~relevant], matrix[~relevant]) > _combine(
        weight[relevant], matrix[relevant]
    )
    outside = _outside(outside_ids, outside_rows, names, weight)
    return Pool(seqs, tuple(names), matrix, merged, led, outside)


def _combine(weight: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Return ``weight @ matrix`` (one weight a row), summed row after row in order: the same
    bits on any machine (a BLAS product's order and fused multiply-adds depend on the CPU)."""
    out = np.zeros(matrix.shape[1], dtype=np.float64)
    for w, row in zip(weight, matrix, strict=True):
        out += w * row
    return out


def _weighted(
    rows: Sequence[np.ndarray], weights: Sequence[float], relevant: np.ndarray, size: int
) -> np.ndarray:
    total, weight = np.zeros(size), 0.0
    for row, w, rel in zip(rows, weights, relevant, strict=True):
        if rel:
            total += w * row
            weight += w
    return total / weight if weight > 0 else total


def _sum_products(weights: Sequence[float], values: Sequence[float]) -> float:
    out = 0.0
    for w, v in zip(weights, values, strict=True):
        out += w * v
    return out


def _outside(
    ids: Sequence[str], rows: Sequence[np.ndarray], names: Sequence[str], w: np.ndarray
) -> tuple[OutsideScore, ...]:
    out = []
    for i, block_id in enumerate(ids):
        values = [float(row[i]) for row in rows]
        total = float(sum(w.tolist()))
        merged = _sum_products(w.tolist(), values) / total if total > 0 else 0.0
        out.append(OutsideScore(block_id, tuple(sorted(zip(names, values, strict=True))), merged))
    return tuple(out)
