"""Retrievers: each scores a session's blocks for a task; the pager merges them by weight.

Owns: the ``Retriever`` protocol for user code, the built-ins (recency, BM25, lexical,
embedding, source, pinned) that read the session index, and the neighbour spread.

Invariants:
- A retriever proposes at most ``query.limit`` candidates (its best, ties broken by newer seq)
  and can score any candidate another retriever proposed, so every candidate gets a score from
  every retriever in the stack (0 when it has nothing to say).
- Scores are normalised per retriever over the candidate pool by dividing by the pool's best
  score ("max normalisation"): each retriever's best candidate scores 1, zero stays zero, and a
  retriever returning [0, 100] weighs exactly as much as one returning [0, 1]. The merged score
  is the weighted mean of the normalised scores, so it lies in [0, 1].
- A user retriever is added to the stack (``PageRequest.extra_retrievers``); it never replaces
  the built-ins. It returns (block id, score >= 0) pairs; a block outside the session is a
  "global fact" candidate. A negative, infinite or NaN score is an error naming the retriever.
- Built-in scores: recency decays with age in seqs (half-life: 2^(-age/h); linear: 1 - age/span,
  newest = 1); BM25 is rank_bm25's Okapi score divided by the session's best (``runtime.indexes.bm25``);
  lexical is the Jaccard overlap of query and block term sets; embedding is the cosine similarity
  clamped at 0; source counts the query terms that name the block's provenance source (a
  speaker, a tool); pinned is 1 for pinned blocks.
- Neighbours: relevance spreads along the session, because evidence clusters (an answer follows
  its question). A candidate's neighbour score is ``sum_k kernel[k] * (R(seq-k-1) + R(seq+k+1))``
  where R is the merged relevance of the other relevance retrievers (every block of the session
  is scored; 0 where no block is), divided by its largest possible value ``2 * sum(kernel)``
  rather than by the pool's best, so the spread keeps the scale of the relevance it spreads. On LoCoMo it is worth about 8 points of evidence
  recall at 4,000 tokens (bench/bench_locomo.py).
"""

from __future__ import annotations

import decimal
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np

from runtime.config import RecencyMode, RetrieverSettings
from runtime.errors import InvalidInput
from runtime.indexes import ann
from runtime.indexes.bm25 import K1, B, Postings, dense_scores
from runtime.indexes.embeddings import Embedder, HashingEmbedder, vector_table
from runtime.indexes.sessionindex import SOURCE_PREFIX
from runtime.indexes.snapshot import Snapshot
from runtime.storage.interface import BlockStore

EMPTY = np.zeros(0, dtype=np.int64)
NEIGHBOUR_KERNEL = (0.5, 0.5, 0.25, 0.25)


@dataclass(frozen=True)
class RetrievalQuery:
    """What a retriever sees: the store, the session as of ``upto``, the task and its terms."""

    store: BlockStore
    session: str
    task: str
    terms: tuple[str, ...]
    snapshot: Snapshot
    limit: int

    @property
    def upto(self) -> int:
        return self.snapshot.upto

    @cached_property
    def postings(self) -> list[Postings]:
        return self.snapshot.postings(self.terms)


@runtime_checkable
class Retriever(Protocol):
    """A user-written retriever: ``name`` and ``retrieve`` returning (block id, score) pairs."""

    name: str

    def retrieve(self, query: RetrievalQuery) -> Sequence[tuple[str, float]]: ...


@dataclass(frozen=True)
class Scores:
    """Scores of some seqs (int64) of the session."""

    seqs: np.ndarray
    values: np.ndarray

    def best(self, limit: int) -> Scores:
        """Return the ``limit`` highest positive scores, ties to the newer seq."""
        keep = self.values > 0
        seqs, values = self.seqs[keep], self.values[keep]
        if values.shape[0] > limit:
            # Partition first (linear), then sort only the survivors and every tie at the cut,
            # so the result is the same total order as a full sort.
            cut = values[np.argpartition(-values, limit - 1)[limit - 1]]
            seqs, values = seqs[values >= cut], values[values >= cut]
        order = np.lexsort((-seqs, -values))[:limit]
        return Scores(seqs[order], values[order])


class Ranking:
    """One retriever's answer to one query: its proposals and a scorer for any seq.

    The proposals may be given as a function that finds them, called on first use: a built-in
    retriever scores every block anyway, so the pool reads its proposals only when some block
    scored 0 everywhere (a partial sort of the whole session per retriever otherwise).
    """

    def __init__(
        self,
        top: Scores | Callable[[], Scores],
        scorer: Any = None,
        outside: Sequence[Any] = (),
        every: Scores | None = None,
    ) -> None:
        self._top = top
        self._scorer = scorer
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self.outside = tuple(outside)  # (block id, score) for blocks not in the session
        self._every = every  # scores the retriever already has for these seqs (no second scan)

    @property
    def top(self) -> Scores:
        """Return the proposals: the retriever's best, ties to the newer seq."""
        if not isinstance(self._top, Scores):
            self._top = self._top()
        return self._top

    def score(self, seqs: np.ndarray) -> np.ndarray:
        every = self._every
        if every is not None and np.array_equal(every.seqs, seqs):
            return np.asarray(every.values, dtype=np.float64)
        if self._scorer is not None:
            return np.asarray(self._scorer(seqs), dtype=np.float64)
        if self._sorted is None:
            order = np.argsort(self.top.seqs, kind="stable")
            self._sorted = (self.top.seqs[order], self.top.values[order])
        return lookup(*self._sorted, seqs)


def lookup(sorted_seqs: np.ndarray, values: np.ndarray, seqs: np.ndarray) -> np.ndarray:
    """Return the value of each of ``seqs`` (0 where absent); ``sorted_seqs`` ascending."""
    if sorted_seqs.shape[0] == 0 or seqs.shape[0] == 0:
        return np.zeros(seqs.shape[0], dtype=np.float64)
    at = np.clip(np.searchsorted(sorted_seqs, seqs), 0, sorted_seqs.shape[0] - 1)
    return np.where(sorted_seqs[at] == seqs, values[at], 0.0)


def _dense_ranking(dense: np.ndarray, limit: int) -> Ranking:
    """Rank from scores of every seq (0 = no score): best ``limit``, and O(1) lookups."""
    seqs = np.flatnonzero(dense > 0)
    return Ranking(
        lambda: Scores(seqs.astype(np.int64), dense[seqs]).best(limit), lambda s: dense[s]
    )


class IndexedRetriever:
    """A built-in retriever reading the session index."""

    name = ""
    relevance = True

    def rank(self, query: RetrievalQuery) -> Ranking:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


def halving(ages: np.ndarray, half_life: float) -> np.ndarray:
    """Return ``0.5 ** (ages / half_life)`` for whole ages, the same bits on any machine.

    numpy's ``power`` runs SVML's on AVX-512 CPUs and the C library's elsewhere, which differ
    in the last bits; here it is powers of one ratio (decimal arithmetic, so correctly rounded
    everywhere), multiplied in order, and for a whole ``half_life`` exact halvings (``ldexp``)
    of the powers below it. Past ``half_life * 1_100`` entries it is 0, as the float would be."""
    ages = np.asarray(ages, dtype=np.int64)
    if ages.shape[0] == 0:
        return np.zeros(0)
    reach = min(int(ages.max()), math.ceil(half_life * 1_100))
    whole = float(half_life).is_integer() and half_life <= reach
    size = int(half_life) if whole else reach + 1
    table = np.full(size, _halving_ratio(half_life))
    table[0] = 1.0
    np.multiply.accumulate(table, out=table)
    out = np.zeros(ages.shape[0])
    inside = ages <= reach
    kept = ages[inside]
    if whole:
        steps, rest = np.divmod(kept, size)
        out[inside] = np.ldexp(table[rest], -steps)
    else:
        out[inside] = table[kept]
    return out


@functools.lru_cache(maxsize=64)
def _halving_ratio(half_life: float) -> float:
    with decimal.localcontext() as context:
        context.prec = 40
        return float(decimal.Decimal(0.5) ** (1 / decimal.Decimal(half_life)))


@dataclass(frozen=True)
class RecencyRetriever(IndexedRetriever):
    mode: RecencyMode = RecencyMode.HALF_LIFE
    half_life: float = 20.0
    name = "recency"
    relevance = False

    def rank(self, query: RetrievalQuery) -> Ranking:
        present = query.snapshot.present()
        if present.shape[0] == 0:
            return Ranking(Scores(EMPTY, np.zeros(0)))
        newest, oldest = int(present[-1]), int(present[0])

        def score(seqs: np.ndarray) -> np.ndarray:
            age = (newest - seqs).astype(np.float64)
            if self.mode is RecencyMode.LINEAR:
                return 1.0 - age / max(newest - oldest, 1)
            return halving(newest - seqs, self.half_life)

        tail = present[-query.limit :][::-1].astype(np.int64)
        return Ranking(Scores(tail, score(tail)), score, every=self._every(query, score))

    def _every(self, query: RetrievalQuery, score: Any) -> Scores:
        """Return the score of every present seq, remembered per snapshot: recency reads no
        query, so one session state gives one vector (read-only, as every page shares it)."""
        snap = query.snapshot
        key = (snap.meta.gen, snap.meta.rgen, snap.upto, self.mode, self.half_life)
        held = snap.cache.extras.get("recency")
        if held is not None and held[0] == key:
            return cast(Scores, held[1])
        every = snap.present().astype(np.int64)
        values = score(every)
        values.flags.writeable = False
        scores = Scores(every, values)
        snap.cache.extras["recency"] = (key, scores)
        return scores

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode.value, "half_life": self.half_life}


@dataclass(frozen=True)
class Bm25Retriever(IndexedRetriever):
    k1: float = K1
    b: float = B
    name = "bm25"

    def rank(self, query: RetrievalQuery) -> Ranking:
        snap, postings = query.snapshot, query.postings
        floor = snap.idf_floor(postings)
        dlen = snap.records["dlen"]
        raw = dense_scores(snap.stats, postings, dlen, floor, k1=self.k1, b=self.b)
        values = np.maximum(raw, 0.0)
        best = float(values.max()) if values.shape[0] else 0.0
        return _dense_ranking(values / best if best > 0 else values, query.limit)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "k1": self.k1, "b": self.b}


@dataclass(frozen=True)
class LexicalRetriever(IndexedRetriever):
    name = "lexical"

    def rank(self, query: RetrievalQuery) -> Ranking:
        shared = np.zeros(query.upto, dtype=np.float64)
        for p in query.postings:
            shared[p.seqs] += 1.0
        distinct = query.snapshot.records["uniq"].astype(np.float64)
        union = np.maximum(len(query.terms) + distinct - shared, 1.0)
        return _dense_ranking(shared / union, query.limit)


@dataclass(frozen=True)
class EmbeddingRetriever(IndexedRetriever):
    """Cosine similarity to the task: an exact scan of a small session, an ANN index of a large one.

    Below ``exact_below`` present blocks (or when the pool asks for more than an eighth of the
    session) every block is scored by one matrix-vector product over its cached vectors
    (``runtime.indexes.embeddings``). Above, the HNSW segments of ``runtime.indexes.ann`` propose
    ``limit`` seqs each, the seqs past the last full chunk are added unsearched, and all of them
    are rescored exactly, so the answer is the exact scan's wherever the graph found the block.
    Neither path has a size cut-off: a retriever that stopped proposing past some session size
    would silently lose the newest evidence.
    """

    embedder: Embedder = field(default_factory=HashingEmbedder)
    exact_below: int = ann.CHUNK
    chunk: int = ann.CHUNK
    name = "embedding"

    def rank(self, query: RetrievalQuery) -> Ranking:
        if not query.task.strip():
            return Ranking(Scores(EMPTY, np.zeros(0)))
        target = self.embedder.embed(query.task).astype(np.float32)
        snap = query.snapshot
        every = snap.present().astype(np.int64)
        n = every.shape[0]
        exact = n < self.exact_below or query.limit * 8 > n

        def score(seqs: np.ndarray) -> np.ndarray:
            if seqs.shape[0] == 0:
                return np.zeros(0)
            table = vector_table(snap, self.embedder, seqs)
            raw = table.scores(seqs, target)
            return np.maximum(raw, 0.0)

        if exact:
            scored = Scores(every, score(every))
            return Ranking(lambda: scored.best(query.limit), score, every=scored)
        # The graphs' proposals and the unsearched tail, rescored exactly. A block neither found
        # nor in the tail scores 0 for this retriever, in the pool and in its reasons alike.
        found = ann.candidates(snap, self.embedder, target, query.limit, self.chunk)
        # Both ascending and disjoint (the graphs hold only seqs below ``covered``, the tail only
        # seqs from it), so their union is their concatenation: no sort of a tail of up to a
        # chunk's seqs on every page.
        tail = every[np.searchsorted(every, ann.covered(snap.upto, self.chunk)) :]
        found = np.concatenate([found, tail])
        known = Scores(found, score(found))

        def lookup_known(seqs: np.ndarray) -> np.ndarray:
            return lookup(known.seqs, known.values, seqs)

        return Ranking(lambda: known.best(query.limit), lookup_known)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "embedder": self.embedder.key}


@dataclass(frozen=True)
class SourceRetriever(IndexedRetriever):
    """Blocks whose provenance source a query term names (a speaker, a tool, a document).

    A prior rather than a relevance signal: it is not spread to neighbours.
    """

    name = "source"
    relevance = False

    def rank(self, query: RetrievalQuery) -> Ranking:
        named = np.zeros(query.upto, dtype=np.float64)
        for p in query.snapshot.postings([SOURCE_PREFIX + t for t in query.terms]):
            named[p.seqs] += 1.0
        return _dense_ranking(named, query.limit)


@dataclass(frozen=True)
class PinnedRetriever(IndexedRetriever):
    """Blocks labelled "pinned" in their provenance, plus ``ids`` (full block ids)."""

    ids: tuple[str, ...] = ()
    name = "pinned"
    relevance = False

    def rank(self, query: RetrievalQuery) -> Ranking:
        seqs = [int(s) for s in query.snapshot.pinned()]
        seqs += [seq for bid in self.ids for seq in seqs_of(query, bid)]
        unique = np.unique(np.array(seqs, dtype=np.int64))
        return Ranking(Scores(unique, np.ones(unique.shape[0])))


@dataclass(frozen=True)
class Weighted:
    """A retriever and its weight in the merge."""

    retriever: Any  # IndexedRetriever or a user Retriever
    weight: float

    @property
    def name(self) -> str:
        return str(self.retriever.name)

    @property
    def relevance(self) -> bool:
        return bool(getattr(self.retriever, "relevance", True))

    def describe(self) -> dict[str, Any]:
        describe = getattr(self.retriever, "describe", None)
        about = describe() if callable(describe) else {"name": self.name, "custom": True}
        return {**about, "weight": self.weight}


# Used while ``RetrieverSettings`` has no entry for the source retriever.
SOURCE_WEIGHT = 0.3


def default_stack(settings: RetrieverSettings | None = None) -> tuple[Weighted, ...]:
    """Return the built-in retrievers with the weights and options of ``settings``."""
    s = settings or RetrieverSettings()
    source = getattr(s, "source", None)
    return (
        Weighted(RecencyRetriever(s.recency.mode, s.recency.half_life), s.recency.weight),
        Weighted(Bm25Retriever(s.bm25.k1, s.bm25.b), s.bm25.weight),
        Weighted(LexicalRetriever(), s.lexical.weight),
        Weighted(EmbeddingRetriever(HashingEmbedder(s.embedding.dimensions)), s.embedding.weight),
        Weighted(SourceRetriever(), SOURCE_WEIGHT if source is None else source.weight),
        Weighted(PinnedRetriever(), s.pinned.weight),
    )


def run_retriever(weighted: Weighted, query: RetrievalQuery) -> Ranking:
    """Return the ranking of one retriever (built-in or user) for ``query``."""
    retriever = weighted.retriever
    if isinstance(retriever, IndexedRetriever):
        return retriever.rank(query)
    if not isinstance(retriever, Retriever):
        raise InvalidInput(
            f"{retriever!r} is not a retriever: give it a `name` and a "
            "`retrieve(query) -> [(block_id, score), ...]` method"
        )
    return _listed(weighted.name, retriever.retrieve(query), query)


def _listed(name: str, pairs: Sequence[tuple[str, float]], query: RetrievalQuery) -> Ranking:
    inside: dict[int, float] = {}
    outside: dict[str, float] = {}
    for block_id, raw in pairs:
        value = float(raw)
        if not math.isfinite(value) or value < 0:
            raise InvalidInput(
                f"retriever {name!r} gave block {str(block_id)[:12]} the score {raw!r}; "
                "return finite scores >= 0 (the pager normalises them)"
            )
        seqs = seqs_of(query, str(block_id))
        for seq in seqs:
            inside[seq] = max(value, inside.get(seq, 0.0))
        if not seqs:
            full = query.store.resolve(str(block_id))
            outside[full] = max(value, outside.get(full, 0.0))
    ordered = sorted(inside)
    scores = Scores(np.array(ordered, dtype=np.int64), np.array([inside[s] for s in ordered]))
    return Ranking(scores.best(query.limit), None, sorted(outside.items()))


def seqs_of(query: RetrievalQuery, block_id: str) -> list[int]:
    """Return the seqs at which ``block_id`` sits in the query's snapshot."""
    if len(block_id) != 64:
        block_id = query.store.resolve(block_id)
    found = [seq for session, seq in query.store.memberships(block_id) if session == query.session]
    return [seq for seq in found if query.snapshot.has(seq)]


def normalise(values: np.ndarray) -> np.ndarray:
    """Divide by the largest value (max normalisation); all zeros stay zeros."""
    best = float(values.max()) if values.shape[0] else 0.0
    return values / best if best > 0 else np.zeros(values.shape[0])


def spread(seqs: np.ndarray, relevance: np.ndarray, kernel: Sequence[float]) -> np.ndarray:
    """Return each seq's neighbour score from the relevance of the seqs around it.

    ``seqs`` must be ascending; a neighbour that is not among them counts as 0.
    """
    out = np.zeros(seqs.shape[0], dtype=np.float64)
    if seqs.shape[0] == 0:
        return out
    # A dense copy of the relevance (zeros between the seqs and around them), so each
    # neighbour is one gather: linear in the span of the seqs.
    reach, low = len(kernel), int(seqs[0])
    dense = np.zeros(int(seqs[-1]) - low + 1 + 2 * reach, dtype=np.float64)
    at = seqs - low + reach
    dense[at] = relevance
    for k, weight in enumerate(kernel, start=1):
        for offset in (-k, k):
            out += weight * dense[at + offset]
    return out
