"""The capture proxy's journey in real Chromium: an agent on the official anthropic SDK calls
llm386 proxy (in-process, on a free port, in front of a loopback Anthropic API); its turns
appear in the open session page as they are recorded; one is opened and replayed, byte for
byte, with the verdict on the page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from playwright.sync_api import expect

from llm386web import store_access
from runtime import BlockStore
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from tests.fakes.anthropic_server import AnthropicServer, text_reply

pytestmark = pytest.mark.browser

KEY = "sk-ant-proxy-journey-CANARY-5c1e"
SESSION = "my-agent"


@pytest.fixture
def upstream() -> Iterator[AnthropicServer]:
    with AnthropicServer() as server:
        yield server


@pytest.fixture
def proxy(browser_store: BlockStore, upstream: AnthropicServer) -> Iterator[ProxyThread]:
    recorder = Recorder(browser_store, store_access.get_traces()).start()
    settings = ProxySettings(port=0, upstreams={Family.ANTHROPIC: upstream.base_url,
                                                Family.OPENAI: "http://127.0.0.1:9/v1"})  # fmt: skip
    with ProxyThread(settings, recorder) as running:
        yield running
    recorder.close()


class Agent:
    """An agent's own code, unchanged but for its base URL: a conversation on the SDK."""

    def __init__(self, base_url: str) -> None:
        self.sent: list[bytes] = []
        self.http = httpx2.Client(event_hooks={"request": [lambda r: self.sent.append(r.read())]})
        self.client = anthropic.Anthropic(api_key=KEY, base_url=base_url, http_client=self.http,
                                          max_retries=0)  # fmt: skip
        self.messages: list[dict[str, str]] = []

    def say(self, text: str) -> str:
        self.messages.append({"role": "user", "content": text})
        reply = self.client.messages.create(
            model="claude-sonnet-4-6", max_tokens=64, system="You are a terse assistant.",
            messages=self.messages, extra_headers={"x-llm386-session": SESSION},
        )  # fmt: skip
        answer = "".join(block.text for block in reply.content if block.type == "text")
        self.messages.append({"role": "assistant", "content": answer})
        return answer


def test_an_agent_through_the_proxy_shows_live_and_replays_byte_for_byte(
    browser: Any, settings: Any, proxy: ProxyThread, upstream: AnthropicServer, monkeypatch: Any
) -> None:
    settings.LLM386 = {**settings.LLM386, "PROXY_URL": proxy.base_url,
                       "ANTHROPIC_BASE_URL": upstream.base_url}  # fmt: skip
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    page = browser.page
    browser.login()

    # Connect your agent: the variable to set, the proxy up, a snippet copied
    page.get_by_role("link", name="Connect your agent").click()
    expect(page.locator("#env-anthropic")).to_have_text(
        f"export ANTHROPIC_BASE_URL={proxy.base_url}"
    )
    expect(page.locator("[data-proxy]")).to_have_attribute("data-proxy", "up")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("button[data-copy=env-anthropic]").click()
    expect(page.locator("button[data-copy=env-anthropic]")).to_have_text("Copied")
    browser.shot("30-connect")

    # the agent's first call; its session page, opened
    agent = Agent(proxy.base_url)
    upstream.enqueue(text_reply("Hello."), text_reply("Paris."), text_reply("Paris, again."))
    agent.say("Hi!")
    assert proxy.server.recorder.flush(10)  # type: ignore[attr-defined]
    page.goto(f"/sessions/{SESSION}/")
    expect(page.locator("#turns-table tbody tr")).to_have_count(1)

    # the second call appears in the open page as it is recorded (no reload)
    page.evaluate("window.__sameDocument = true")
    agent.say("What is the capital of France?")
    expect(page.locator("#turn-2")).to_be_visible()
    expect(page.locator("#turns-table tbody tr")).to_have_count(2)
    assert page.evaluate("window.__sameDocument") is True
    browser.shot("31-session-live")

    # open it: captured; replay it: the bytes sent are the bytes the agent sent
    page.locator("#turn-2 a").first.click()
    badge = page.locator("h1 [data-fidelity]")
    expect(badge).to_have_attribute("data-fidelity", "captured")
    expect(page.locator("[data-promise]")).to_contain_text("exactly what the agent sent")
    page.get_by_role("button", name="Replay with the Anthropic API").click()
    expect(page.locator("[data-byte-identity]")).to_have_attribute(
        "data-byte-identity", "identical"
    )
    browser.shot("32-captured-replay")
    captured, replayed = upstream.requests[1], upstream.requests[2]
    assert replayed.body == captured.body == agent.sent[1]
    assert KEY not in page.content()
    violations = [m for m in browser.console if "Content Security Policy" in m]
    assert violations == [] and browser.page_errors == []
    agent.http.close()
