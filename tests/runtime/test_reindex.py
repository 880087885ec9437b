"""``llm386 reindex``: derived indexes dropped or damaged are rebuilt to what the feed built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime import LmdbStore, NewBlock
from runtime.blocks import BlockKind, Edge, EdgeKind
from runtime.cli import main
from runtime.indexes.blockuses import block_uses
from runtime.indexes.rebuild import reindex
from runtime.indexes.sessionindex import DB_NAMES, Meta, changes
from runtime.indexes.snapshot import index_for
from runtime.packer.core import pack
from runtime.pager.core import PageRequest, page
from runtime.storage.kv import Tables
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.traces import LmdbTraceStore
from tests.runtime.pager_support import Session, profile
from tests.runtime.test_webviews import _record

TASK = "which flight is HAT137, and what tier is user u7?"


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = LmdbStore(tmp_path / "store")
    index_for(s)
    yield s
    s.close()


def _fill(store: LmdbStore, name: str = "s", turns: int = 8) -> Session:
    """Write a session as an agent would: many writes, tool pairs, edges added after the fact."""
    session = Session(store, name)
    session.system("You are a careful airline agent.")
    session.tool_schema()
    fact = session.put(BlockKind.FACT, "Mia is a gold member", label="fact")
    for i in range(turns):
        session.user(f"Please look up user u{i} and the flight HAT{130 + i}.")
        session.tool_turn("get_user", {"user_id": f"u{i}"}, json.dumps({"tier": "gold", "n": i}),
                          said=f"Looking up u{i}.")  # fmt: skip
        reply = session.assistant(f"User u{i} is gold; flight HAT{130 + i} is booked.")
        if i % 3 == 0:
            store.add_edges([Edge(reply, EdgeKind.SUPPORTS, fact)])
    summary = store.put(name, NewBlock(BlockKind.SUMMARY, "u0 to u3 are all gold members"))
    store.add_edges([Edge(summary.id, EdgeKind.DERIVED_FROM, fact)])
    return session


def _prompt(store: LmdbStore, session: str = "s") -> tuple[str, list[str]]:
    plan = page(store, PageRequest(session, TASK, profile(600)))  # tight: retrieval decides
    return pack(store, plan).prompt_hash, [s.candidate.block_id for s in plan.selected]


def _dump(t: Tables) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every derived row, with each session header's generations left out (they only grow)."""
    out = {name: list(t.scan(name)) for name in DB_NAMES[1:]}
    metas = [(k, Meta.decode(v)) for k, v in t.scan("ix_meta")]
    out["ix_meta"] = [(k, repr((m.next_seq, m.n_docs, m.total_len, m.stale)).encode())
                      for k, m in metas if m is not None]  # fmt: skip
    return out


def test_an_index_kept_incrementally_equals_one_rebuilt_from_scratch(store: LmdbStore) -> None:
    _fill(store, "s")
    _fill(store, "t", turns=3)
    store.delete_block(store.entries("t")[-2].id)  # a removal the feed followed
    before = store.kv.read(_dump)
    gens = {k: Meta.decode(v) for k, v in store.kv.read(lambda t: list(t.scan("ix_meta")))}
    assert before["ix_post"] and before["ix_calls"] and before["ix_cols"]

    report = reindex(store)

    assert (report.sessions, report.entries) == (
        2,
        len(store.entries("s")) + len(store.entries("t")),
    )
    assert store.kv.read(_dump) == before
    for key, meta in store.kv.read(lambda t: list(t.scan("ix_meta"))):
        old, new = gens[key], Meta.decode(meta)
        assert old is not None and new is not None
        assert new.gen > old.gen and new.rgen > old.rgen  # generations never go back


def test_reindex_repairs_a_dropped_and_a_damaged_index_table_to_the_same_prompt(
    store: LmdbStore, capsys: pytest.CaptureFixture[str]
) -> None:
    _fill(store, turns=20)
    want = _prompt(store)
    counter = store.kv.read(changes)

    def damage(t: Tables) -> None:
        t.clear("ix_post")  # the BM25 postings are gone, the headers still say all is fresh
        t.clear("ix_terms")

    store.kv.write(damage)
    path = str(store.path)
    lmdbenv.close_env(path)
    damaged = LmdbStore(path)  # a new process's view: nothing cached from before the damage
    assert _prompt(damaged) != want

    assert main(["reindex", "--store", path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sessions"] == 1 and "ix_post" in report["tables"]
    assert _prompt(damaged) == want
    assert damaged.kv.read(changes) > counter  # readers that cached by the counter look again


def test_reindex_rebuilds_block_uses_from_the_trace_store(store: LmdbStore) -> None:
    traces = LmdbTraceStore(store)
    ids = [e.id for e in store.put_many("s", [NewBlock(BlockKind.USER_MESSAGE, f"m{i}")
                                              for i in range(3)])]  # fmt: skip
    traces.record_many([_record("s", 1, ids[:1]), _record("s", 2, ids[:2])])
    want = block_uses(store, traces, ids[0])
    store.kv.write(lambda t: t.clear("uses_by_block"))  # rows lost, the marks say all is done
    assert block_uses(store, traces, ids[0]).records == 0

    report = reindex(store, traces)

    assert report.trace_records == 2
    assert block_uses(store, traces, ids[0]) == want


def _index_rows(store: LmdbStore, session: str) -> dict[str, list[tuple[bytes, bytes]]]:
    start = session.encode() + b"\x00"
    return store.kv.read(
        lambda t: {name: list(t.scan(name, start)) for name in ("ix_post", "ix_terms", "ix_hist")}
    )


def test_postings_past_one_chunk_are_those_of_putting_every_block_at_once(tmp_path: Path):
    # 700 documents sharing terms: appends in batches fill a term's last chunk and start the
    # next (512 postings a chunk), and must leave the rows one batch of all 700 leaves.
    blocks = [NewBlock(BlockKind.USER_MESSAGE, f"common word {i % 7} extra{i}") for i in range(700)]
    rows = []
    for name, batches in (("whole", [700]), ("apart", [300, 211, 1, 188])):
        store = LmdbStore(tmp_path / name)
        index_for(store)
        at = 0
        for size in batches:
            store.put_many("s", blocks[at : at + size])
            at += size
        rows.append(_index_rows(store, "s"))
        reindex(store)
        assert _index_rows(store, "s") == rows[-1]  # and what a rebuild writes
        store.close()
    whole, apart = rows
    assert whole == apart and len(whole["ix_post"]) > len(whole["ix_terms"])  # some span chunks
