"""The "Connect your agent" page (variables from settings, the proxy's status up or down, no
secret shown), the live update of an open session page, and a rebuilt demo turn replayed to
its own provider."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from django.test import Client

from llm386web import store_access
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.tracing.records import TraceRecord
from tests.fakes.anthropic_server import AnthropicServer
from tests.fakes.openai_server import OpenAIServer, chat_reply

from .conftest import OPENAI_KEY
from .tracefactory import conversation

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
ANTHROPIC_KEY = "sk-ant-connect-CANARY-19f2c7"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def proxy(settings: Any, store: Any) -> Iterator[tuple[ProxyThread, AnthropicServer]]:
    """A running proxy recording into the app's store, in front of a fake Anthropic API whose
    address carries credentials (which the page must not show)."""
    recorder = Recorder(store, store_access.get_traces()).start()
    with AnthropicServer() as upstream:
        secret_upstream = upstream.base_url.replace("http://", "http://user:upstream-pw-CANARY@")
        options = ProxySettings(port=0, upstreams={Family.ANTHROPIC: secret_upstream,
                                                   Family.OPENAI: "http://127.0.0.1:9/v1"})  # fmt: skip
        with ProxyThread(options, recorder) as running:
            settings.LLM386 = {**settings.LLM386, "PROXY_URL": running.base_url}
            yield running, upstream
    recorder.close()


def test_the_page_shows_both_variables_from_settings_and_is_in_the_nav(
    logged_in: Client, settings: Any
) -> None:
    settings.LLM386 = {**settings.LLM386, "PROXY_URL": "http://10.1.2.3:9999/"}
    page = logged_in.get("/connect/").content.decode()
    assert "export ANTHROPIC_BASE_URL=http://10.1.2.3:9999<" in page
    assert "export OPENAI_BASE_URL=http://10.1.2.3:9999/v1<" in page
    assert (
        'base_url="http://10.1.2.3:9999/v1"' in page and 'baseURL: "http://10.1.2.3:9999"' in page
    )
    assert "curl http://10.1.2.3:9999/v1/messages" in page
    for snippet in ("env-anthropic", "env-openai", "snippet-python", "snippet-typescript",
                    "snippet-curl"):  # fmt: skip
        assert f'<pre id="{snippet}">' in page and f'data-copy="{snippet}"' in page
    assert '<a href="/connect/" aria-current="page">Connect your agent</a>' in page
    assert "<script>" not in page.split("</head>", 1)[1]  # no inline script (CSP)


def test_the_status_says_down_when_no_proxy_answers(logged_in: Client, settings: Any) -> None:
    settings.LLM386 = {**settings.LLM386, "PROXY_URL": f"http://127.0.0.1:{_closed_port()}"}
    page = logged_in.get("/connect/").content.decode()
    assert 'data-proxy="down"' in page and "nothing is listening there" in page
    assert 'data-proxy="up"' not in page


def test_the_status_shows_calls_recorded_and_lost_without_secrets(
    logged_in: Client, proxy: tuple[ProxyThread, AnthropicServer], monkeypatch: Any
) -> None:
    running, _ = proxy
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    agent = anthropic.Anthropic(api_key=ANTHROPIC_KEY, base_url=running.base_url, max_retries=0)
    agent.messages.create(model="claude-sonnet-4-6", max_tokens=8,
                          messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    agent.close()
    assert running.server.recorder.flush(10)  # type: ignore[attr-defined]
    page = logged_in.get("/connect/").content.decode()
    assert 'data-proxy="up"' in page
    assert re.search(r"<dd data-calls>1</dd>", page) and "<dd data-recorded>1</dd>" in page
    assert "<dd data-lost>0</dd>" in page
    assert "[credentials]@127.0.0.1" in page  # the upstream, shown without its password
    for secret in (ANTHROPIC_KEY, OPENAI_KEY, "upstream-pw-CANARY", str(Path.home())):
        assert secret not in page


def test_the_status_fragment_alone_answers_the_pages_poll(
    logged_in: Client, proxy: tuple[ProxyThread, AnthropicServer]
) -> None:
    fragment = logged_in.get("/connect/", headers=HX).content.decode()
    assert fragment.lstrip().startswith('<section id="proxy-status"')
    assert 'hx-trigger="every 5s"' in fragment and 'data-proxy="up"' in fragment
    assert "<h1>" not in fragment


def _live_url(page: str) -> str:
    found = re.search(r'id="session-live" hx-get="([^"]+)"', page)
    assert found is not None, "the session page polls for new turns"
    return found.group(1).replace("&amp;", "&")


def test_an_open_session_page_gets_new_turns_and_nothing_while_unchanged(
    logged_in: Client, traced: Any, traces: Any
) -> None:
    traced("live", conversation(2))
    page = logged_in.get("/sessions/live/").content.decode()
    assert 'hx-trigger="every 2s"' in page and 'id="turn-3"' not in page
    poll = _live_url(page)
    unchanged = logged_in.get(poll, headers=HX)
    assert unchanged.status_code == 204 and unchanged.content == b""
    traced("live", conversation(3))  # the session's turns again, and a third
    changed = logged_in.get(poll, headers=HX)
    html = changed.content.decode()
    assert changed.status_code == 200 and html.lstrip().startswith('<section id="turns-table"')
    assert 'id="turn-3"' in html
    newer = _live_url(html)
    assert newer != poll and "seen=" in newer
    assert logged_in.get(newer, headers=HX).status_code == 204


def test_the_poll_keeps_the_page_it_was_on(logged_in: Client, traced: Any) -> None:
    traced("paged", conversation(4))
    page = logged_in.get("/sessions/paged/?limit=2&offset=2").content.decode()
    poll = _live_url(page)
    assert "limit=2" in poll and "offset=2" in poll
    html = logged_in.get(poll.replace("seen=", "seen=stale"), headers=HX).content.decode()
    assert 'id="turn-3"' in html and 'id="turn-1"' not in html
    assert "seen=stale" not in html
    assert '<a href="/sessions/paged/?limit=2&amp;offset=2">reload</a>' in html


def test_a_rebuilt_demo_turn_replays_to_openai_and_says_what_that_promises(
    logged_in: Client, imported_demo: list[TraceRecord], traces: Any, openai_api: OpenAIServer
) -> None:
    rec = imported_demo[2]
    page = logged_in.get(f"/traces/{rec.call_id}/").content.decode()
    assert "Replay with the OpenAI API" in page and "Re-page and record" in page
    assert "not proven to be what the agent sent" in page
    openai_api.enqueue(chat_reply("I can help with that."))
    response = logged_in.post(f"/traces/{rec.call_id}/replay", {"target": "openai"}, headers=HX)
    html = response.content.decode()
    assert response.status_code == 200 and 'data-byte-identity="identical"' in html
    assert [r.body for r in openai_api.requests] == [traces.request_bytes(rec.prompt_hash)]
    assert OPENAI_KEY not in html
