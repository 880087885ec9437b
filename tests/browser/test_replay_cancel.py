"""In real Chromium: a replay to a silent server shows its progress, and Cancel ends the wait."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from llm386web import replayjobs, store_access
from runtime import BlockStore
from tests.fakes.anthropic_server import SlowReply
from tests.web.tracefactory import conversation, write_session

pytestmark = pytest.mark.browser


def test_a_stalled_replay_counts_up_and_cancel_ends_it(
    browser: Any, browser_store: BlockStore, settings: Any, model_server: Any, monkeypatch: Any
) -> None:
    settings.LLM386 = {**settings.LLM386, "ANTHROPIC_BASE_URL": model_server.base_url}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-journey-test")
    traces = store_access.get_traces()
    session = write_session(browser_store, traces, "stall", conversation(1))
    model_server.enqueue(SlowReply(60), SlowReply(60), SlowReply(60))
    page = browser.page
    browser.login()
    page.goto(f"/traces/{session.call_ids[0]}/")
    page.get_by_role("button", name="Replay with the Anthropic API").click()
    waiting = page.locator("#replay-waiting")
    expect(waiting).to_contain_text("Waiting for the model…")
    job_id = waiting.get_attribute("data-job")
    # the page polls: the seconds count up without a reload
    expect(page.locator("#replay-waiting .elapsed")).to_have_text(re.compile(r"^[1-9]\d* s$"))
    browser.shot("20-replay-waiting")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#replay")).to_contain_text("The replay was cancelled from the web page.")
    expect(page.locator("#replay-waiting")).to_have_count(0)
    browser.shot("21-replay-cancelled")
    assert browser.page_errors == []
    assert [m for m in browser.console if "Content Security Policy" in m] == []
    job = replayjobs.get(job_id or "")
    assert job is not None
    model_server.stop()  # the stalled reply ends; the abandoned call returns and is recorded
    assert job.done.wait(60)
    [record] = [r for r in traces.list(session="stall", limit=None) if r.parent_call_id]
    assert record.error is not None and record.error.type == "cancelled"
