"""The proxy's port also takes OTLP/HTTP spans (POST /v1/traces), with the same token rule."""

from __future__ import annotations

import time
from functools import partial

import httpx2
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from runtime import open_store
from runtime.otel import receiver, tokens
from runtime.otel.wire import Status
from runtime.proxy import ProxySettings, ProxyThread, Recorder
from runtime.storage.blockstore import KvBlockStore
from runtime.storage.postgres.engine import PostgresEngine
from runtime.storage.tracestore import KvTraceStore
from tests.fakes import otlp
from tests.pg_server import PgServer

PB, JS = "application/x-protobuf", "application/json"


def test_spans_posted_to_the_proxy_become_turns_and_need_a_token(tmp_path) -> None:
    store = open_store(tmp_path / "store")
    traces = KvTraceStore(store)
    token = tokens.create_token(store.kv, "agent")
    recorder = Recorder(store, traces).start()
    handler = partial(receiver.handle, store=store, traces=traces)
    body = otlp.body(otlp.request(otlp.current_chat(1, turn=0)))
    try:
        with ProxyThread(ProxySettings(port=0), recorder, otlp=handler) as proxy:
            url = proxy.base_url + "/v1/traces"
            refused = httpx2.post(url, content=body, headers={"content-type": PB})
            assert refused.status_code == 401 and token not in refused.text
            sent = httpx2.post(
                url, content=body, headers={"content-type": PB, "authorization": f"Bearer {token}"}
            )
            assert sent.status_code == 200 and sent.headers["content-type"] == PB
            assert not ExportTraceServiceResponse.FromString(
                sent.content
            ).partial_success.rejected_spans
    finally:
        recorder.close()
    records = traces.list(limit=10)
    assert len(records) == 1 and records[0].session == "conv-1"


def _store_with_token(path) -> str:
    writable = open_store(path)
    token = tokens.create_token(writable.kv, "agent")
    writable.close()
    return token


def _post_spans(url: str, token: str, content_type: str) -> httpx2.Response:
    kind = "protobuf" if content_type == PB else "json"
    body = otlp.body(otlp.request(otlp.current_chat(1, turn=0)), kind)
    headers = {"content-type": content_type, "authorization": f"Bearer {token}"}
    return httpx2.post(url + receiver.PATH, content=body, headers=headers, timeout=60)


def _status(response: httpx2.Response, content_type: str):  # type: ignore[no-untyped-def]
    assert response.headers["content-type"] == content_type
    if content_type == PB:
        return Status.FromString(response.content)
    return json_format.Parse(response.content, Status())


@pytest.mark.parametrize("content_type", [PB, JS])
def test_spans_a_read_only_store_cannot_take_get_a_retryable_503_status(
    tmp_path, content_type
) -> None:
    token = _store_with_token(tmp_path / "store")
    store = open_store(tmp_path / "store", readonly=True)  # a store that refuses every write
    traces = KvTraceStore(store)
    recorder = Recorder(store, traces).start()
    handler = partial(receiver.handle, store=store, traces=traces)
    try:
        with ProxyThread(ProxySettings(port=0), recorder, otlp=handler) as proxy:
            refused = _post_spans(proxy.base_url, token, content_type)
            again = _post_spans(proxy.base_url, token, content_type)  # the proxy is still up
    finally:
        recorder.close()
    assert refused.status_code == 503 and again.status_code == 503
    status = _status(refused, content_type)
    assert status.code == 14  # UNAVAILABLE: what an OTLP exporter retries
    assert "read-only" in status.message and "nothing of this request was stored" in status.message
    assert "send it again" in status.message and token not in status.message
    assert traces.list(limit=10) == [] and store.sessions() == []


def test_spans_sent_while_the_postgresql_server_is_down_get_a_503_status(
    pg_server: PgServer, pg_url: str
) -> None:
    token = _store_with_token(pg_url)
    store = KvBlockStore(PostgresEngine(pg_url, pool_timeout=1.0))  # wait 1 s, not 10
    traces = KvTraceStore(store)
    recorder = Recorder(store, traces).start()
    handler = partial(receiver.handle, store=store, traces=traces)
    try:
        with ProxyThread(ProxySettings(port=0), recorder, otlp=handler) as proxy:
            with pg_server.outage(pg_url):
                refused = _post_spans(proxy.base_url, token, PB)
            # The server is back: the spans land, once the store's pool has reconnected (its
            # backoff can outlast the 1 s wait on a loaded machine). An OTLP exporter retries a
            # 503, so this does too, for up to 20 s; one session at the end shows that none of
            # the 503s on the way stored anything.
            deadline = time.monotonic() + 20
            taken = _post_spans(proxy.base_url, token, PB)
            while taken.status_code == 503 and time.monotonic() < deadline:
                time.sleep(0.2)
                taken = _post_spans(proxy.base_url, token, PB)
    finally:
        recorder.close()
    assert refused.status_code == 503, refused.content
    status = _status(refused, PB)
    assert status.code == 14 and "StoreUnavailable" in status.message
    assert "nothing of this request was stored" in status.message
    assert taken.status_code == 200, taken.content
    assert [r.session for r in traces.list(limit=10)] == ["conv-1"]
    store.close()


def test_a_receiver_that_raises_is_answered_with_a_500_status_not_a_dropped_connection(
    tmp_path,
) -> None:
    def broken(method, path, headers, body):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the receiver")

    store = open_store(tmp_path / "store")
    recorder = Recorder(store, KvTraceStore(store)).start()
    try:
        with ProxyThread(ProxySettings(port=0), recorder, otlp=broken) as proxy:
            answer = _post_spans(proxy.base_url, "llm386_any", JS)
    finally:
        recorder.close()
    assert answer.status_code == 500
    status = _status(answer, JS)
    assert status.code == 13 and "the proxy's log has the details" in status.message
