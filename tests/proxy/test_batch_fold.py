"""A batch's derived rows written once: recording calls many to a batch stores what recording
them one to a batch stores, and leaves the session index a rebuild would make and aggregates
that verify against the records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime import open_store
from runtime.indexes.rebuild import reindex
from runtime.indexes.sessionindex import DB_NAMES, Meta
from runtime.proxy.turns import TurnWriter
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Tables
from runtime.storage.tracestore import KvTraceStore
from tests.proxy.scripted import scripted_exchanges, stored_state


def _recorded(path: Path, per_batch: int) -> tuple[BlockStore, KvTraceStore]:
    store = open_store(path)
    traces = KvTraceStore(store)
    writer = TurnWriter(store, traces)
    calls = scripted_exchanges()
    for start in range(0, len(calls), per_batch):
        writer.write_batch(calls[start : start + per_batch])
    return store, traces


def _index_rows(store: BlockStore) -> dict[str, Any]:
    """Every row of the session index, generations left out (a rebuild only raises them), and
    headers of sessions with nothing indexed (a rebuild writes one for an empty session)."""

    def dump(t: Tables) -> dict[str, Any]:
        out: dict[str, Any] = {name: sorted(t.scan(name)) for name in DB_NAMES[1:]}
        out["ix_meta"] = sorted(
            (key, meta.next_seq, meta.n_docs, meta.total_len, meta.stale)
            for key, raw in t.scan("ix_meta")
            if (meta := Meta.decode(raw)) is not None and meta.next_seq
        )
        return out

    return store.kv.read(dump)


def test_one_batch_of_every_call_stores_what_one_call_a_batch_stores(tmp_path: Path) -> None:
    singly, singly_traces = _recorded(tmp_path / "one", per_batch=1)
    batched, batched_traces = _recorded(tmp_path / "all", per_batch=len(scripted_exchanges()))
    try:
        assert stored_state(batched, batched_traces) == stored_state(singly, singly_traces)
        assert batched_traces.verify().ok and batched.verify().ok
        for store in (singly, batched):
            sessions = [info.session for info in store.sessions() if info.count]
            assert len(sessions) > 3
            assert all(store.kv.read(lambda t, s=s: Meta.decode(t.get("ix_meta", s.encode())))
                       for s in sessions)  # fmt: skip
    finally:
        singly.close()
        batched.close()


def test_a_batch_leaves_the_session_index_a_rebuild_makes(tmp_path: Path) -> None:
    store, traces = _recorded(tmp_path / "store", per_batch=len(scripted_exchanges()))
    try:
        kept = _index_rows(store)
        assert kept["ix_post"] and kept["ix_hist"] and kept["ix_calls"]
        reindex(store, traces)
        assert _index_rows(store) == kept
    finally:
        store.close()
