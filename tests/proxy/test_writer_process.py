"""The recorder's writer in a process of its own: it records, a crash is seen and reported, a
new process takes over (or recording says it is down), and stopping leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from runtime import open_store
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.storage.lmdb.store import LmdbStore
from runtime.storage.lmdb.traces import LmdbTraceStore
from tests.fakes.anthropic_server import AnthropicServer
from tests.proxy.conftest import API_KEY
from tests.proxy.scripted import captured


def _body(turn: int) -> str:
    """Call ``turn`` of one agent: each call's list extends the one before."""
    messages = []
    for n in range(turn + 1):
        messages += [
            {"role": "user", "content": f"step {n}"},
            {"role": "assistant", "content": "ok"},
        ]
    return json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": messages[:-1]})


def _proxied(
    tmp_path: Path, restarts: int
) -> Iterator[tuple[ProxyThread, Recorder, LmdbStore, LmdbTraceStore]]:
    path = tmp_path / "store"
    store = open_store(path)
    traces = LmdbTraceStore(store)
    recorder = Recorder(store, traces, process=path, restarts=restarts).start()
    try:
        assert recorder.wait_ready(120)
        with AnthropicServer() as up:
            upstreams = {Family.ANTHROPIC: up.base_url, Family.OPENAI: up.base_url}
            with ProxyThread(ProxySettings(port=0, upstreams=upstreams), recorder) as proxy:
                yield proxy, recorder, store, traces
    finally:
        recorder.close()
        store.close()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[ProxyThread, Recorder, LmdbStore, LmdbTraceStore]]:
    yield from _proxied(tmp_path, restarts=3)


@pytest.fixture
def proxied_once(
    tmp_path: Path,
) -> Iterator[tuple[ProxyThread, Recorder, LmdbStore, LmdbTraceStore]]:
    yield from _proxied(tmp_path, restarts=0)


def _post(proxy: ProxyThread, turn: int = 0) -> httpx2.Response:
    return httpx2.post(proxy.base_url + "/v1/messages", content=_body(turn),
                       headers={"x-api-key": API_KEY})  # fmt: skip


def _status(proxy: ProxyThread) -> dict[str, object]:
    status: dict[str, object] = httpx2.get(proxy.base_url + "/llm386/status").json()
    return status


def _kill(recorder: Recorder) -> int:
    pid = recorder.status()["writer"]["process"]
    os.kill(pid, signal.SIGKILL)
    return int(pid)


def _until(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)
    assert check(), "timed out"  # type: ignore[operator]


def test_the_writer_process_records_turns_this_process_reads(
    proxied: tuple[ProxyThread, Recorder, LmdbStore, LmdbTraceStore],
) -> None:
    proxy, recorder, store, traces = proxied
    assert all(_post(proxy, turn).status_code == 200 for turn in range(3))
    assert recorder.flush(30)
    records = traces.list(limit=None)
    assert len(records) == 3 and len({r.session for r in records}) == 1
    status = _status(proxy)
    assert status["recorded"] == 3 and status["lost"] == 0 and status["recording"] is True
    writer = status["writer"]
    assert isinstance(writer, dict) and writer["alive"] is True and writer["started"] == 1
    assert writer["process"] != os.getpid()


def test_a_killed_writer_process_is_reported_and_replaced(
    proxied: tuple[ProxyThread, Recorder, LmdbStore, LmdbTraceStore],
) -> None:
    proxy, recorder, store, traces = proxied
    assert _post(proxy).status_code == 200
    assert recorder.flush(30)
    first = _kill(recorder)
    _until(lambda: recorder.status()["writer"]["process"] not in (first, None))
    assert recorder.wait_ready(0)
    _until(lambda: _status(proxy)["recording"] is True, 120)
    status = _status(proxy)
    assert status["writer"] == {"process": status["writer"]["process"], "alive": True,  # type: ignore[index]
                                "started": 2}  # fmt: skip
    answer = _post(proxy, 1)
    assert answer.status_code == 200 and "x-llm386-recorded" not in answer.headers
    assert recorder.flush(30)
    assert len(traces.list(limit=None)) == 2  # the new process carries on the same session
    assert len({r.session for r in traces.list(limit=None)}) == 1
    assert _status(proxy)["lost"] == 0


def test_a_writer_that_cannot_be_restarted_says_recording_is_down(
    proxied_once: tuple[ProxyThread, Recorder, LmdbStore, LmdbTraceStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, recorder, store, traces = proxied_once
    _kill(recorder)
    _until(lambda: _status(proxy)["recording"] is False)
    _until(lambda: "recording is down" in str(_status(proxy)["last_error"]))
    answer = _post(proxy)  # still forwarded, marked, and counted lost
    assert answer.status_code == 200 and answer.headers["x-llm386-recorded"] == "false"
    assert recorder.flush(30)
    status = _status(proxy)
    assert status["lost"] == 1 and status["recorded"] == 0
    assert "recording is DOWN" in caplog.text and API_KEY not in caplog.text
    assert traces.list(limit=None) == []


def test_a_writer_process_killed_mid_batch_loses_nothing_silently(
    proxied: tuple[ProxyThread, Recorder, LmdbStore, LmdbTraceStore],
) -> None:
    proxy, recorder, store, traces = proxied
    base = [{"role": "user", "content": "x" * 4000}]
    calls = [captured("/v1/messages", json.dumps({"model": "claude-sonnet-4-6", "messages": [
        *base, {"role": "assistant", "content": f"a{n}"}, {"role": "user", "content": f"u{n}"}]
    }).encode(), n) for n in range(1500)]  # fmt: skip
    assert all(recorder.submit(call) for call in calls)
    _until(lambda: recorder.status()["recorded"] > 0, 120)  # it is writing now
    first = _kill(recorder)
    assert recorder.flush(300)
    status = recorder.status()
    assert status["recorded"] + status["lost"] == len(calls)  # every call is counted once
    assert 0 < status["lost"] <= 256 and status["writer"]["process"] != first
    assert status["writer"]["started"] == 2 and status["recording"] is True
    stored = len(traces.list(limit=None))
    # The batch that was being written may have committed before the process died.
    assert status["recorded"] <= stored <= status["recorded"] + status["lost"]


@pytest.mark.parametrize("process", [True, False], ids=["process", "thread"])
def test_closing_before_the_queue_is_written_counts_the_rest_lost(
    tmp_path: Path, process: bool, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store"
    store = open_store(path)
    traces = LmdbTraceStore(store)
    recorder = Recorder(store, traces, process=path if process else None, batch=64).start()
    try:
        assert recorder.wait_ready(120)
        base = [{"role": "user", "content": "x" * 4000}]
        calls = [captured("/v1/messages", json.dumps({"model": "claude-sonnet-4-6", "messages": [
            *base, {"role": "assistant", "content": f"a{n}"}, {"role": "user", "content": f"u{n}"}]
        }).encode(), n) for n in range(2000)]  # fmt: skip
        assert all(recorder.submit(call) for call in calls)
        _until(lambda: recorder.status()["recorded"] > 0, 120)  # it is writing now
        recorder.close(timeout=0.2)  # far too short to write 2000 calls
        status = recorder.status()
        assert status["recorded"] + status["lost"] == len(calls), status  # each counted once
        assert status["lost"] > 0 and status["recording"] is False
        assert "LOST the records of" in caplog.text
        settled = (status["recorded"], status["lost"])
        time.sleep(0.5)  # nothing is written, or counted, after close returned
        assert (recorder.status()["recorded"], recorder.status()["lost"]) == settled
        stored = len(traces.list(limit=None))
        # The batch being written when close gave up may have committed just before.
        assert status["recorded"] <= stored <= status["recorded"] + 64
    finally:
        recorder.close()
        store.close()
