"""Fixtures for the capture proxy: a real store, real loopback upstreams, the proxy on a thread.

``stack`` gives a running proxy in front of a fake Anthropic and a fake OpenAI upstream (both
record the raw bytes they receive), its recorder and store, and clients of the official SDKs
whose every request body is captured by an httpx2 event hook before it leaves.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from runtime import open_store
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.storage.lmdb.store import LmdbStore
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.tracing.records import TraceOrigin, TraceRecord, TraceStatus
from tests.fakes.anthropic_server import AnthropicServer
from tests.fakes.openai_server import OpenAIServer

API_KEY = "sk-test-CANARY-7f3a9c2e51d84b06"


@dataclass
class Sent:
    """Request bodies the clients sent, in order, captured by an event hook."""

    bodies: list[bytes] = field(default_factory=list)

    def sync_hook(self, request: httpx2.Request) -> None:
        self.bodies.append(request.read())

    async def async_hook(self, request: httpx2.Request) -> None:
        self.bodies.append(await request.aread())


@dataclass
class Stack:
    store: LmdbStore
    traces: LmdbTraceStore
    recorder: Recorder
    proxy: ProxyThread
    anthropic_up: AnthropicServer
    openai_up: OpenAIServer
    sent: Sent
    clients: list[Any] = field(default_factory=list)

    def close_clients(self) -> None:
        for client in self.clients:
            client.close()

    @property
    def url(self) -> str:
        return self.proxy.base_url

    def records(self) -> list[TraceRecord]:
        """Every record, oldest first, once every call is handed over and written.

        An SDK reading a stream stops at its last event (OpenAI's ``data: [DONE]``) and may
        return before the proxy has read the upstream's end of body and handed the call over,
        so this waits for the calls in flight first."""
        deadline = time.monotonic() + 30
        while self.proxy.server.counters.in_flight and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.recorder.flush(30)
        return sorted(self.traces.list(limit=None), key=lambda r: r.call_id)

    def anthropic(self, base_url: str | None = None, **options: Any) -> anthropic.Anthropic:
        client = httpx2.Client(event_hooks={"request": [self.sent.sync_hook]})
        self.clients.append(client)
        return anthropic.Anthropic(api_key=API_KEY, base_url=base_url or self.url,
                                   http_client=client, **options)  # fmt: skip

    # Async clients are closed by their caller (``async with``), on the loop that used them.
    def async_anthropic(
        self, base_url: str | None = None, **options: Any
    ) -> anthropic.AsyncAnthropic:
        client = httpx2.AsyncClient(event_hooks={"request": [self.sent.async_hook]})
        return anthropic.AsyncAnthropic(api_key=API_KEY, base_url=base_url or self.url,
                                        http_client=client, **options)  # fmt: skip

    def openai(self, base_url: str | None = None, **options: Any) -> openai.OpenAI:
        client = httpx2.Client(event_hooks={"request": [self.sent.sync_hook]})
        self.clients.append(client)
        return openai.OpenAI(api_key=API_KEY, base_url=base_url or self.url + "/v1",
                             http_client=client, **options)  # fmt: skip

    def async_openai(self, base_url: str | None = None, **options: Any) -> openai.AsyncOpenAI:
        client = httpx2.AsyncClient(event_hooks={"request": [self.sent.async_hook]})
        return openai.AsyncOpenAI(api_key=API_KEY, base_url=base_url or self.url + "/v1",
                                  http_client=client, **options)  # fmt: skip


def dump(result):  # type: ignore[no-untyped-def]
    """Return an SDK result (or a list of stream events) as plain data, to compare two calls."""
    if isinstance(result, list):
        return [chunk.model_dump() for chunk in result]
    return result.model_dump()


def check_bytes(stack: Stack, upstream_requests, stream: bool) -> None:  # type: ignore[no-untyped-def]
    """Check one direct and one proxied call: the bytes sent, received and stored are equal."""
    direct_sent, proxied_sent = stack.sent.bodies
    direct_got, proxied_got = upstream_requests
    [record] = stack.records()
    stored = stack.traces.request_bytes(record.prompt_hash)
    assert proxied_sent == proxied_got.body == stored == direct_sent == direct_got.body
    assert record.prompt_hash == hashlib.sha256(proxied_sent).hexdigest()
    assert record.origin is TraceOrigin.CAPTURE and record.status is TraceStatus.OK
    assert record.config["proxy"]["stream"] is stream
    assert record.replay_complete


def start_stack(path: Path, **settings: Any) -> Iterator[Stack]:
    store = open_store(path)
    traces = LmdbTraceStore(store)
    recorder = Recorder(store, traces).start()
    with AnthropicServer() as a_up, OpenAIServer() as o_up:
        upstreams = {Family.ANTHROPIC: a_up.base_url, Family.OPENAI: o_up.base_url + "/v1"}
        options = {"port": 0, "upstreams": upstreams, **settings}
        with ProxyThread(ProxySettings(**options), recorder) as proxy:
            stack = Stack(store, traces, recorder, proxy, a_up, o_up, Sent())
            try:
                yield stack
            finally:
                stack.close_clients()
    recorder.close()
    store.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from start_stack(tmp_path / "store")


@pytest.fixture
def paged(tmp_path: Path) -> Iterator[Stack]:
    """A proxy stack (loopback upstreams, a fresh store) that pages with the default policy."""
    from runtime.proxy.pager import PageSettings

    yield from start_stack(tmp_path / "store", page=PageSettings("default"))
