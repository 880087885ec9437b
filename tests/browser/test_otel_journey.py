"""OpenTelemetry in real Chromium: an agent's GenAI spans posted to the live server's /v1/traces
become a session; the sessions list filters it by source; its turn shows the span timeline."""

from __future__ import annotations

import re

import httpx2
import pytest
from playwright.sync_api import expect

from runtime import BlockStore
from runtime.blocks import BlockKind, NewBlock
from runtime.otel import tokens
from tests.fakes import otlp

pytestmark = pytest.mark.browser


@pytest.fixture
def ingested(live_server, browser_store: BlockStore) -> None:
    """An agent tree (agent span, two chats, the tool between them) sent with a real token."""
    token = tokens.create_token(browser_store.kv, "agent")
    browser_store.put("other-session", NewBlock(BlockKind.USER_MESSAGE, "hello"))
    browser_store.set_session_meta("other-session", source="proxy")  # filtered out below
    sent = httpx2.post(f"{live_server.url}/v1/traces", content=otlp.body(otlp.request(*otlp.agent_tree())),
                       headers={"content-type": "application/x-protobuf",
                                "authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip
    assert sent.status_code == 200


def test_spans_become_a_session_filtered_by_source_with_a_span_timeline(browser, ingested):
    page = browser.page
    browser.login()
    page.select_option("select[name=source]", "otlp")
    expect(page).to_have_url(re.compile(r"source=otlp"))
    expect(page.locator("#sessions-table tbody tr")).to_have_count(1)
    page.get_by_role("link", name="conv-1").click()
    page.locator("#turns-table tbody tr a").first.click()
    expect(page.locator("h1 [data-fidelity]")).to_have_attribute("data-fidelity", "from-spans")
    rows = page.locator("svg.gantt g.gantt-row")
    expect(rows).to_have_count(3)
    expect(page.locator("svg.gantt g.gantt-row.current")).to_have_attribute("data-depth", "1")
    boxes = [rows.nth(i).locator("rect").bounding_box() for i in range(3)]
    agent, chat, tool = (b for b in boxes if b is not None)
    # drawn where their times put them: the agent spans all; the tool starts after the chat ends
    assert agent["x"] <= chat["x"] < chat["x"] + chat["width"] < tool["x"]
    assert tool["x"] + tool["width"] <= agent["x"] + agent["width"] + 0.5
    assert agent["width"] > 4 * chat["width"]
    browser.shot("40-span-timeline")
    violations = [m for m in browser.console if "Content Security Policy" in m]
    assert violations == [] and browser.page_errors == []
