"""``HashingEmbedder.embed_many``: the batch path the vector cache embeds cold sessions with gives
``embed``'s vectors bit for bit, so plans and their hashes do not depend on which path ran."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.common import SHIPPED_TAU
from bench.taudata import tau_sessions
from runtime import NewBlock, open_store
from runtime.indexes import embeddings
from runtime.indexes.embeddings import HashingEmbedder, embed_all, vector_cache

EDGES = ["", " ", "a", "ab", "abc", "the", "THE and OF", "ß straße", "\u0130stanbul", "日本語の文",
         "héllo wörld ☃", "a\x00b", "x" * 5000, "tool_call_17 " * 300, "\ud800 lone surrogate"]  # fmt: skip


def _same(embedder: HashingEmbedder, texts: list[str]) -> None:
    one = np.stack([embedder.embed(t) for t in texts]) if texts else np.zeros((0, 0))
    many = embedder.embed_many(texts)
    assert many.dtype == np.float32 and many.shape == (len(texts), embedder.dimensions)
    assert many.tobytes() == one.tobytes()


@pytest.mark.parametrize("dimensions", [256, 64, 100])  # 100: not a power of two
def test_the_batch_gives_each_texts_own_vector_on_real_messages(dimensions):
    bodies = [str(b.body) for s in tau_sessions(SHIPPED_TAU / "sessions.json",
              SHIPPED_TAU / "tools.json")[:6] for b in s.blocks]  # fmt: skip
    _same(HashingEmbedder(dimensions), bodies + EDGES)


def test_batches_split_anywhere_and_an_empty_batch(monkeypatch):
    monkeypatch.setattr(embeddings, "_BATCH", 3)  # texts of a row's neighbours never mix
    _same(HashingEmbedder(64), EDGES)
    assert HashingEmbedder(64).embed_many([]).shape == (0, 64)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=12), st.sampled_from([8, 64, 256]))
def test_any_texts_any_dimensions(texts, dimensions):
    _same(HashingEmbedder(dimensions), texts)


class _OneAtATime:
    """An embedder without ``embed_many``: the cache embeds one text per call."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder(32)
        self.key, self.dimensions = "one-at-a-time/32", 32

    def embed(self, text: str) -> np.ndarray:
        return self.inner.embed(text)


def test_the_vector_cache_stores_the_same_vectors_by_either_path(tmp_path):
    store = open_store(tmp_path / "store")
    texts = ["first block about seagulls", "second, about lighthouses", "-"]
    ids = [e.block.id for e in store.put_many("s", [NewBlock("user-message", t) for t in texts])]
    bodies = lambda wanted: [b.body for b in store.get_many(list(wanted))]  # noqa: E731
    batched = vector_cache(store.kv).vectors(HashingEmbedder(32), ids, bodies)
    single = vector_cache(store.kv).vectors(_OneAtATime(), ids, bodies)
    assert batched.tobytes() == single.tobytes()
    assert [v.tobytes() for v in embed_all(_OneAtATime(), texts)] == [r.tobytes() for r in batched]
