"""Requests stored as shared chunks: exact bytes back, old stores still read, purge and verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.longsession import long_session
from runtime import open_store
from runtime.blocks import canonical_json
from runtime.errors import StoreCorrupted
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.traces import LmdbTraceStore, pack_bytes
from runtime.storage.tracechunks import release_row
from runtime.tracing.records import Provider, TraceRecord, new_call_id, prompt_hash
from runtime.transfer.importer import (
    DEMO_DIR,
    ImportOptions,
    import_transcripts,
    load_demo_sessions,
)
from runtime.transfer.transcripts import read_tools

GOLDEN = Path(__file__).parent / "golden" / "demo_prompt_hashes.json"
TOOLS = read_tools((DEMO_DIR / "tools.json").read_bytes(), "tools.json")
CHUNK_TABLES = (b"trace_chunks", b"trace_nodes", b"trace_refs")


@pytest.fixture
def env(tmp_path):
    store = open_store(tmp_path / "store")
    yield store, LmdbTraceStore(store)
    store.close()


def _make(request: bytes, session: str = "s", turn: int = 1) -> TraceRecord:
    cid = new_call_id()
    return TraceRecord(call_id=cid, session=session, turn=turn, started_at=int(cid[:13]),
                       provider=Provider.ANTHROPIC, model="m", prompt_hash=prompt_hash(request),
                       request_size=len(request))  # fmt: skip


def _rows(store, name: bytes) -> int:
    return lmdbenv.read(store.env, lambda txn: txn.stat(store.env.db(name))["entries"])


def _value_bytes(store, *names: bytes) -> int:
    def total(txn):
        return sum(len(v) for n in names for _, v in txn.cursor(db=store.env.db(n)))

    return lmdbenv.read(store.env, total)


def _turn_hashes(traces, session: str) -> list[list]:
    records = traces.list(session=session, newest_first=False, limit=None)
    return [[r.turn, r.prompt_hash, r.request_size] for r in records]


def test_imported_prompt_hashes_are_byte_identical_to_the_whole_request_importer(env):
    store, traces = env
    golden = json.loads(GOLDEN.read_text())
    report = load_demo_sessions(store, traces)
    data = (DEMO_DIR / "sessions.json").read_bytes()
    items = json.loads(data)[:3]
    import_transcripts(store, traces, json.dumps(items).encode(),
                       options=ImportOptions(prefix="notools"))  # fmt: skip
    sessions = [
        *report.sessions,
        *(f"notools-task{i['task_id']:03d}-trial{i['trial']}" for i in items),
    ]
    assert sorted(sessions) == sorted(golden)
    for session in sessions:
        assert _turn_hashes(traces, session) == golden[session], session
    record = traces.list(session=sessions[0], newest_first=False, limit=None)[-1]
    assert prompt_hash(traces.request_bytes(record.prompt_hash)) == record.prompt_hash
    assert traces.verify().ok


def test_a_long_sessions_requests_take_about_the_space_of_its_new_content(env):
    store, traces = env
    data = long_session(1_500_000)
    report = import_transcripts(store, traces, data, tools=TOOLS)
    assert report.turns_recorded == 24
    stored = _value_bytes(store, b"trace_requests", *CHUNK_TABLES, b"traces")
    # Whole requests and records took 1.2 times this transcript (compressed) and grew with the
    # square of its length; chunked they take 0.3 times it.
    assert stored < len(data) / 2
    last = traces.list(limit=1)[0]
    messages = json.loads(data)[0]["traj"]
    expected = canonical_json({"messages": messages[: len(messages) - 1], "model": "gpt-4o",
                               "tools": [dict(t.openai) for t in TOOLS]})  # fmt: skip
    assert traces.request_bytes(last.prompt_hash) == expected
    assert last.replay_complete and traces.verify().ok


def test_requests_sharing_a_prefix_share_chunks_and_a_purge_deletes_only_unshared_ones(env):
    store, traces = env
    prefix = json.dumps([{"role": "tool", "content": f"x{i}" * 50} for i in range(2000)])
    a, b = (prefix + ' "a"').encode(), (prefix + ' "another ending"').encode()
    traces.record(_make(a, "one"), a)
    alone = _rows(store, b"trace_chunks")
    traces.record(_make(b, "two"), b)
    assert _rows(store, b"trace_chunks") <= alone + 2
    assert traces.request_bytes(prompt_hash(b)) == b
    traces.delete_session("one")
    assert traces.request_bytes(prompt_hash(b)) == b and traces.verify().ok
    traces.delete_session("two")
    assert [_rows(store, name) for name in (b"trace_requests", *CHUNK_TABLES)] == [0, 0, 0, 0]


def test_a_damaged_chunk_is_reported_never_returned_and_repair_says_it_cannot_fix_it(env):
    store, traces = env
    request = json.dumps([f"message {i}" for i in range(5000)]).encode()
    record = _make(request)
    traces.record(record, request)
    chunks = store.env.db(b"trace_chunks")

    def damage(txn):
        key, value = next(iter(txn.cursor(db=chunks)))
        txn.put(key, pack_bytes(b"not what was stored"), db=chunks)

    lmdbenv.write(store.env, damage)
    with pytest.raises(StoreCorrupted, match="llm386 verify"):
        traces.request_bytes(record.prompt_hash)
    assert "request-damaged" in {p.code for p in traces.verify().problems}
    assert [p.code for p in traces.repair().unfixable] == ["request-damaged"]


def test_repair_rebuilds_chunk_counts_and_drops_chunks_nobody_uses(env):
    store, traces = env
    request = json.dumps([f"message {i}" for i in range(5000)]).encode()
    traces.record(_make(request), request)
    refs = store.env.db(b"trace_refs")
    lmdbenv.write(store.env, lambda txn: txn.drop(refs, delete=False))
    lmdbenv.write(store.env, lambda txn: txn.put(b"\x07" * 32, pack_bytes(b"lost"),
                                                 db=store.env.db(b"trace_chunks")))  # fmt: skip
    assert {"chunk-count", "chunk-orphan"} <= {p.code for p in traces.verify().problems}
    report = traces.repair()
    assert not report.unfixable and traces.verify().ok
    assert traces.request_bytes(prompt_hash(request)) == request


def _old_format(store, traces, record: TraceRecord, request: bytes) -> None:
    """Rewrite a recorded request as schema 1 wrote it: the whole bytes, zlib-compressed."""
    key = bytes.fromhex(record.prompt_hash)

    def rewrite(t):
        release_row(t, t.get("trace_requests", key))
        t.put("trace_requests", key, pack_bytes(request))
        t.put("trace_meta", b"schema", b"1")

    store.kv.write(rewrite)


def test_a_store_written_with_whole_requests_still_reads_verifies_and_purges(tmp_path):
    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)
    request = json.dumps([f"message {i}" for i in range(5000)]).encode()
    record = _make(request)
    traces.record(record, request)
    _old_format(store, traces, record, request)
    assert [_rows(store, name) for name in CHUNK_TABLES] == [0, 0, 0]
    store.close()

    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)  # schema 1 is read, and marked 2 as new writes are chunks
    assert (
        lmdbenv.read(store.env, lambda t: t.get(b"schema", db=store.env.db(b"trace_meta"))) == b"2"
    )
    assert traces.request_bytes(record.prompt_hash) == request
    assert traces.get(record.call_id).replay_complete and traces.verify().ok
    again = _make(request, turn=2)
    traces.record(again, request)  # the same hash: the whole row stays, nothing is chunked
    assert [_rows(store, name) for name in CHUNK_TABLES] == [0, 0, 0]
    assert traces.delete_session("s") == 2
    assert _rows(store, b"trace_requests") == 0 and traces.verify().ok
    store.close()


def test_a_read_only_store_from_before_chunking_reads_without_chunk_tables(tmp_path):
    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)
    request = b'{"messages":[]}'
    record = _make(request)
    traces.record(record, request)
    _old_format(store, traces, record, request)
    lmdbenv.write(
        store.env, lambda txn: [txn.drop(store.env.db(n), delete=True) for n in CHUNK_TABLES]
    )
    store.close()
    lmdbenv.close_env(tmp_path / "store")
    readonly = open_store(tmp_path / "store", readonly=True)
    traces = LmdbTraceStore(readonly)
    assert traces.request_bytes(record.prompt_hash) == request
    assert traces.get(record.call_id).replay_complete and traces.verify().ok
    readonly.close()
