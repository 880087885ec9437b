"""Retrievers: built-in scores, normalisation and merging, and user retrievers adding to the stack."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from runtime import NewBlock, Provenance, open_store
from runtime.config import RecencyMode, RetrieverSettings
from runtime.errors import InvalidInput
from runtime.indexes.bm25 import query_terms
from runtime.indexes.embeddings import HashingEmbedder
from runtime.indexes.snapshot import index_for, reader_for
from runtime.pager.core import PageOptions, PageRequest, page
from runtime.pager.plan import SelectionReason
from runtime.pager.retrievers import (
    EmbeddingRetriever,
    RecencyRetriever,
    RetrievalQuery,
    Weighted,
    default_stack,
    spread,
)
from tests.runtime.pager_support import Session, profile

BIG = profile(20_000)


def facts(store, texts, session="s"):
    return [e.id for e in store.put_many(session, [NewBlock("fact", t) for t in texts])]


def scores_of(plan):
    return {c.candidate.block_id: dict(c.candidate.scores) for c in (*plan.selected, *plan.omitted)}


def only(name, settings=None):
    """The default stack cut down to the one retriever called ``name``, with weight 1."""
    return tuple(replace(w, weight=1.0) for w in default_stack(settings) if w.name == name)


class Fixed:
    """A user retriever returning fixed (block id, score) pairs."""

    def __init__(self, name, pairs):
        self.name = name
        self.pairs = pairs

    def retrieve(self, query):
        return self.pairs


def test_recency_half_life_halves_the_score_every_half_life(store):
    ids = facts(store, [f"note {i}" for i in range(9)])
    settings = RetrieverSettings(recency=replace(RetrieverSettings().recency, half_life=4.0))
    plan = page(store, PageRequest("s", "", BIG, retrievers=only("recency", settings=settings)))
    got = scores_of(plan)
    assert got[ids[8]]["recency"] == 1.0
    assert got[ids[4]]["recency"] == pytest.approx(0.5)
    assert got[ids[0]]["recency"] == pytest.approx(0.25)


def test_linear_recency_runs_from_oldest_zero_to_newest_one(store):
    ids = facts(store, [f"note {i}" for i in range(5)])
    stack = (Weighted(RecencyRetriever(RecencyMode.LINEAR), 1.0),)
    got = scores_of(page(store, PageRequest("s", "", BIG, retrievers=stack)))
    assert [got[i]["recency"] for i in ids] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_bm25_scores_are_divided_by_the_best_so_the_best_scores_one(store):
    ids = facts(store, ["refund refund my flight", "refund please", "seat map"])
    alone = PageOptions(neighbour_weight=0.0)
    request = PageRequest("s", "refund", BIG, retrievers=only("bm25"), options=alone)
    got = scores_of(page(store, request))
    assert got[ids[0]]["bm25"] == 1.0 and 0 < got[ids[1]]["bm25"] < 1
    assert ids[2] not in got  # no query term and no neighbour spread: not a candidate


def test_lexical_is_the_jaccard_overlap_of_term_sets(store):
    ids = facts(store, ["cancel flight", "cancel flight seat upgrade"])
    got = scores_of(page(store, PageRequest("s", "cancel flight", BIG, retrievers=only("lexical"))))
    # 2/2 and 2/4 before normalisation; the best is 1 after.
    assert got[ids[0]]["lexical"] == 1.0 and got[ids[1]]["lexical"] == pytest.approx(0.5)


def test_embedding_prefers_text_that_shares_word_pieces(store):
    ids = facts(store, ["She loves painting sunsets", "Quarterly tax filing deadline"])
    got = scores_of(page(store, PageRequest("s", "who paints?", BIG, retrievers=only("embedding"))))
    assert got[ids[0]]["embedding"] > got.get(ids[1], {}).get("embedding", 0.0)


def test_hashing_embedder_vectors_are_unit_length_and_the_same_in_every_process():
    vector = HashingEmbedder(64).embed("Tool calls travel with their results")
    assert vector.dtype == np.float32 and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)
    code = (
        "from runtime.indexes.embeddings import HashingEmbedder;"
        "print(HashingEmbedder(64).embed('Tool calls travel with their results').tobytes().hex())"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {vector.tobytes().hex()}


def test_source_scores_blocks_whose_source_the_task_names(store):
    said = [("Caroline", "I went to a support group"), ("Melanie", "I painted a sunrise")]
    for speaker, text in said:
        store.put("s", NewBlock("user-message", text, provenance=Provenance(speaker)))
    got = scores_of(
        page(store, PageRequest("s", "What did Melanie do?", BIG, retrievers=only("source")))
    )
    melanie, caroline = (e.id for e in store.entries("s")[::-1])
    assert got[melanie]["source"] == 1.0 and caroline not in got


def test_source_words_do_not_change_bm25_statistics(store, tmp_path):
    store.put("s", NewBlock("fact", "refund policy", provenance=Provenance("refund desk")))
    store.put("s", NewBlock("fact", "seat map"))
    got = scores_of(page(store, PageRequest("s", "refund", BIG, retrievers=only("bm25"))))
    plain = open_store(tmp_path / "plain")
    index_for(plain)
    plain.put_many("s", [NewBlock("fact", "refund policy"), NewBlock("fact", "seat map")])
    again = scores_of(page(plain, PageRequest("s", "refund", BIG, retrievers=only("bm25"))))
    plain.close()
    assert got == again


def test_pinned_label_makes_a_block_pinned(store):
    store.put("s", NewBlock("fact", "keep me", provenance=Provenance(labels=("pinned",))))
    facts(store, ["other"])
    plan = page(store, PageRequest("s", "anything", BIG))
    reasons = {s.candidate.block_id: s.reason for s in plan.selected}
    pinned = store.entries("s")[0].id
    assert reasons[pinned] is SelectionReason.PINNED


def test_a_user_retriever_adds_to_the_stack_and_the_defaults_still_score(store):
    ids = facts(store, ["alpha", "beta", "gamma"])
    extra = (Weighted(Fixed("mine", [(ids[0], 7.0)]), 1.0),)
    plan = page(store, PageRequest("s", "beta", BIG, extra_retrievers=extra))
    got = scores_of(plan)
    defaults = {w.name for w in default_stack() if w.weight > 0}  # weight 0 turns one off
    assert defaults == {"bm25", "embedding", "pinned", "recency", "source"}
    assert set(got[ids[0]]) == defaults | {"mine", "neighbours"}
    assert got[ids[0]]["mine"] == 1.0  # 7.0 normalised: the retriever's best scores 1
    assert got[ids[1]]["bm25"] == 1.0


def test_a_retriever_on_a_hundred_point_scale_weighs_the_same_as_one_on_a_unit_scale(store):
    ids = facts(store, ["alpha", "beta"])
    small = Weighted(Fixed("small", [(ids[0], 1.0), (ids[1], 0.5)]), 1.0)
    large = Weighted(Fixed("large", [(ids[0], 100.0), (ids[1], 50.0)]), 1.0)
    plans = [page(store, PageRequest("s", "", BIG, retrievers=(r,))) for r in (small, large)]
    assert [s.candidate.score for s in plans[0].selected] == [
        s.candidate.score for s in plans[1].selected
    ]


def test_a_negative_or_nan_score_is_refused_naming_the_retriever(store):
    ids = facts(store, ["alpha"])
    for bad in (-1.0, float("nan"), float("inf")):
        extra = (Weighted(Fixed("broken", [(ids[0], bad)]), 1.0),)
        with pytest.raises(InvalidInput, match="broken"):
            page(store, PageRequest("s", "x", BIG, extra_retrievers=extra))


def test_a_block_from_another_session_becomes_a_global_fact(store):
    (elsewhere,) = facts(store, ["the office closes at six"], session="shared")
    facts(store, ["hello"])
    extra = (Weighted(Fixed("memory", [(elsewhere, 1.0)]), 1.0),)
    plan = page(store, PageRequest("s", "when do you close", BIG, extra_retrievers=extra))
    chosen = {s.candidate.block_id: s for s in plan.selected}
    assert chosen[elsewhere].reason is SelectionReason.GLOBAL_FACT
    assert chosen[elsewhere].candidate.seq is None


def test_merged_scores_stay_within_zero_and_one_and_every_retriever_is_in_each_breakdown(store):
    session = Session(store, "s")
    session.system("Be brief.")
    for i in range(30):
        session.user(f"question {i} about refunds and seats")
        session.assistant(f"answer {i}")
    plan = page(store, PageRequest("s", "refund for seat 12", BIG))
    names = set(plan.settings["score_names"])
    for decision in (*plan.selected, *plan.omitted):
        assert 0.0 <= decision.candidate.score <= 1.0
        assert set(dict(decision.candidate.scores)) == names


def test_neighbours_spread_relevance_to_adjacent_seqs_only():
    seqs = np.array([3, 4, 5, 9])
    got = spread(seqs, np.array([0.0, 1.0, 0.0, 0.0]), (0.5, 0.25))
    assert got.tolist() == [0.5, 0.0, 0.5, 0.0]


def _embedding_top(store, session, task, limit=256):
    snapshot = reader_for(store).snapshot(store, session)
    query = RetrievalQuery(store, session, task, tuple(query_terms(task)), snapshot, limit)
    return EmbeddingRetriever().rank(query).top


@pytest.mark.parametrize("size", [4_000, 5_000])
def test_embedding_retriever_proposes_its_full_limit_at_any_session_size(store, size):
    words = ("invoice", "harbour", "violin", "glacier", "pepper", "satellite", "orchard", "ledger")
    filler = [
        f"note {i}: {words[i % 8]} {words[(i * 3) % 8]} {words[(i * 5 + 1) % 8]}"
        for i in range(size)
    ]
    planted_at = 4_500 if size > 4_500 else size - 10
    filler[planted_at] = "the lighthouse keeper paints seagulls at dawn"
    ids = facts(store, filler)
    top = _embedding_top(store, "s", "which lighthouse keeper paints seagulls?")
    assert top.seqs.shape[0] == 256  # its limit, whatever the session size
    assert int(top.seqs[0]) == planted_at and store.entries("s")[planted_at].id == ids[planted_at]
    again = _embedding_top(store, "s", "which lighthouse keeper paints seagulls?")
    assert top.seqs.tolist() == again.seqs.tolist()  # deterministic, ties broken by newer seq
