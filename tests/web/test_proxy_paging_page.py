"""The turn page of a call ``llm386 proxy --page`` paged: both request versions, what was paged out."""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from django.test import Client

from llm386web import store_access
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.proxy.pager import PageSettings
from runtime.tracing.records import TraceRecord
from tests.fakes.anthropic_server import AnthropicServer
from tests.proxy.longsession import MODEL, anthropic_history, tools

pytestmark = pytest.mark.django_db
HX = {"HX-Request": "true"}


@pytest.fixture
def paged_turn(store: Any, settings: Any) -> Iterator[tuple[TraceRecord, bytes, bytes]]:
    """One long-session call through a proxy with --page: (its record, client bytes, upstream
    bytes)."""
    traces = store_access.get_traces()
    recorder = Recorder(store, traces).start()
    sent: list[bytes] = []
    with AnthropicServer() as upstream:
        options = ProxySettings(port=0, upstreams={Family.ANTHROPIC: upstream.base_url,
                                                   Family.OPENAI: "http://127.0.0.1:9/v1"},
                                page=PageSettings("default"))  # fmt: skip
        with ProxyThread(options, recorder) as proxy:
            settings.LLM386 = {**settings.LLM386, "PROXY_URL": proxy.base_url}
            http = httpx2.Client(event_hooks={"request": [lambda r: sent.append(r.read())]})
            client = anthropic.Anthropic(api_key="k", base_url=proxy.base_url, http_client=http)
            client.messages.create(model=MODEL, max_tokens=8, tools=tools(),  # type: ignore[arg-type]
                                   messages=anthropic_history())  # type: ignore[arg-type]  # fmt: skip
            http.close()
            assert recorder.flush(30)
            [record] = traces.list(limit=None)
            yield record, sent[0], upstream.requests[0].body
    recorder.close()


def test_the_turn_page_offers_both_versions_and_lists_what_was_paged_out(
    logged_in: Client, paged_turn: tuple[TraceRecord, bytes, bytes]
) -> None:
    record, client_bytes, upstream_bytes = paged_turn
    page = html.unescape(logged_in.get(f"/traces/{record.call_id}/").content.decode())
    assert "Sent upstream (what the model saw)" in page
    assert "The agent's original (before paging)" in page
    assert f"{len(client_bytes):,} bytes the agent sent" in page
    assert 'id="paged-out"' in page and "unused-schema" in page and "stale" in page
    assert "[Paged out: block " in page
    assert "--page default" in page


def test_each_version_serves_its_own_bytes(
    logged_in: Client, paged_turn: tuple[TraceRecord, bytes, bytes]
) -> None:
    record, client_bytes, upstream_bytes = paged_turn
    raw = f"/traces/{record.call_id}/request"
    assert logged_in.get(raw).content == upstream_bytes != client_bytes
    assert logged_in.get(raw + "?version=client").content == client_bytes
    client_json = logged_in.get(f"/traces/{record.call_id}/json/?version=client", headers=HX)
    assert "original request, before the proxy paged it" in client_json.content.decode()
    sent_json = logged_in.get(f"/traces/{record.call_id}/json/", headers=HX).content.decode()
    assert "[Paged out: block " in html.unescape(sent_json)
    chat = logged_in.get(f"/traces/{record.call_id}/messages/?version=client", headers=HX)
    assert chat.status_code == 200 and "[Paged out: block " not in html.unescape(
        chat.content.decode()
    )
    assert logged_in.get(raw + "?version=other").status_code == 400


def test_an_unpaged_turn_has_no_client_version(logged_in: Client, traced: Any) -> None:
    session = traced("plain-1", ["system", "hello", "hi there"])
    call_id = session.call_ids[0]
    assert logged_in.get(f"/traces/{call_id}/request?version=client").status_code == 404
    assert "Sent upstream" not in logged_in.get(f"/traces/{call_id}/").content.decode()


def test_the_connect_page_says_the_proxy_pages(
    logged_in: Client, paged_turn: tuple[TraceRecord, bytes, bytes]
) -> None:
    page = logged_in.get("/connect/").content.decode()
    assert "--page default</code>): 1 paged, 0 forwarded unpaged, 0 recall calls" in page


def test_a_paged_responses_turn_shows_both_versions_and_what_was_paged_out(
    logged_in: Client, store: Any, settings: Any
) -> None:
    import openai

    from tests.fakes.openai_server import OpenAIServer, response_reply
    from tests.proxy.test_paging_responses import responses_history, responses_tools

    traces = store_access.get_traces()
    recorder = Recorder(store, traces).start()
    with OpenAIServer() as upstream:
        upstream.enqueue(response_reply("first"))
        options = ProxySettings(port=0, upstreams={Family.ANTHROPIC: "http://127.0.0.1:9",
                                                   Family.OPENAI: upstream.base_url + "/v1"},
                                page=PageSettings("default"))  # fmt: skip
        with ProxyThread(options, recorder) as proxy, httpx2.Client() as http:
            client = openai.OpenAI(api_key="k", base_url=proxy.base_url + "/v1", http_client=http)
            client.responses.create(model="gpt-4o", instructions="You answer from data.",
                                    tools=responses_tools(), input=responses_history())  # type: ignore[arg-type]  # fmt: skip
            assert recorder.flush(30)
        sent = upstream.requests[0].body
    recorder.close()
    [record] = traces.list(limit=None)
    page = html.unescape(logged_in.get(f"/traces/{record.call_id}/").content.decode())
    assert "Sent upstream (what the model saw)" in page
    assert "The agent's original (before paging)" in page
    assert 'id="paged-out"' in page and "stale" in page and "[Paged out: block " in page
    assert logged_in.get(f"/traces/{record.call_id}/request").content == sent
    for version in ("", "?version=client"):
        chat = logged_in.get(f"/traces/{record.call_id}/messages/{version}", headers=HX)
        shown = html.unescape(chat.content.decode())
        assert chat.status_code == 200 and "Question 7?" in shown
        assert ("[Paged out: block " in shown) is (version == "")
