"""The LMDB block store: content addressing, sessions, edges, deletes, verify and repair."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import (
    BlockKind,
    Edge,
    EdgeKind,
    NewBlock,
    Provenance,
    content_hash,
    open_store,
)
from runtime.errors import (
    BlockNotFound,
    BlockTooLarge,
    InvalidBlock,
    InvalidEdge,
    InvalidSession,
    SessionNotFound,
    StoreNotAStore,
)
from runtime.storage.lmdb import env as lmdbenv
from tests.properties import WITH_FIXTURES


def test_put_computes_the_content_hash_itself(store):
    entry = store.put("s1", NewBlock("fact", "the sky is blue"))
    assert entry.id == content_hash(BlockKind.FACT, "the sky is blue")
    assert store.get(entry.id).body == "the sky is blue"


def test_identical_content_is_stored_once_but_each_put_keeps_its_metadata(store):
    a = store.put("s1", NewBlock("fact", "same", priority=0.2))
    b = store.put("s1", NewBlock("fact", "same", priority=0.9, provenance=Provenance("x")))
    assert a.id == b.id
    entries = store.entries("s1")
    assert [e.priority for e in entries] == [0.2, 0.9]
    assert entries[1].provenance.source == "x"
    assert store.verify().blocks == 1


def test_same_body_with_another_kind_is_another_block(store):
    a = store.put("s1", NewBlock("fact", "same"))
    b = store.put("s1", NewBlock("summary", "same"))
    assert a.id != b.id
    assert store.get(b.id).kind is BlockKind.SUMMARY


def test_session_lists_in_put_order_with_pagination(store):
    store.put_many("s1", [NewBlock("user-message", f"m{i}") for i in range(25)])
    assert [e.body for e in store.entries("s1", 10, 5)] == [f"m{i}" for i in range(10, 15)]
    assert [e.seq for e in store.entries("s1", limit=3, reverse=True)] == [24, 23, 22]
    assert [e.seq for e in store.entries("s1", 5, 2, reverse=True)] == [4, 3]
    assert store.session_info("s1").count == 25


def test_sessions_do_not_bleed_into_each_other_by_prefix(store):
    store.put("a", NewBlock("fact", "in a"))
    store.put("ab", NewBlock("fact", "in ab"))
    assert [e.body for e in store.entries("a")] == ["in a"]
    assert [s.session for s in store.sessions()] == ["a", "ab"]


def test_readding_an_edge_is_a_no_op(store):
    a, b = store.put_many("s", [NewBlock("fact", "a"), NewBlock("fact", "b")])
    assert store.add_edge(a.id, "supports", b.id) is True
    assert store.add_edge(a.id, "supports", b.id) is False
    assert store.edges_from(a.id) == [Edge(a.id, EdgeKind.SUPPORTS, b.id)]
    assert store.edges_to(b.id, "supports") == [Edge(a.id, EdgeKind.SUPPORTS, b.id)]
    assert store.edges_to(b.id, "parent") == []


def test_put_many_stores_blocks_and_edges_between_them_atomically(store):
    call = NewBlock("tool-call", '{"id":"t1","input":{},"name":"calc"}')
    result = NewBlock("tool-result", '{"content":"4","is_error":false,"tool_use_id":"t1"}')
    call_id = content_hash(BlockKind.TOOL_CALL, str(call.body))
    result_id = content_hash(BlockKind.TOOL_RESULT, str(result.body))
    store.put_many("s", [call, result], [Edge(call_id, EdgeKind.TOOL_INVOCATION, result_id)])
    assert store.edges_from(call_id)[0].dst == result_id


def test_a_failing_batch_writes_nothing(store):
    store.put("s", NewBlock("fact", "kept"))
    dangling = Edge("ab" * 32, EdgeKind.PARENT, "cd" * 32)
    with pytest.raises(InvalidEdge, match="not a stored block"):
        store.put_many("s", [NewBlock("fact", "new")], [dangling])
    assert [e.body for e in store.entries("s")] == ["kept"]
    assert store.verify().ok


def test_delete_removes_every_edge_entry_and_count(store):
    a, b, c = store.put_many("s", [NewBlock("fact", x) for x in "abc"])
    store.put("t", NewBlock("fact", "b"))
    store.add_edge(a.id, "parent", b.id)
    store.add_edge(b.id, "supports", c.id)
    store.delete_block(b.id)
    assert not store.has(b.id)
    assert store.edges_from(a.id) == [] and store.edges_to(c.id) == []
    assert [e.body for e in store.entries("s")] == ["a", "c"]
    assert store.session_info("t").count == 0
    assert store.verify().ok


def test_purge_keeps_blocks_that_other_sessions_use(store):
    store.put_many("s", [NewBlock("fact", "shared"), NewBlock("fact", "only s")])
    store.put("t", NewBlock("fact", "shared"))
    report = store.purge_session("s")
    assert (report.entries_removed, report.blocks_deleted, report.blocks_kept) == (2, 1, 1)
    assert [e.body for e in store.entries("t")] == ["shared"]
    with pytest.raises(SessionNotFound):
        store.session_info("s")
    assert store.verify().ok


def test_seq_numbers_keep_growing_after_deletes(store):
    a, _ = store.put_many("s", [NewBlock("fact", "a"), NewBlock("fact", "b")])
    store.delete_block(a.id)
    assert store.put("s", NewBlock("fact", "c")).seq == 2


def test_unique_id_prefixes_resolve_and_unknown_ids_say_so(store):
    entry = store.put("s", NewBlock("fact", "x"))
    assert store.get(entry.id[:8]).id == entry.id
    with pytest.raises(BlockNotFound, match="no block"):
        store.get("0000" if not entry.id.startswith("0000") else "ffff")
    with pytest.raises(InvalidBlock, match="not a block id"):
        store.get("not-hex")


@pytest.mark.parametrize(
    ("block", "error", "message"),
    [
        (NewBlock("fact", b"\xff\xfe bad"), InvalidBlock, "not valid UTF-8"),
        (NewBlock("fact", ""), InvalidBlock, "empty"),
        (NewBlock("factoid", "x"), InvalidBlock, "unknown block kind"),
        (NewBlock("fact", "x", priority=1.5), InvalidBlock, "outside"),
        (NewBlock("fact", "x", priority=float("nan")), InvalidBlock, "outside"),
        (NewBlock("fact", "\ud800"), InvalidBlock, "surrogates"),
    ],
)
def test_bad_blocks_are_refused_and_nothing_is_written(store, block, error, message):
    store.put("s", NewBlock("fact", "kept"))
    with pytest.raises(error, match=message):
        store.put_many("s", [NewBlock("fact", "would be first"), block])
    assert [e.body for e in store.entries("s")] == ["kept"]


def test_blocks_over_the_size_limit_are_refused(tmp_path):
    store = open_store(tmp_path / "small", max_block_bytes=100)
    with pytest.raises(BlockTooLarge, match="over the limit of 100"):
        store.put("s", NewBlock("document-chunk", "x" * 101))
    assert store.session_count() == 0


def test_default_size_limit_is_16_mib(store):
    assert store.max_block_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize("session", ["", "has space", "x" * 201, "-lead", "nul\x00"])
def test_bad_session_ids_are_refused(store, session):
    with pytest.raises(InvalidSession):
        store.put(session, NewBlock("fact", "x"))


def test_unknown_edge_kind_and_self_loops_are_refused(store):
    a = store.put("s", NewBlock("fact", "a"))
    with pytest.raises(InvalidEdge, match="unknown edge kind"):
        store.add_edge(a.id, "likes", a.id)
    with pytest.raises(InvalidEdge, match="itself"):
        store.add_edge(a.id, "parent", a.id)


def test_a_path_that_is_not_a_store_is_refused_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreNotAStore, match="other files"):
        open_store(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(StoreNotAStore, match="is a file"):
        open_store(tmp_path / "notes.txt")
    with pytest.raises(StoreNotAStore, match="llm386 init"):
        open_store(tmp_path / "missing", create=False)


def test_a_garbage_data_file_is_refused(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "data.mdb").write_bytes(b"this is not lmdb" * 512)
    with pytest.raises(StoreNotAStore):
        open_store(tmp_path / "s")


def test_the_map_grows_on_its_own_when_full(tmp_path, monkeypatch):
    monkeypatch.setattr(lmdbenv, "INITIAL_MAP_SIZE", 1024 * 1024)
    store = open_store(tmp_path / "grow")
    for i in range(8):
        store.put("s", NewBlock("document-chunk", f"{i} " + "y" * 400_000))
    assert store.env.env.info()["map_size"] > 1024 * 1024
    assert store.session_info("s").count == 8
    assert store.verify().ok


def test_token_counts_are_cached_per_tokenizer(store):
    entry = store.put("s", NewBlock("fact", "hello there, world"))
    o200k = store.token_counts([entry.id], "o200k_base")
    assert o200k == [4]
    assert store.token_counts([entry.id], "cl100k_base")[0] > 0


def test_verify_finds_and_repair_fixes_dangling_rows(store):
    a, b = store.put_many("s", [NewBlock("fact", "a"), NewBlock("fact", "b")])
    store.add_edge(a.id, "parent", b.id)
    # Simulate damage from outside the API: a block row disappears.
    store.kv.write(lambda t: t.delete("blocks", bytes.fromhex(b.id)))
    codes = {p.code for p in store.verify().problems}
    assert {"dangling-entry", "dangling-edge"} <= codes
    store.repair()
    assert store.verify().ok
    assert [e.body for e in store.entries("s")] == ["a"]


def test_verify_reports_a_body_that_no_longer_matches_its_hash(store):
    a = store.put("s", NewBlock("fact", "original"))
    forged = b'{"b":"tampered","c":0,"k":"fact","p":0.5,"v":{}}'
    store.kv.write(lambda t: t.put("blocks", bytes.fromhex(a.id), forged))
    report = store.verify()
    assert [p.code for p in report.problems] == ["hash-mismatch"]
    assert store.repair().unfixable[0].code == "hash-mismatch"


def test_session_meta_merges(store):
    store.put("s", NewBlock("fact", "x"))
    store.set_session_meta("s", model="gpt-4o")
    info = store.set_session_meta("s", reward=0.0)
    assert info.meta == {"model": "gpt-4o", "reward": 0.0}


def test_hooks_run_inside_the_write_and_see_removals(store):
    seen: list[tuple[str, list[int]]] = []

    class Hook:
        def on_put(self, txn, entries):
            seen.append(("put", [e.seq for e in entries]))

        def on_remove(self, txn, entries):
            seen.append(("remove", [e.seq for e in entries]))

        def on_meta(self, txn, session):
            seen.append(("meta", [session]))

    store.add_hook(Hook())
    a, _ = store.put_many("s", [NewBlock("fact", "a"), NewBlock("fact", "b")])
    store.delete_block(a.id)
    store.purge_session("s")
    assert seen == [("put", [0, 1]), ("remove", [0]), ("remove", [1])]


kinds = st.sampled_from(list(BlockKind))


@settings(WITH_FIXTURES, max_examples=40)
@given(st.lists(st.tuples(kinds, st.text(min_size=1, max_size=200), st.floats(0, 1)), max_size=20))
def test_store_round_trips_whatever_is_put(tmp_path_factory, items):
    store = open_store(tmp_path_factory.mktemp("rt"))
    if items:
        store.put_many("s", [NewBlock(k, b, p) for k, b, p in items])
    got = store.entries("s") if items else []
    assert [(e.kind, e.body, e.priority) for e in got] == items
    assert all(store.get(e.id).body == e.body for e in got)
    assert store.verify().ok
    store.close()
