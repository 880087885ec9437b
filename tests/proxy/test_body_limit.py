"""A request body over the proxy's limit is refused with 413 before it is all read: by its
Content-Length up front, or as soon as a chunked body passes the limit, so a client cannot make
the proxy hold more than the limit in memory. Real sockets, a real upstream that must see nothing."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx2
import pytest
from google.protobuf import json_format

from runtime import open_store
from runtime.otel import receiver
from runtime.otel.wire import DEFAULT_OTLP_LIMITS, Status
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.proxy.server import MAX_BODY_BYTES
from runtime.storage.tracestore import KvTraceStore
from tests.fakes.anthropic_server import AnthropicServer

LIMIT = 1024 * 1024  # a small limit keeps the tests quick; the default is checked on its own


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[ProxyThread, AnthropicServer]]:
    store = open_store(tmp_path / "store")
    traces = KvTraceStore(store)
    recorder = Recorder(store, traces).start()
    handler = partial(receiver.handle, store=store, traces=traces)
    with AnthropicServer() as up:
        upstreams = {Family.ANTHROPIC: up.base_url, Family.OPENAI: up.base_url}
        settings = ProxySettings(
            port=0, upstreams=upstreams, max_body_bytes=LIMIT, max_otlp_body_bytes=LIMIT
        )
        with ProxyThread(settings, recorder, otlp=handler) as running:
            yield running, up
    recorder.close()
    store.close()


def _connect(proxy: ProxyThread) -> socket.socket:
    host, port = proxy.server.address
    return socket.create_connection((host, port), timeout=30)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the proxy closed the connection without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def test_the_default_limits_are_64_mib_for_a_call_and_the_receivers_16_mib_for_spans() -> None:
    # A provider call may be as large as the providers take (Anthropic 32 MB, OpenAI 50 MB of
    # images): the proxy must not refuse a call they would accept.
    assert ProxySettings().max_body_bytes == MAX_BODY_BYTES == 64 * 1024 * 1024
    assert ProxySettings().max_otlp_body_bytes == DEFAULT_OTLP_LIMITS.max_body_bytes


def test_a_provider_call_over_the_otlp_limit_is_forwarded(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    traces = KvTraceStore(store)
    recorder = Recorder(store, traces).start()
    handler = partial(receiver.handle, store=store, traces=traces)
    try:
        with AnthropicServer() as up:
            upstreams = {Family.ANTHROPIC: up.base_url, Family.OPENAI: up.base_url}
            settings = ProxySettings(port=0, upstreams=upstreams, max_body_bytes=4 * LIMIT,
                                     max_otlp_body_bytes=LIMIT)  # fmt: skip
            with ProxyThread(settings, recorder, otlp=handler) as running:
                host, port = running.server.address
                big = "x" * (2 * LIMIT)  # over the spans' limit, under the calls'
                request = {"model": "claude-sonnet-4-6", "max_tokens": 16,
                           "messages": [{"role": "user", "content": big}]}  # fmt: skip
                answer = httpx2.post(f"http://{host}:{port}/v1/messages", json=request, timeout=60,
                                     headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})  # fmt: skip
                assert answer.status_code == 200, answer.text
                assert up.request_count == 1
                spans = httpx2.post(f"http://{host}:{port}/v1/traces", content=b"\0" * (2 * LIMIT),
                                    headers={"content-type": "application/x-protobuf"}, timeout=60)  # fmt: skip
                assert spans.status_code == 413
    finally:
        recorder.close()
        store.close()


def test_a_content_length_over_the_limit_is_refused_before_any_body_is_sent(proxy) -> None:
    running, up = proxy
    with _connect(running) as sock:
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n" % (LIMIT + 1))  # fmt: skip
        status, headers, body = _read_response(sock)  # no byte of the body was ever sent
    assert status == 413 and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["type"] == "request_too_large"
    assert f"{LIMIT + 1:,} bytes (its Content-Length)" in error["message"]
    assert f"limit of {LIMIT:,} bytes" in error["message"] and "smaller" in error["message"]
    assert up.request_count == 0


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(proxy) -> None:
    running, up = proxy
    chunk = b"x" * 65536
    sent = 0
    with _connect(running) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")  # fmt: skip
        deadline = time.monotonic() + 30
        # The body never ends: only a proxy that stops at the limit can answer it.
        while not select.select([sock], [], [], 0)[0]:
            assert time.monotonic() < deadline, f"no answer after {sent:,} bytes"
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        status, headers, body = _read_response(sock)
    assert status == 413 and headers["connection"] == "close"
    error = json.loads(body)["error"]  # OpenAI's error format, for an OpenAI route
    assert error["type"] == "invalid_request_error" and "before it ended" in error["message"]
    assert LIMIT < sent < 8 * LIMIT  # answered once past the limit, not after all of it
    assert up.request_count == 0


def test_a_client_that_sends_its_whole_body_first_still_reads_the_413(proxy) -> None:
    running, up = proxy
    body = json.dumps({"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": "x" * (2 * LIMIT)}]}).encode()  # fmt: skip
    answer = httpx2.post(running.base_url + "/v1/messages", content=body,
                         headers={"x-api-key": "sk-test"}, timeout=30)  # fmt: skip
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "request_too_large"
    assert up.request_count == 0


def test_an_otlp_export_over_the_limit_gets_a_413_status_in_its_encoding(proxy) -> None:
    running, _ = proxy
    chunks = (b"{" + b" " * 65536 for _ in range(3 * LIMIT // 65536))  # streamed: chunked
    answer = httpx2.post(running.base_url + receiver.PATH, content=chunks, timeout=30,
                         headers={"content-type": "application/json"})  # fmt: skip
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/json"
    status = json_format.Parse(answer.content, Status())
    assert status.code == 8 and f"limit of {LIMIT:,} bytes" in status.message
