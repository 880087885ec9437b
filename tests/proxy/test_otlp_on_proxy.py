"""The proxy's port also takes OTLP/HTTP spans (POST /v1/traces), with the same token rule."""

from __future__ import annotations

from functools import partial

import httpx2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from runtime import open_store
from runtime.otel import receiver, tokens
from runtime.proxy import ProxySettings, ProxyThread, Recorder
from runtime.storage.tracestore import KvTraceStore
from tests.fakes import otlp

PB = "application/x-protobuf"


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
