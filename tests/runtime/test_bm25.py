"""BM25 over the persisted session index, with rank_bm25 as the oracle."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from runtime import LmdbStore, NewBlock, open_store
from runtime.errors import Llm386Error, StoreError
from runtime.indexes.bm25 import MAX_TERM_CHARS, query_terms, raw_idf, score_postings, terms
from runtime.indexes.snapshot import index_for, reader_for
from runtime.storage.lmdb import env as lmdbenv
from tests.properties import WITH_FIXTURES

WORDS = ["flight", "refund", "seat", "bag", "cancel", "gold", "paris", "the", "zz9", "mia_li"]


def ours(store, session, query, upto=None):
    """Scores of every document as of ``upto``, as a dense array by seq (0 for misses)."""
    snap = reader_for(store).snapshot(store, session, upto)
    postings = snap.postings(query)
    seqs, scores = score_postings(
        snap.stats, postings, snap.records["dlen"], snap.idf_floor(postings)
    )
    dense = np.zeros(snap.upto)
    dense[seqs] = scores
    return dense


def oracle(texts, query):
    corpus = [terms(t) for t in texts]
    if not any(corpus):  # rank_bm25 divides by its empty vocabulary; every score is 0
        return np.zeros(len(texts))
    return BM25Okapi(corpus, k1=1.2, b=0.75).get_scores(query)


def has_negative_idf(texts, query):
    docs = [set(terms(t)) for t in texts]
    return any(raw_idf(len(docs), sum(q in d for d in docs)) < 0 for q in query)


def test_terms_lowercase_drop_stop_words_and_stem():
    assert terms("The Flights were CANCELLED and painting is fun") == [
        "flight", "cancell", "paint", "fun"
    ]  # fmt: skip


def test_terms_keep_identifiers_and_numbers_exactly():
    assert terms("user mia_li_3668 paid 2024-05-20 on HAT136") == [
        "user", "mia_li_3668", "paid", "2024", "05", "20", "hat136"
    ]  # fmt: skip


def test_long_terms_are_shortened_to_a_stable_digest():
    word = "x" * 200
    (term,) = terms(word)
    assert len(term) <= MAX_TERM_CHARS and term == terms(word.upper())[0]
    assert terms("y" * 200) != [term]


def test_query_terms_are_distinct_in_first_occurrence_order():
    assert query_terms("refund refund the seat, refund") == ["refund", "seat"]


corpora = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=0, max_size=12).map(" ".join),
    min_size=1,
    max_size=40,
)
queries = st.lists(st.sampled_from(WORDS + ["absent"]), min_size=1, max_size=4).map(" ".join)


@settings(WITH_FIXTURES, max_examples=60)
@given(texts=corpora, query=queries, cut=st.integers(min_value=0, max_value=40))
def test_scores_equal_rank_bm25_for_the_whole_session_and_any_prefix(
    tmp_path_factory, texts, query, cut
):
    store = open_store(tmp_path_factory.mktemp("bm25") / "store")
    index_for(store)
    try:
        # Empty texts are not blocks; a lone stop word is a block with no terms.
        bodies = [t or "the" for t in texts]
        for start in range(0, len(bodies), 7):
            store.put_many("s", [NewBlock("fact", b) for b in bodies[start : start + 7]])
        q = query_terms(query)
        upto = min(cut, len(bodies))
        for prefix, limit in ((bodies, None), (bodies[:upto], upto)):
            if not prefix:
                continue
            got, want = ours(store, "s", q, limit), oracle(prefix, q)
            if has_negative_idf(prefix, q):
                assert np.allclose(got, want, rtol=1e-12, atol=1e-12)
            else:
                assert np.array_equal(got, want)  # bit for bit
    finally:
        store.close()


def test_a_term_in_most_documents_gets_rank_bm25s_epsilon_floor(store):
    texts = ["flight refund", "flight seat", "flight bag", "gold paris"]
    for text in texts:
        store.put("s", NewBlock("fact", text))
    q = ["flight", "seat"]
    assert raw_idf(4, 3) < 0
    assert np.allclose(ours(store, "s", q), oracle(texts, q), rtol=1e-12)


def test_deleting_and_purging_keep_scores_equal_to_rank_bm25(store):
    texts = [f"flight {w} refund {w}" for w in WORDS] + ["seat seat gold"]
    entries = store.put_many("s", [NewBlock("fact", t) for t in texts])
    store.put("other", NewBlock("fact", texts[0]))
    store.delete_block(entries[2].id)
    kept = [t for i, t in enumerate(texts) if i != 2]
    q = ["seat", "refund"]
    assert has_negative_idf(kept, q)  # "refund" is in most documents: the epsilon floor applies
    got = ours(store, "s", q)
    assert np.allclose(np.delete(got, 2), oracle(kept, q), rtol=1e-12) and got[2] == 0
    got = ours(store, "s", ["seat"])
    assert np.array_equal(np.delete(got, 2), oracle(kept, ["seat"]))
    store.purge_session("s")
    assert math.isclose(ours(store, "other", ["flight"])[0], oracle([texts[0]], ["flight"])[0])


def test_an_index_behind_the_store_catches_up_before_it_is_read(tmp_path):
    plain = open_store(tmp_path / "store")  # no hook: writes the index never saw
    texts = ["cancel flight", "refund seat", "gold paris"]
    plain.put_many("s", [NewBlock("fact", t) for t in texts[:2]])
    indexed = open_store(tmp_path / "store")
    index_for(indexed)
    assert np.array_equal(ours(indexed, "s", ["seat"]), oracle(texts[:2], ["seat"]))
    plain.put("s", NewBlock("fact", texts[2]))  # an append it missed
    assert np.array_equal(ours(indexed, "s", ["gold"]), oracle(texts, ["gold"]))
    plain.delete_block(plain.entries("s")[0].id)  # a removal it missed: rebuilt
    got = ours(indexed, "s", ["seat"])
    assert got[0] == 0 and np.array_equal(got[1:], oracle(texts[1:], ["seat"]))
    indexed.close()


def test_the_index_is_persisted_and_reused_not_rebuilt(tmp_path):
    path = tmp_path / "store"
    store = open_store(path)
    index_for(store)
    store.put_many("s", [NewBlock("fact", f"refund {i}") for i in range(50)])
    meta = reader_for(store).snapshot(store, "s").meta
    store.close()
    again = open_store(path)
    assert reader_for(again).snapshot(again, "s").meta == meta  # same generation: not rebuilt
    db = again.env.db(b"ix_post")
    postings = lmdbenv.read(again.env, lambda txn: txn.stat(db)["entries"])
    again.close()
    assert postings >= 50


def test_a_read_only_store_with_a_stale_index_says_how_to_fix_it(tmp_path):
    path = tmp_path / "store"
    writer = open_store(path)
    index_for(writer)
    writer.put("s", NewBlock("fact", "first"))
    reader_for(writer).snapshot(writer, "s")
    other = LmdbStore(path)  # a writer without the hook (not opened by open_store), e.g. an
    # older llm386 version
    other.put("s", NewBlock("fact", "second"))
    writer.close()
    readonly = open_store(path, readonly=True)
    with pytest.raises(StoreError, match="open the store writable once"):
        reader_for(readonly).snapshot(readonly, "s")
    readonly.close()


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=300) | st.lists(
    st.sampled_from(["Painting", "painted", "the", "STUDIES", "x" * 40, "running", "é", "42", " ", ",", "\n"]),
    max_size=40).map(" ".join))  # fmt: skip
def test_terms_equal_the_word_by_word_analysis(text):
    """``terms`` works each distinct word out once: the result is the word-by-word one."""
    from runtime.indexes import bm25

    expected = []
    for word in bm25._WORD.findall(text.lower()):
        if word not in bm25.STOPWORDS:
            term = bm25._stem(word)
            expected.append(term if len(term) <= MAX_TERM_CHARS else bm25._shorten(term))
    assert terms(text) == expected
    assert terms(text) == expected  # from the word cache this time


def test_terms_are_right_while_other_threads_empty_the_word_cache(monkeypatch):
    """The web app analyses text in several threads: a cache emptied meanwhile changes nothing."""
    import sys
    import threading

    from runtime.indexes import bm25

    monkeypatch.setattr(bm25, "TERM_CACHE_SIZE", 0)  # every call empties it
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: the window is hit, not missed
    texts = [f"painting studies {i} of running dogs word{i} " * 30 for i in range(60)]
    expected = [terms(text) for text in texts]
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                assert [terms(text) for text in texts] == expected
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert failures == []


def test_a_df_above_the_document_count_is_clamped() -> None:
    assert raw_idf(3, 5) == raw_idf(3, 3) < 0
    assert raw_idf(3, -1) == raw_idf(3, 0) > 0


def test_a_page_survives_its_session_purged_and_refilled_while_it_reads(tmp_path, monkeypatch):
    # The refilled session reuses seqs below the snapshot's upto: a term's df then exceeds the
    # snapshot's document count (two removed entries). This page raised a bare ValueError from
    # raw_idf before; now it fails as any read of a purged block does, with the store's error.
    from runtime.indexes import snapshot as snapmod
    from runtime.pager.core import PageRequest, page
    from tests.runtime.pager_support import profile

    store = open_store(tmp_path / "s")
    for i in range(6):
        store.put("s", NewBlock("fact", f"the flight {i} bag"))
    store.kv.write(lambda txn: store.remove_entries_txn(txn, "s", [1, 3]))
    original = snapmod.IndexReader.postings_many
    fired: list[int] = []

    def racing(self, snap, words):
        if not fired:
            fired.append(1)
            store.purge_session("s")
            for i in range(10):
                store.put("s", NewBlock("fact", f"the flight {i} seat"))
        return original(self, snap, words)

    monkeypatch.setattr(snapmod.IndexReader, "postings_many", racing)
    with pytest.raises(Llm386Error, match="no block"):
        page(store, PageRequest("s", "the flight", profile(20_000)))
    assert fired


def _histogram_of(texts):
    """(document frequency, number of terms), counted from the texts themselves."""
    dfs = Counter(term for text in texts for term in set(terms(text)))
    return sorted(Counter(dfs.values()).items())


@pytest.mark.parametrize("upto", [None, 4])
def test_the_histogram_is_the_snapshots_when_a_writer_appends_after_it(backend_store, upto):
    store = backend_store
    texts = [f"the flight {i} to paris with the bag" for i in range(3)] + ["gold refund", "seat"]
    for text in texts:
        store.put("s", NewBlock("fact", text))
    reader = reader_for(store)
    snap = reader.snapshot(store, "s", upto)
    corpus = texts[: snap.upto]
    # Another writer, between the snapshot's read and its histogram's: "the" and "flight"
    # end up in more documents than the snapshot holds.
    for i in range(8):
        store.put("s", NewBlock("fact", f"the flight {i} was late"))
    assert reader.histogram(snap) == _histogram_of(corpus)
    q = ["flight", "paris", "gold"]
    postings = snap.postings(q)
    assert raw_idf(snap.stats.n_docs, postings[0].df) < 0  # the epsilon floor is needed
    seqs, scores = score_postings(
        snap.stats, postings, snap.records["dlen"], snap.idf_floor(postings)
    )
    dense = np.zeros(snap.upto)
    dense[seqs] = scores
    assert np.allclose(dense, oracle(corpus, q), rtol=1e-12)
