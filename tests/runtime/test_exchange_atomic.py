"""Importing a session writes everything or nothing, and says truthfully why it refused."""

from __future__ import annotations

import hashlib
import json

import pytest

from runtime import LmdbStore, open_store
from runtime.blocks import NewBlock, canonical_json
from runtime.errors import InvalidInput, StoreCorrupted, StoreFull
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.tracing.records import Provider, StoredTrace, TraceRecord, new_call_id, prompt_hash
from runtime.transfer.exchange import export_lines, import_session

SESSION = "trip-1"


def _record(turn: int, request: bytes) -> TraceRecord:
    cid = new_call_id()
    return TraceRecord(cid, SESSION, turn, int(cid[:13]), Provider.OFFLINE, "offline",
                       prompt_hash(request), len(request), upto_seq=2)  # fmt: skip


@pytest.fixture
def good(tmp_path) -> bytes:
    """The export file of a session with six entries, an edge and two traces."""
    store = open_store(tmp_path / "source")
    traces = LmdbTraceStore(store)
    kinds = ["system", "user-message", "assistant-message"] * 2
    entries = store.put_many(SESSION, [NewBlock(k, f"body {i}") for i, k in enumerate(kinds)])
    store.add_edge(entries[2].id, "parent", entries[1].id)
    store.set_session_meta(SESSION, model="claude-haiku-4-5")
    request = canonical_json({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    traces.record_many(
        [StoredTrace(_record(1, request), request), StoredTrace(_record(2, request), request)]
    )
    data = b"".join(export_lines(store, traces, SESSION)[0])
    store.close()
    return data


def _edited(data: bytes, edit) -> bytes:
    """``data`` with ``edit`` applied to its parsed lines and the footer digest recomputed."""
    items = [json.loads(line) for line in data.splitlines()]
    edit(items)
    body = b"".join(canonical_json(item) + b"\n" for item in items[:-1])
    footer = {"type": "footer", "sha256": hashlib.sha256(body).hexdigest()}
    return body + canonical_json(footer) + b"\n"


def _last_trace(items):
    return [item for item in items if item["type"] == "trace"][-1]["record"]


def _empty(store: LmdbStore, traces: LmdbTraceStore) -> bool:
    def rows(txn) -> int:
        return sum(txn.stat(store.env.db(name))["entries"] for name in (b"blocks", b"edges_out"))

    blocks_and_edges = lmdbenv.read(store.env, rows)
    return store.session_count() == 0 and traces.count() == 0 and blocks_and_edges == 0


def test_a_trace_with_turn_zero_writes_nothing_and_the_good_file_imports_after(good, tmp_path):
    bad = _edited(good, lambda items: _last_trace(items).update(turn=0))
    store = open_store(tmp_path / "target")
    traces = LmdbTraceStore(store)
    with pytest.raises(InvalidInput, match="turn 0 is not valid.*nothing was imported"):
        import_session(store, traces, bad, name="bad.jsonl")
    assert _empty(store, traces)
    report = import_session(store, traces, good, name="good.jsonl")
    assert (report.entries, report.edges, report.traces) == (6, 1, 2)
    assert len(store.entries(SESSION)) == 6 and traces.count() == 2
    assert store.session_info(SESSION).meta == {"model": "claude-haiku-4-5"}


def test_a_call_id_twice_in_the_file_writes_nothing(good, tmp_path):
    def duplicate(items):
        first, last = [item for item in items if item["type"] == "trace"]
        last["record"]["call_id"] = first["record"]["call_id"]

    store = open_store(tmp_path / "target")
    traces = LmdbTraceStore(store)
    with pytest.raises(InvalidInput, match="appears twice in the file; nothing was imported"):
        import_session(store, traces, _edited(good, duplicate))
    assert _empty(store, traces)
    import_session(store, traces, good)
    assert traces.count() == 2


class _DiskFullWhileRecordingTraces(LmdbTraceStore):
    """A trace store whose disk fills up after the blocks of an import are written."""

    def record_many_in(self, t, items) -> None:  # the one write every trace write goes through
        super().record_many_in(t, items[:1])
        raise StoreFull("the disk filled up (injected)")


def test_a_failure_while_writing_traces_leaves_no_blocks_behind(good, tmp_path):
    store = open_store(tmp_path / "target")
    with pytest.raises(StoreFull):
        import_session(store, _DiskFullWhileRecordingTraces(store), good)
    traces = LmdbTraceStore(store)
    assert _empty(store, traces)
    import_session(store, traces, good)  # not refused as "already exists"
    assert store.session_count() == 1 and traces.count() == 2


def test_a_damaged_trace_with_the_same_call_id_is_reported_not_treated_as_absent(good, tmp_path):
    store = open_store(tmp_path / "target")
    traces = LmdbTraceStore(store)
    cid = _last_trace([json.loads(line) for line in good.splitlines()])["call_id"]
    lmdbenv.write(store.env, lambda txn: txn.put(cid.encode(), b"{}", db=store.env.db(b"traces")))
    with pytest.raises(StoreCorrupted):
        import_session(store, traces, good)
    assert store.session_count() == 0
