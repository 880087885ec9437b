"""In real Chromium: edit a turn in the playground and send it, see the child in the tree and
its diff; run a variance of 5 against a fake that answers differently each call, confirm the
cost, watch the progress, read the groups. Every model call is real HTTP to the loopback fake."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from llm386web import store_access
from runtime import BlockStore
from runtime.agent.core import Agent
from runtime.replay.experimentlog import ExperimentLog
from tests.fakes.anthropic_server import SlowReply, text_reply, tool_use_reply

pytestmark = pytest.mark.browser


@pytest.fixture
def turn(
    browser_store: BlockStore, settings: Any, model_server: Any, make_adapter: Any, monkeypatch: Any
) -> str:
    """A recorded answer after a calculator call, the app pointed at the same loopback API."""
    settings.LLM386 = {**settings.LLM386, "ANTHROPIC_BASE_URL": model_server.base_url}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-journey-experiments")
    model_server.enqueue(
        tool_use_reply("toolu_1", "calculator", {"expression": "6*7"}, text="Let me compute."),
        text_reply("6 * 7 is 42.", usage=(120, 9, 0, 0)),
    )
    traces = store_access.get_traces()
    reply = Agent(browser_store, traces, make_adapter(), session="journey").say("What is 6 * 7?")
    return reply.call_ids[-1]


def test_the_playground_edits_a_block_sends_it_and_the_child_joins_the_tree(
    browser: Any, turn: str, model_server: Any
) -> None:
    page = browser.page
    browser.login()
    page.goto(f"/traces/{turn}/")
    expect(page.locator("#experiments")).to_contain_text("No experiment has been run")
    page.get_by_role("link", name="Open the playground").click()
    editor = page.locator("#playground-request")
    text = editor.input_value()
    assert '"tool_use_id": "toolu_1"' in text and '"cache_control"' in text
    editor.fill(text.replace("What is 6 * 7?", "What is 6 * 9?"))
    browser.shot("exp-01-playground-edited")
    model_server.enqueue(text_reply("6 * 9 is 54."))
    page.get_by_role("button", name="Send as an experiment").click()
    page.wait_for_url("**/experiments/*/")
    expect(page.locator("#flash")).to_contain_text("Experiment recorded")
    expect(page.locator("mark[data-region=child]")).to_contain_text("9")
    expect(page.locator("table.output-diff")).to_contain_text("6 * 9 is 54.")
    browser.shot("exp-02-experiment-page")
    assert b"What is 6 * 9?" in model_server.requests[-1].body
    page.get_by_role("link", name="Turn 2").click()
    row = page.locator("#experiments tr.experiment-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("request edited in the playground")
    expect(row.locator("td.who")).to_have_text("admin")
    row.get_by_role("link", name="side by side").click()
    expect(page.locator("#byte-diff")).to_contain_text("Request bytes")
    assert browser.page_errors == []
    assert [m for m in browser.console if "Content Security Policy" in m] == []


def test_variance_of_five_confirms_the_cost_shows_progress_and_groups_the_answers(
    browser: Any, turn: str, model_server: Any
) -> None:
    slow = 0.8  # each answer waits, so the page shows the run in progress
    model_server.vary(
        SlowReply(slow, text_reply("The answer is 42.")),
        SlowReply(slow, text_reply("The answer is 42!")),
        SlowReply(slow, tool_use_reply("toolu_z", "calculator", {"expression": "6*7"})),
        SlowReply(slow, text_reply("The answer is 42.")),
        SlowReply(slow, text_reply("I cannot say.")),
    )
    page = browser.page
    browser.login()
    page.goto(f"/traces/{turn}/")
    samples = page.locator("#samples")
    samples.locator("input[name=samples]").fill("5")
    sent = model_server.request_count
    samples.get_by_role("button", name="Estimate the cost").click()
    expect(samples.locator("[data-estimate]")).to_contain_text("5 sends of 120 input tokens")
    assert model_server.request_count == sent  # nothing sent before the confirmation
    browser.shot("exp-03-variance-estimate")
    samples.get_by_role("button", name="Send 5 samples").click()
    expect(page.locator("#samples-waiting")).to_contain_text("of 5")
    browser.shot("exp-04-variance-running")
    result = page.locator("#samples-result")
    expect(result).to_have_attribute("data-verdict", "flaky", timeout=30_000)
    expect(result.locator("tr.cluster")).to_have_count(3)
    expect(result.locator("tr.cluster").first).to_contain_text("3 / 5")
    expect(page.locator("#experiments tr.experiment-row")).to_have_count(5)  # the tree refreshed
    browser.shot("exp-05-variance-result")
    assert ExperimentLog(store_access.get_traces()).count() == 5
    assert browser.page_errors == []
    assert [m for m in browser.console if "Content Security Policy" in m] == []
