"""A proxy running --fail-closed comes back by itself when its store takes writes again.

It refuses every call while recording is down, so no record would ever show that the store
works again: the recorder tries a write of its own while nothing is queued, and says recording
is back when one lands. Real PostgreSQL server, taken down and brought back; in-process writer
and writer process alike."""

from __future__ import annotations

import json
import logging
import time

import httpx2
import pytest

from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.proxy import recorder as recorder_module
from runtime.proxy.sessions import TABLE
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.postgres.engine import PostgresEngine
from runtime.storage.tracestore import KvTraceStore
from tests.fakes.anthropic_server import AnthropicServer
from tests.pg_server import PgServer
from tests.proxy.conftest import API_KEY


def _post(url: str, n: int) -> httpx2.Response:
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 8,
                       "messages": [{"role": "user", "content": f"call {n}"}]})  # fmt: skip
    return httpx2.post(url + "/v1/messages", content=body, headers={"x-api-key": API_KEY},
                       timeout=60)  # fmt: skip


def _status(url: str) -> dict:  # type: ignore[type-arg]
    return httpx2.get(url + "/llm386/status", timeout=30).json()


def _wait_for(url: str, recording: bool, seconds: float = 30.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + seconds
    while True:
        status = _status(url)
        if status["recording"] is recording or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


@pytest.mark.parametrize("in_process", [True, False], ids=["writer-thread", "writer-process"])
def test_fail_closed_recording_comes_back_when_the_database_does(
    pg_server: PgServer,
    pg_url: str,
    in_process: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(recorder_module, "PROBE_SECONDS", 0.2)
    caplog.set_level(logging.INFO, logger="llm386.proxy")
    store = KvBlockStore(PostgresEngine(pg_url, pool_timeout=1.0))  # wait 1 s, not 10
    traces = KvTraceStore(store)
    recorder = Recorder(store, traces, process=None if in_process else pg_url).start()
    assert recorder.wait_ready(120)
    try:
        with AnthropicServer() as up:
            upstreams = {Family.ANTHROPIC: up.base_url, Family.OPENAI: up.base_url}
            settings = ProxySettings(port=0, upstreams=upstreams, fail_closed=True)
            with ProxyThread(settings, recorder) as proxy:
                assert _post(proxy.base_url, 1).status_code == 200
                assert recorder.flush(60)
                with pg_server.outage(pg_url):
                    # Forwarded (recording was up when it came), but its record cannot land.
                    assert _post(proxy.base_url, 2).status_code == 200
                    assert recorder.flush(60)
                    down = _status(proxy.base_url)
                    refused = _post(proxy.base_url, 3)
                    time.sleep(1.0)  # probes while the database is still down fail
                    still = _status(proxy.base_url)
                back = _wait_for(proxy.base_url, True)
                taken = _post(proxy.base_url, 4)
                assert recorder.flush(60)
                final = _status(proxy.base_url)
                forwarded = up.request_count
    finally:
        recorder.close()
    assert down["recording"] is False and down["lost"] == 1, down
    assert refused.status_code == 503 and still["recording"] is False
    assert back["recording"] is True and back["last_error"] is None, back
    assert taken.status_code == 200 and taken.headers.get("x-llm386-recorded") != "false"
    assert final["recorded"] == 2 and final["lost"] == 1 and final["refused"] == 1, final
    assert forwarded == 3  # the refused call never reached the upstream
    if in_process:
        assert "recording is back" in caplog.text
    # The probe leaves nothing behind in the proxy's table.
    assert store.kv.read(lambda t: t.get(TABLE, b"\0probe")) is None
    assert sorted(r.turn for r in traces.list(limit=None)) == [1, 1]
    store.close()
