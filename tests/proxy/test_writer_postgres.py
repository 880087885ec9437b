"""The recorder's writer process on PostgreSQL: it opens the store by its URL, writes batches
of turns this process reads, continues sessions across batches, and a turn it wrote is
committed (visible on a connection of its own) before the recorder counts it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from runtime import open_store
from runtime.proxy import Recorder
from runtime.storage.interface import BlockStore
from runtime.storage.tracestore import KvTraceStore
from tests.proxy.scripted import captured


def _call(session: int, turn: int) -> bytes:
    """Call ``turn`` of agent ``session``: each call's message list extends the one before."""
    messages = []
    for n in range(turn + 1):
        messages.append({"role": "user", "content": f"agent {session} step {n}"})
        if n < turn:
            messages.append({"role": "assistant", "content": f"done {n}"})
    return json.dumps({"model": "claude-sonnet-4-6", "system": "be careful " * 40,
                       "messages": messages}).encode()  # fmt: skip


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[tuple[str, BlockStore]]:
    store = open_store(pg_url)
    yield pg_url, store
    store.close()


def test_the_writer_process_records_on_postgresql(pg_store: tuple[str, BlockStore]) -> None:
    url, store = pg_store
    traces = KvTraceStore(store)
    recorder = Recorder(store, traces, process=url, batch=16).start()
    try:
        assert recorder.wait_ready(120)
        calls = [captured("/v1/messages", _call(s, turn), 10 * turn + s)
                 for turn in range(6) for s in range(5)]  # fmt: skip
        assert all(recorder.submit(call) for call in calls)
        assert recorder.flush(120)
        status = recorder.status()
        assert status["recorded"] == len(calls) and status["lost"] == 0, status
        assert status["writer"]["alive"] and status["writer"]["started"] == 1
        assert status["store"] == store.location
    finally:
        recorder.close()
    # What the writer committed is seen by a store opened afterwards, on its own connections.
    again = open_store(url)
    try:
        records = KvTraceStore(again).list(limit=None)
        assert len(records) == len(calls)
        by_session: dict[str, list[int]] = {}
        for record in records:
            by_session.setdefault(record.session, []).append(record.turn)
        assert sorted(sorted(turns) for turns in by_session.values()) == [[1, 2, 3, 4, 5, 6]] * 5
        for session in by_session:
            assert [e.kind.value for e in again.entries(session)][:3] == [
                "system", "user-message", "assistant-message"]  # fmt: skip
            assert again.session_info(session).count == 1 + 2 * 6 - 1
        assert KvTraceStore(again).verify().ok and again.verify().ok
    finally:
        again.close()
