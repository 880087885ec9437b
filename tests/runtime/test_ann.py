"""The ANN index of the embedding retriever: recall, determinism, incremental growth, persistence."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import zlib

import faiss
import numpy as np
import pytest

from runtime import NewBlock, open_store
from runtime.indexes import ann
from runtime.indexes.bm25 import query_terms
from runtime.indexes.embeddings import ANN_TABLE
from runtime.indexes.rebuild import reindex
from runtime.indexes.sessionindex import session_cache_prefix
from runtime.indexes.snapshot import reader_for
from runtime.pager.retrievers import EmbeddingRetriever, RetrievalQuery
from tests.conftest import STORE_BACKENDS

CHUNK = 256  # small segments, so a test session of a few thousand blocks has several
ANN = EmbeddingRetriever(exact_below=0, chunk=CHUNK)
EXACT = EmbeddingRetriever(exact_below=10**9)
WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti") for b in
         ("bar", "cen", "dol", "fim", "gat", "hux", "jor", "kel", "lum", "mab")]  # fmt: skip


def corpus(n: int, seed: int = 7) -> list[str]:
    r = random.Random(seed)
    return [f"note {i}: " + " ".join(r.choice(WORDS) for _ in range(8)) for i in range(n)]


def tasks(count: int = 30) -> list[str]:
    r = random.Random(99)
    return [" ".join(r.choice(WORDS) for _ in range(4)) for _ in range(count)]


def fill(store, texts, batch=None, session="s"):
    step = batch or len(texts)
    for start in range(0, len(texts), step):
        store.put_many(session, [NewBlock("fact", t) for t in texts[start : start + step]])
        if batch:  # a page after every batch: the index grows as the session does
            top(store, tasks(1)[0], ANN)


def top(store, task, retriever, limit=10, session="s"):
    snap = reader_for(store).snapshot(store, session)
    query = RetrievalQuery(store, session, task, tuple(query_terms(task)), snap, limit)
    return retriever.rank(query).top


def stored_segments(store):
    return store.kv.read(lambda t: list(t.scan(ANN_TABLE)))


def test_segments_depend_on_upto_only():
    assert ann.segment_ranges(CHUNK - 1, CHUNK) == []
    assert ann.segment_ranges(7 * CHUNK + 5, CHUNK) == [
        (0, 4 * CHUNK), (4 * CHUNK, 6 * CHUNK), (6 * CHUNK, 7 * CHUNK)
    ]  # fmt: skip
    assert ann.covered(7 * CHUNK + 5, CHUNK) == 7 * CHUNK


def test_ann_top_ten_recalls_the_exact_scan(store):
    fill(store, corpus(3_000))
    found = 0
    for task in tasks():
        exact, got = top(store, task, EXACT), top(store, task, ANN)
        cut = float(exact.values[-1])
        found += int(np.sum(got.values >= cut - 1e-6))  # a tie at the cut counts as found
        assert got.values.tolist() == sorted(got.values.tolist(), reverse=True)
    assert found / (10 * len(tasks())) >= 0.95
    assert len(stored_segments(store)) == len(ann.segment_ranges(3_000, CHUNK))


def test_an_index_grown_page_by_page_equals_one_built_at_once(tmp_path):
    grown, fresh = open_store(tmp_path / "grown"), open_store(tmp_path / "fresh")
    texts = corpus(1_500)
    fill(grown, texts, batch=100)
    fill(fresh, texts)
    for task in tasks(10):
        a, b = top(grown, task, ANN, limit=40), top(fresh, task, ANN, limit=40)
        assert a.seqs.tolist() == b.seqs.tolist()
    assert stored_segments(grown) == stored_segments(fresh)  # same graphs, byte for byte


@pytest.mark.parametrize("backend", STORE_BACKENDS)
def test_stored_index_is_loaded_not_rebuilt_after_reopening(
    backend, request, tmp_path, monkeypatch
):
    target = tmp_path / "store" if backend == "lmdb" else request.getfixturevalue(f"{backend}_url")
    store = open_store(target)
    fill(store, corpus(1_200))
    before = [top(store, t, ANN).seqs.tolist() for t in tasks(5)]
    store.close()

    def no_build(*_args, **_kwargs):
        raise AssertionError("a stored segment was rebuilt")

    monkeypatch.setattr(ann, "build", no_build)
    store = open_store(target)  # a new engine: nothing cached in this process
    try:
        assert [top(store, t, ANN).seqs.tolist() for t in tasks(5)] == before
    finally:
        store.close()


def test_a_damaged_stored_index_is_rebuilt_with_a_log_line(tmp_path, caplog):
    path = tmp_path / "store"
    store = open_store(path)
    fill(store, corpus(800))
    before = top(store, tasks(1)[0], ANN).seqs.tolist()
    rows = stored_segments(store)
    damaged = [(k, v[:-40] + bytes(40)) for k, v in rows]
    store.kv.write(lambda t: t.put_many(ANN_TABLE, damaged))
    store.close()
    store = open_store(path)
    with caplog.at_level(logging.WARNING, logger="llm386.ann"):
        assert top(store, tasks(1)[0], ANN).seqs.tolist() == before
    assert "is damaged; rebuilding it" in caplog.text
    assert stored_segments(store) == rows  # rewritten as it was


def test_two_processes_give_the_same_answers(tmp_path):
    path = tmp_path / "store"
    store = open_store(path)
    fill(store, corpus(900))
    store.close()
    script = (
        "import sys; from tests.runtime.test_ann import top, tasks, ANN; "
        "from runtime import open_store; s = open_store(sys.argv[1]); "
        "print([top(s, t, ANN, limit=30).seqs.tolist() for t in tasks(8)])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    outs = []
    for _ in range(2):  # the first builds and stores the graphs, the second loads them
        done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                              text=True, env=env, check=True)  # fmt: skip
        outs.append(done.stdout)
    store = open_store(path)
    stored = stored_segments(store)
    store.kv.write(lambda t: t.clear(ANN_TABLE))
    store.close()
    again = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                           text=True, env=env, check=True)  # fmt: skip
    assert outs[0] == outs[1] == again.stdout and outs[0].startswith("[[")
    store = open_store(path)
    assert stored_segments(store) == stored  # rebuilt in another process: the same bytes


def test_reindex_drops_the_stored_graphs(store):
    fill(store, corpus(600))
    top(store, tasks(1)[0], ANN)
    assert stored_segments(store)
    reindex(store)
    assert stored_segments(store) == []  # too short for the default chunk: rebuilt on demand


def test_reindex_rebuilds_the_graphs_of_a_long_session(store):
    fill(store, corpus(ann.CHUNK + 10))
    lines: list[str] = []
    reindex(store, progress=lines.append)
    (row,) = stored_segments(store)  # one segment of the first chunk, for the default embedder
    assert any("ann: session 's': building seqs 0-16383" in line for line in lines)
    before = top(store, tasks(1)[0], EmbeddingRetriever()).seqs.tolist()
    assert stored_segments(store) == [row]  # the page read it rather than building another
    assert before == top(store, tasks(1)[0], EmbeddingRetriever()).seqs.tolist()


def test_an_entry_with_a_valid_checksum_but_a_truncated_graph_is_rebuilt(store, caplog):
    fill(store, corpus(600))
    before = top(store, tasks(1)[0], ANN).seqs.tolist()
    (key, value), *_ = stored_segments(store)
    head = len(ann._MAGIC) + ann._CRC.size
    payload = value[head : len(value) - 100]  # the faiss bytes cut short, checksum made to fit
    forged = ann._MAGIC + ann._CRC.pack(zlib.crc32(payload)) + payload
    store.kv.write(lambda t: t.put(ANN_TABLE, key, forged))
    store.close()
    store = open_store(store.location)
    with caplog.at_level(logging.WARNING, logger="llm386.ann"):
        assert top(store, tasks(1)[0], ANN).seqs.tolist() == before
    assert "is damaged; rebuilding it" in caplog.text
    store.close()


def test_a_removal_deletes_the_sessions_graphs_and_no_other(store):
    fill(store, corpus(600))
    fill(store, corpus(600, seed=8), session="t")
    top(store, tasks(1)[0], ANN)
    top(store, tasks(1)[0], ANN, session="t")
    theirs = session_cache_prefix("t")
    assert sorted(k.startswith(theirs) for k, _ in stored_segments(store)) == [False, True]
    first = store.entries("s", limit=1)[0]
    store.delete_block(first.block.id)  # its vector is in the graph: the graph goes with it
    assert [k.startswith(theirs) for k, _ in stored_segments(store)] == [True]
    store.purge_session("t")
    assert stored_segments(store) == []


def test_a_store_with_graphs_under_the_old_keys_drops_them_when_it_upgrades(tmp_path):
    from runtime.storage.migrations import current_version, migrate

    store = open_store(tmp_path / "store")
    fill(store, corpus(600))
    before = top(store, tasks(1)[0], ANN).seqs.tolist()
    old = [(k[:16] + k[24:], v) for k, v in stored_segments(store)]  # the layout of version 2

    def downgrade(t):
        t.clear(ANN_TABLE)
        t.put_many(ANN_TABLE, old)
        t.put("meta", b"schema", b"2")

    store.kv.write(downgrade)
    assert migrate(store.kv) == ["ann-keys-by-session"] and current_version(store.kv) == 3
    assert stored_segments(store) == []
    store.close()
    store = open_store(tmp_path / "store")
    assert top(store, tasks(1)[0], ANN).seqs.tolist() == before  # rebuilt, the same answers
    assert len(stored_segments(store)) == 1
    store.close()


@pytest.mark.parametrize("backend", STORE_BACKENDS)
def test_a_stored_graph_is_read_in_place_and_answers_as_the_one_built(backend, request, tmp_path):
    target = tmp_path / "store" if backend == "lmdb" else request.getfixturevalue(f"{backend}_url")
    store = open_store(target)
    fill(store, corpus(5 * CHUNK + 40))  # two segments (four chunks, one) and a tail
    built = [top(store, t, ANN, limit=30) for t in tasks(6)]  # graphs built in this process
    store.close()
    store = open_store(target)  # a new engine: the graphs are read back from the store
    try:
        loaded = [top(store, t, ANN, limit=30) for t in tasks(6)]
        snap = reader_for(store).snapshot(store, "s")
        segments = ann.segments(snap, ANN.embedder, CHUNK)
        assert len(segments) == 2
        for seg in segments:  # the graph's vectors are the stored bytes, not a copy of them
            storage = faiss.downcast_index(seg.graph.storage)
            at = int(storage.get_xb())  # the address its vectors are read from
            start = seg.buffer.ctypes.data
            assert start <= at < start + seg.buffer.size
        for a, b in zip(built, loaded, strict=True):
            assert a.seqs.tolist() == b.seqs.tolist()
            assert a.values.tobytes() == b.values.tobytes()  # the same scores, to the bit
    finally:
        store.close()
