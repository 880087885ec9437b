"""BM25 (Okapi) over a session's blocks: the text analyser and the scoring arithmetic.

Owns: ``terms`` (how text becomes index terms), and ``score_postings``, which scores only the
documents that contain a query term, from postings kept by ``runtime.indexes.sessionindex``.

Invariants:
- Scores equal ``rank_bm25.BM25Okapi(corpus, k1, b, epsilon=0.25).get_scores(query)`` on the same
  term lists, document for document, where the corpus is every entry of the session with
  ``seq < upto`` in seq order (a block put twice is two documents, as rank_bm25 would see it),
  and the query is ``query_terms(task)``. The arithmetic is rank_bm25's, operation for
  operation, so the floats are bit-identical, with one exception: rank_bm25 floors a negative
  idf (a term in more than half the documents) at ``0.25 * average idf over the whole
  vocabulary``. That average is summed here from a histogram of document frequencies rather
  than word by word, so when a query term has a negative idf the scores agree to about 1e-12
  relative, not to the last bit.
- Documents that contain no query term score 0 and are not returned (rank_bm25 gives them 0).
- ``terms`` is deterministic and pure: lower-cased ``\\w+`` words, English stop words dropped,
  a light suffix stemmer (so "painting" meets "painted"), and very long words shortened to a
  prefix plus a digest so every term fits an LMDB key. Changing it changes every index: bump
  ``sessionindex.INDEX_VERSION`` (old indexes are then rebuilt on first read).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

import numpy as np

K1 = 1.2
B = 0.75
EPSILON = 0.25
MAX_TERM_CHARS = 32

_WORD = re.compile(r"\w+")
# (suffix, replacement), first match wins: a light English stemmer in the spirit of Porter's
# step 1-2 rules, enough to meet "painting" with "painted" and "studies" with "study".
_SUFFIXES = (
    ("ational", "ate"), ("tional", "tion"), ("ization", "ize"), ("iveness", "ive"),
    ("fulness", "ful"), ("ousness", "ous"), ("ies", "y"), ("ied", "y"), ("ying", "y"),
    ("ing", ""), ("edly", ""), ("ed", ""), ("ness", ""), ("ment", ""), ("ful", ""), ("ly", ""),
    ("es", ""), ("s", ""),
)  # fmt: skip
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can cannot could did do does doing don down during each few
    for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just let me more most my myself no nor not of off on once only or
    other ought our ours ourselves out over own same shall she should so some such than that the
    their theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves s t d ll m re ve""".split()  # noqa: SIM905 - a word list reads better
)


@functools.lru_cache(maxsize=65536)  # pure; a session's vocabulary repeats call after call
def _stem(word: str) -> str:
    """Return a word's stem (cached: a store's words repeat, and indexing stems every one)."""
    if not word.isalpha():
        return word  # identifiers, numbers and codes are kept exactly
    for suffix, replacement in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)] + replacement
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # running -> runn -> run
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]  # move, moved, moving -> mov
    return word


def _shorten(term: str) -> str:
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=6).hexdigest()
    return f"{term[: MAX_TERM_CHARS - len(digest) - 1]}~{digest}"


def _term(word: str) -> str:
    """Return the index term of a lower-cased word ("" for a stop word)."""
    if word in STOPWORDS:
        return ""
    term = _stem(word)
    return term if len(term) <= MAX_TERM_CHARS else _shorten(term)


# Each distinct word's term, worked out once per process (the words of a store repeat).
_terms: dict[str, str] = {}
TERM_CACHE_SIZE = 262_144


def forget_terms() -> None:
    """Empty the word cache (a benchmark measuring a cold writer calls it)."""
    _terms.clear()


def index_term(word: str) -> str:
    """Return the index term of one lower-cased word ("" for a stop word), from the cache."""
    term = _terms.get(word)
    if term is None:
        if len(_terms) > TERM_CACHE_SIZE:
            _terms.clear()
        term = _terms[word] = _term(word)
    return term


def terms(text: str) -> list[str]:
    """Return the index terms of ``text`` in order (repeats kept: they are term frequencies)."""
    words = _WORD.findall(text.lower())
    known = _terms
    if len(known) > TERM_CACHE_SIZE:
        known.clear()
    mine: dict[str, str] = {}  # this call's own copy: another thread may clear the cache
    for word in set(words):
        term = known.get(word)
        if term is None:
            term = known[word] = _term(word)
        mine[word] = term
    return [term for term in map(mine.__getitem__, words) if term]


def query_terms(text: str) -> list[str]:
    """Return the distinct terms of a query, in first-occurrence order."""
    return list(dict.fromkeys(terms(text)))


def raw_idf(n_docs: int, df: int) -> float:
    """Return rank_bm25's idf before its floor: ln(N - df + 0.5) - ln(df + 0.5).

    ``df`` is clamped to ``[0, N]``. Appends cannot push a df above N any more (the snapshot
    reads its histogram with the header it goes with, ``IndexReader.histogram``), but a session
    purged and filled again while a page reads it can: its new blocks reuse seqs below the
    snapshot's ``upto`` and LMDB reads of one page are separate transactions. That page then
    scores a mix of two corpora; the next page reads one. A clamp keeps it a page, not a crash.
    """
    df = min(max(df, 0), n_docs)
    return math.log(n_docs - df + 0.5) - math.log(df + 0.5)


def average_idf(n_docs: int, df_histogram: Sequence[tuple[int, int]]) -> float:
    """Return the mean raw idf over a vocabulary given as (document frequency, term count)."""
    vocabulary = sum(count for _, count in df_histogram)
    if vocabulary == 0:
        return 0.0
    total = math.fsum(count * raw_idf(n_docs, df) for df, count in df_histogram)
    return total / vocabulary


@dataclass(frozen=True)
class CorpusStats:
    """What BM25 needs about the whole corpus as of one point in the session."""

    n_docs: int
    total_length: int

    @property
    def avgdl(self) -> float:
        return self.total_length / self.n_docs


@dataclass(frozen=True)
class Postings:
    """One term's documents (by seq, ascending) and its frequency in each."""

    seqs: np.ndarray  # uint32
    tfs: np.ndarray  # uint32

    @property
    def df(self) -> int:
        return int(self.seqs.shape[0])


def term_idf(stats: CorpusStats, df: int, floor: float | None) -> float:
    """Return the idf rank_bm25 uses: the raw idf, or ``floor`` when the raw idf is negative."""
    idf = raw_idf(stats.n_docs, df)
    if idf < 0:
        if floor is None:
            raise ValueError("a negative idf needs the epsilon floor; pass average_idf * EPSILON")
        return floor
    return idf


class Weights(TypedDict, total=False):
    """BM25's free parameters for a caller that sets them (``K1`` and ``B`` otherwise)."""

    k1: float
    b: float


def score_postings(
    stats: CorpusStats,
    postings: Sequence[Postings],
    doc_length: np.ndarray,
    floor: float | None,
    **weights: Unpack[Weights],
) -> tuple[np.ndarray, np.ndarray]:
    """Return (seqs, scores) of every document containing a query term, seqs ascending.

    ``postings`` are in query order; ``doc_length[seq]`` is each document's term count.
    """
    dense = dense_scores(stats, postings, doc_length, floor, **weights)
    found = np.zeros(dense.shape[0], dtype=bool)
    for p in postings:
        found[p.seqs] = True
    seqs = np.flatnonzero(found)
    return seqs.astype(np.uint32), dense[seqs]


def dense_scores(
    stats: CorpusStats,
    postings: Sequence[Postings],
    doc_length: np.ndarray,
    floor: float | None,
    *,
    k1: float = K1,
    b: float = B,
) -> np.ndarray:
    """Return every document's score, indexed by seq (``len(doc_length)`` long)."""
    scores = np.zeros(doc_length.shape[0], dtype=np.float64)
    if stats.n_docs == 0:
        return scores
    avgdl = stats.avgdl
    for p in postings:
        if not p.df:
            continue
        tf = p.tfs.astype(np.float64)
        dl = doc_length[p.seqs].astype(np.float64)
        idf = term_idf(stats, p.df, floor)
        # rank_bm25's expression, operation for operation, added term by term in query order
        # as it does, so the floats come out identical. A term lists a document once, so the
        # fancy-indexed += adds exactly once per document.
        scores[p.seqs] += idf * (tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)))
    return scores


def needs_floor(stats: CorpusStats, postings: Sequence[Postings]) -> bool:
    """Return whether any query term has a negative idf (so the vocabulary average is needed)."""
    return any(p.df and raw_idf(stats.n_docs, p.df) < 0 for p in postings)
