"""Daily-use journeys in real Chromium: compare any two turns with the picker, the triage list."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from runtime import BlockStore
from tests.web.tracefactory import conversation, write_session

pytestmark = pytest.mark.browser


def _traces() -> Any:
    from llm386web.store_access import get_traces

    return get_traces()


def test_pick_a_turn_of_another_session_and_compare_with_it(
    browser: Any, browser_store: BlockStore
) -> None:
    a = write_session(browser_store, _traces(), "alpha-run", conversation(3))
    b = write_session(browser_store, _traces(), "beta-run", conversation(2, "other"))
    page = browser.page
    browser.login()
    page.goto(f"/traces/{a.call_ids[2]}/")
    page.evaluate("window.__sameDocument = true")
    picker = page.locator("form.picker input[name=q]")
    picker.fill("beta-run 2")  # typing searches (htmx), no submit needed
    result = page.locator(f'#pick-results li[data-call-id="{b.call_ids[1]}"] a.pick')
    expect(result).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True  # a fragment swap, not a page load
    browser.shot("picker-01-results")
    result.click()
    # beta's turn 2 started before alpha's turn 3: it goes on the left
    expect(page).to_have_url(re.compile(rf"/compare/{b.call_ids[1]}/{a.call_ids[2]}/$"))
    expect(page.locator("h1")).to_contain_text("(beta-run)")
    expect(page.locator("#compare-body")).to_contain_text("Prompt cache")
    browser.shot("picker-02-cross-session-compare")
    assert browser.page_errors == []
