"""The demo in real Chromium: a new user opens the session under budget pressure, a turn that left
blocks out, and sees why each one was left out; then finds the demo's mid-session failure in
triage. The demo is loaded by the demo command's own loaders (all but the tau-bench import)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from llm386web import store_access
from llm386web.management.commands.llm386_demo import DEMO_LOADERS, load_demo_data, load_tau_bench
from runtime import BlockStore
from runtime.demo.budget import BUDGET_CONVERSATIONS
from runtime.demo.captured import CAPTURED

pytestmark = pytest.mark.browser

SESSION, TITLE, _ = BUDGET_CONVERSATIONS[0]


@pytest.fixture
def demo(browser_store: BlockStore, browser_user: Any) -> None:
    """The demo, loaded before Chromium starts (its audit rows are database writes)."""
    load_demo_data(browser_store, out=lambda line: None,
                   loaders=[x for x in DEMO_LOADERS if x is not load_tau_bench])  # fmt: skip


def test_the_demo_shows_why_a_turn_left_blocks_out(demo: None, browser: Any) -> None:
    traces = store_access.get_traces()
    last = traces.get(max(traces.turns(SESSION))[1])
    last = last if last.parent_call_id is None else traces.get(last.parent_call_id)
    reasons = sorted({o["reason"] for o in last.plan["omitted"]})
    page = browser.page
    browser.login()
    row = page.locator("tr", has_text=TITLE)  # the sessions list shows each title
    row.get_by_role("link", name=SESSION, exact=True).click()
    expect(page).to_have_url(f"{browser.base_url}/sessions/{SESSION}/")
    page.locator(f'td.num a[href="/traces/{last.call_id}/"]').click()
    expect(page).to_have_url(f"{browser.base_url}/traces/{last.call_id}/")
    omitted = len(last.plan["omitted"])
    expect(page.locator("h2", has_text="Omitted candidates")).to_contain_text(str(omitted))
    page.get_by_role("link", name=f"Show the {omitted} candidates left out").click()
    listed = page.locator("#omitted .reason")  # swapped in by htmx, a row per candidate
    expect(listed).to_have_count(omitted)
    for reason in reasons:
        expect(listed.filter(has_text=reason).first).to_be_visible()
    browser.shot("demo-01-omitted-reasons")
    page.goto("/triage/?kind=errored")
    failing = next(c.session for c in CAPTURED if c.fail_at is not None)
    row = page.locator("tr", has_text=failing)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("overloaded_error")
    browser.shot("demo-02-triage-mid-session-failure")
    assert browser.page_errors == [] and browser.console == []
