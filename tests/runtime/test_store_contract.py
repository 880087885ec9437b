"""The block store contract: what every backend must do, run on each one of STORE_BACKENDS.

Only the public ``BlockStore`` API (and the engine's write, for the change feed) is used here,
so a backend passes by behaving, not by sharing LMDB's internals.
"""

from __future__ import annotations

import itertools

import pytest

from runtime import BlockKind, Edge, EdgeKind, NewBlock, content_hash
from runtime.errors import BlockNotFound, InvalidBlock, InvalidEdge, SessionNotFound
from runtime.storage.interface import PurgeReport


def facts(store, session, *texts):
    return store.put_many(session, [NewBlock("fact", text) for text in texts])


def test_a_block_is_named_by_its_content_and_stored_once(backend_store):
    store = backend_store
    first = store.put("a", NewBlock("fact", "the sky is blue", priority=0.9))
    again = store.put("b", NewBlock("fact", "the sky is blue", priority=0.1))
    assert first.id == again.id == content_hash(BlockKind.FACT, "the sky is blue")
    assert store.get(first.id).priority == 0.9  # the first put's metadata stays
    assert (first.priority, again.priority) == (0.9, 0.1)  # each entry keeps its own
    assert store.memberships(first.id) == [("a", 0), ("b", 0)]
    assert store.has(first.id) and not store.has("0" * 64)


def test_entries_come_back_in_put_order_from_any_start_either_way(backend_store):
    store = backend_store
    facts(store, "s", "zero", "one", "two", "three", "four")
    bodies = [e.body for e in store.entries("s")]
    assert bodies == ["zero", "one", "two", "three", "four"]
    assert [e.seq for e in store.entries("s", start=2, limit=2)] == [2, 3]
    assert [e.seq for e in store.entries("s", reverse=True)] == [4, 3, 2, 1, 0]
    assert [e.seq for e in store.entries("s", start=3, reverse=True, limit=2)] == [2, 1]
    assert [r.id for r in store.entry_refs("s")] == [e.id for e in store.entries("s")]
    assert store.entry("s", 3).body == "three"


def test_a_seq_is_never_reused_after_a_delete(backend_store):
    store = backend_store
    _, _, last = facts(store, "s", "a", "b", "c")
    store.delete_block(last.id)
    (added,) = facts(store, "s", "d")
    assert added.seq == 3
    assert [e.seq for e in store.entries("s")] == [0, 1, 3]
    assert store.session_info("s").count == 3


def test_edges_are_kept_both_ways_once_and_go_with_their_blocks(backend_store):
    store = backend_store
    a, b, c = facts(store, "s", "a", "b", "c")
    assert store.add_edge(a.id, "parent", b.id) is True
    assert store.add_edge(a.id, "parent", b.id) is False
    store.add_edge(c.id, EdgeKind.SUPPORTS, b.id)
    assert store.edges_from(a.id) == [Edge(a.id, EdgeKind.PARENT, b.id)]
    assert store.edges_to(b.id) == sorted(
        [Edge(a.id, EdgeKind.PARENT, b.id), Edge(c.id, EdgeKind.SUPPORTS, b.id)]
    )
    assert store.edges_to(b.id, "supports") == [Edge(c.id, EdgeKind.SUPPORTS, b.id)]
    store.delete_block(b.id)
    assert store.edges_from(a.id) == [] and store.edges_from(c.id) == []


def test_put_many_writes_blocks_and_the_edges_between_them_together(backend_store):
    store = backend_store
    blocks = [NewBlock("fact", "cause"), NewBlock("fact", "effect")]
    ids = [content_hash(BlockKind.FACT, "cause"), content_hash(BlockKind.FACT, "effect")]
    store.put_many("s", blocks, [Edge(ids[1], EdgeKind.DERIVED_FROM, ids[0])])
    assert store.edges_to(ids[0]) == [Edge(ids[1], EdgeKind.DERIVED_FROM, ids[0])]
    with pytest.raises(InvalidEdge):
        store.put_many("s", [NewBlock("fact", "alone")], [Edge(ids[0], "parent", "ab" * 32)])
    assert [e.body for e in store.entries("s")] == ["cause", "effect"]


def test_sessions_are_listed_by_id_with_offset_and_limit(backend_store):
    store = backend_store
    for name in ("c", "a", "d", "b"):
        facts(store, name, f"in {name}")
    assert [s.session for s in store.sessions()] == ["a", "b", "c", "d"]
    assert [s.session for s in store.sessions(offset=1, limit=2)] == ["b", "c"]
    assert [s.session for s in store.sessions(offset=3, limit=5)] == ["d"]
    assert store.sessions(limit=0) == [] and store.session_count() == 4


def test_session_meta_merges_into_what_is_there(backend_store):
    store = backend_store
    facts(store, "s", "x")
    store.set_session_meta("s", model="m1", labels=["a"])
    info = store.set_session_meta("s", model="m2", reward=0.5)
    assert info.meta == {"model": "m2", "labels": ["a"], "reward": 0.5}
    assert store.session_info("s").meta == info.meta


def test_purge_removes_a_session_and_keeps_blocks_others_hold(backend_store):
    store = backend_store
    shared, own = facts(store, "gone", "shared", "own")
    facts(store, "kept", "shared")
    assert store.purge_session("gone") == PurgeReport("gone", 2, 1, 1)
    assert not store.has(own.id) and store.has(shared.id)
    assert store.memberships(shared.id) == [("kept", 0)]
    assert [s.session for s in store.sessions()] == ["kept"]
    with pytest.raises(SessionNotFound):
        store.purge_session("gone")


def test_atomic_lands_all_or_nothing(backend_store):
    store = backend_store

    def both_then_fail():
        facts(store, "s", "one")
        store.set_session_meta("s", seen=True)
        assert [e.body for e in store.entries("s")] == ["one"]  # reads see the write's own
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        store.atomic(both_then_fail)
    assert store.session_count() == 0
    assert not store.has(content_hash(BlockKind.FACT, "one"))
    store.atomic(lambda: (facts(store, "s", "one"), facts(store, "t", "two")))
    assert store.session_count() == 2


class Recorder:
    """A change feed that records what it is told and what the store looks like meanwhile."""

    def __init__(self, store):
        self.store = store
        self.seen = []

    def on_put(self, t, entries):
        visible = [e.seq for e in self.store.entries(entries[0].session)]
        self.seen.append(("put", [(e.session, e.seq, e.body) for e in entries], visible))

    def on_edges(self, t, edges):
        self.seen.append(("edges", list(edges), None))

    def on_remove(self, t, entries):
        self.seen.append(("remove", [(e.session, e.seq, e.body) for e in entries], None))

    def on_meta(self, t, session):
        self.seen.append(("meta", session, self.store.session_info(session).meta.get("title")))


def test_the_feed_is_told_every_change_inside_its_write(backend_store):
    store = backend_store
    feed = Recorder(store)
    store.subscribe(feed)
    a, b = facts(store, "s", "a", "b")
    store.add_edge(a.id, "parent", b.id)
    store.set_session_meta("s", title="renamed")
    store.delete_block(a.id)
    store.purge_session("s")
    assert feed.seen == [
        ("put", [("s", 0, "a"), ("s", 1, "b")], [0, 1]),  # the entries are visible already
        ("edges", [Edge(a.id, EdgeKind.PARENT, b.id)], None),
        ("meta", "s", "renamed"),  # told inside the write: the new meta is visible
        ("remove", [("s", 0, "a")], None),
        ("remove", [("s", 1, "b")], None),
    ]


def test_a_failing_feed_undoes_the_write_it_was_told_of(backend_store):
    store = backend_store

    class Refuses(Recorder):
        def on_put(self, t, entries):
            raise RuntimeError("index full")

    store.subscribe(Refuses(store))
    with pytest.raises(RuntimeError, match="index full"):
        facts(store, "s", "a")
    assert store.session_count() == 0


def test_token_counts_are_counted_once_and_cached(backend_store):
    store = backend_store
    (entry,) = facts(store, "s", "hello there, world")
    counts = store.token_counts([entry.id], "o200k_base")
    assert counts == [4]
    assert store.token_counts([entry.id, entry.id], "o200k_base") == [4, 4]
    assert store.token_counts([entry.id], "cl100k_base")[0] > 0


def test_verify_passes_and_repair_changes_nothing_on_a_clean_store(backend_store):
    store = backend_store
    a, b = facts(store, "s", "a", "b")
    store.add_edge(a.id, "parent", b.id)
    store.delete_block(a.id)
    report = store.verify()
    assert report.ok and (report.blocks, report.entries, report.edges) == (1, 1, 0)
    repaired = store.repair()
    assert repaired.fixed == () and repaired.unfixable == ()


def _two_ids_sharing_a_prefix():
    seen = {}
    for i in itertools.count():
        bid = content_hash(BlockKind.FACT, f"body {i}")
        if bid[:4] in seen:
            return seen[bid[:4]], f"body {i}"
        seen[bid[:4]] = f"body {i}"
    raise AssertionError("unreachable")


def test_ids_resolve_from_a_unique_prefix_and_refuse_an_ambiguous_one(backend_store):
    store = backend_store
    first, second = _two_ids_sharing_a_prefix()
    a, b = facts(store, "s", first, second)
    assert store.get(a.id[:10]).body == first
    with pytest.raises(InvalidBlock, match="ambiguous"):
        store.get(a.id[:4])


def test_unknown_ids_and_sessions_are_named_as_such(backend_store):
    store = backend_store
    facts(store, "s", "a")
    missing = "ab" * 32
    for call in (
        lambda: store.get(missing),
        lambda: store.get("abcd"),
        lambda: store.get_many([missing]),
        lambda: store.memberships(missing),
        lambda: store.delete_block(missing),
        lambda: store.entry("s", 7),
    ):
        with pytest.raises(BlockNotFound):
            call()
    for call in (lambda: store.session_info("nope"), lambda: store.purge_session("nope")):
        with pytest.raises(SessionNotFound):
            call()
    assert store.entries("nope") == [] and store.edges_from(missing) == []
