"""Session vector chunks (``ix_svec``): a large session's vectors read in a few values after the
store is opened again, the same vectors and plans as block by block, and safe when stale or damaged."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from runtime import open_store
from runtime.indexes import embeddings, vectorchunks
from runtime.indexes.rebuild import reindex
from runtime.indexes.sessionindex import session_cache_prefix
from runtime.indexes.vectorchunks import SESSION_VECTORS_TABLE
from runtime.pager.core import PageRequest, page
from runtime.storage.lmdb import env as lmdbenv
from tests.conftest import STORE_BACKENDS
from tests.runtime.pager_support import profile
from tests.runtime.test_ann import EXACT, corpus, fill, tasks, top

CHUNK = 64
BLOCKS = 5 * CHUNK + 10  # five full chunks and a tail


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(vectorchunks, "CHUNK", CHUNK)


def stored(store):
    return store.kv.read(lambda t: list(t.scan(SESSION_VECTORS_TABLE)))


def reopened(target, store):
    store.close()
    if not isinstance(target, str):
        lmdbenv.close_env(target)
    return open_store(target)  # a new engine: nothing cached in this process


def block_reads(monkeypatch) -> list[int]:
    """Count the vectors asked of the per-block cache from now on."""
    asked: list[int] = []
    vectors = embeddings.VectorCache.vectors

    def counting(self, embedder, ids, bodies):
        asked.append(len(ids))
        return vectors(self, embedder, ids, bodies)

    monkeypatch.setattr(embeddings.VectorCache, "vectors", counting)
    return asked


@pytest.mark.parametrize("backend", STORE_BACKENDS)
def test_a_reopened_session_reads_its_full_chunks_whole_with_the_same_answers(
    backend, request, tmp_path, monkeypatch
):
    target = tmp_path / "store" if backend == "lmdb" else request.getfixturevalue(f"{backend}_url")
    store = open_store(target)
    fill(store, corpus(BLOCKS))
    before = [top(store, t, EXACT).seqs.tolist() for t in tasks(5)]
    plan = page(store, PageRequest("s", tasks(1)[0], profile(4_000))).to_json()
    assert len(stored(store)) == 5  # every full chunk, once its vectors were all known
    store = reopened(target, store)
    asked = block_reads(monkeypatch)
    try:
        assert [top(store, t, EXACT).seqs.tolist() for t in tasks(5)] == before
        assert page(store, PageRequest("s", tasks(1)[0], profile(4_000))).to_json() == plan
        assert asked == [10]  # only the tail, block by block
    finally:
        store.close()


def test_the_chunks_hold_the_block_vectors_bit_for_bit(store):
    fill(store, corpus(BLOCKS))
    top(store, tasks(1)[0], EXACT)
    from runtime.indexes.embeddings import HashingEmbedder, vector_cache
    from runtime.indexes.snapshot import reader_for

    snap = reader_for(store).snapshot(store, "s")
    ids = [snap.block_id(seq) for seq in range(5 * CHUNK)]
    per_block = vector_cache(store.kv).vectors(HashingEmbedder(), ids, None)
    head = len(b"llm386-svec/1\n") + 16
    chunked = np.concatenate([np.frombuffer(v, "<f4", offset=head) for _, v in stored(store)])
    assert chunked.tobytes() == per_block.astype("<f4").tobytes()


def test_a_damaged_chunk_is_read_block_by_block_then_stored_again(tmp_path, caplog):
    path = tmp_path / "store"
    store = open_store(path)
    fill(store, corpus(BLOCKS))
    before = top(store, tasks(1)[0], EXACT).seqs.tolist()
    rows = stored(store)
    (key, value), *_ = rows
    store.kv.write(lambda t: t.put(SESSION_VECTORS_TABLE, key, value[:-8]))  # truncated
    store = reopened(path, store)
    with caplog.at_level(logging.WARNING, logger="llm386.vectors"):
        assert top(store, tasks(1)[0], EXACT).seqs.tolist() == before
    assert "do not match its blocks" in caplog.text
    assert stored(store) == rows


def test_a_chunk_made_for_other_blocks_is_not_used(tmp_path):
    path = tmp_path / "store"
    store = open_store(path)
    fill(store, corpus(BLOCKS))
    before = top(store, tasks(1)[0], EXACT).seqs.tolist()
    rows = stored(store)
    (key, value), (_, other), *_ = rows
    store.kv.write(lambda t: t.put(SESSION_VECTORS_TABLE, key, other))  # chunk 1's vectors at 0
    store = reopened(path, store)
    assert top(store, tasks(1)[0], EXACT).seqs.tolist() == before
    assert stored(store) == rows


def test_a_removal_deletes_the_sessions_chunks_and_no_other(store):
    fill(store, corpus(BLOCKS))
    fill(store, corpus(BLOCKS, seed=9), session="t")
    top(store, tasks(1)[0], EXACT)
    top(store, tasks(1)[0], EXACT, session="t")
    assert len(stored(store)) == 10
    first = store.entries("s", limit=1)[0]
    store.delete_block(first.block.id)  # a block deleted: no vector of it may be left
    theirs = session_cache_prefix("t")
    assert [k.startswith(theirs) for k, _ in stored(store)] == [True] * 5
    top(store, tasks(1)[0], EXACT)  # the next exact scan stores the session's chunks again
    assert len(stored(store)) == 10
    store.purge_session("t")
    assert [k.startswith(theirs) for k, _ in stored(store)] == [False] * 5


def test_a_purged_and_refilled_session_gets_its_new_blocks_vectors(tmp_path):
    store, other = open_store(tmp_path / "store"), open_store(tmp_path / "other")
    fill(store, corpus(BLOCKS))
    top(store, tasks(1)[0], EXACT)
    old = {k for k, _ in stored(store)}
    store.purge_session("s")
    assert stored(store) == []
    fill(store, corpus(BLOCKS, seed=8))  # the same seqs, other blocks
    fill(other, corpus(BLOCKS, seed=8))
    for task in tasks(3):
        assert top(store, task, EXACT).seqs.tolist() == top(other, task, EXACT).seqs.tolist()
    keys = {k for k, _ in stored(store)}
    assert len(keys) == 5 and not keys & old
    store.close()
    other.close()


def test_reindex_drops_the_chunks(store):
    fill(store, corpus(BLOCKS))
    top(store, tasks(1)[0], EXACT)
    assert stored(store)
    reindex(store)
    assert stored(store) == []


def test_a_session_shorter_than_a_chunk_stores_none(store):
    fill(store, corpus(CHUNK - 1))
    top(store, tasks(1)[0], EXACT)
    assert stored(store) == []


def test_the_session_index_deletes_the_tables_these_modules_keep():
    from runtime.indexes.embeddings import ANN_TABLE
    from runtime.indexes.sessionindex import SESSION_CACHE_DBS

    assert SESSION_CACHE_DBS == (SESSION_VECTORS_TABLE, ANN_TABLE)
