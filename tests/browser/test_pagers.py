"""Paging lists embedded in another page, in real Chromium: the list is replaced, not nested."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from runtime import BlockStore

pytestmark = pytest.mark.browser


def test_paging_a_blocks_uses_and_a_turns_section_replaces_them_in_place(
    browser: Any, browser_store: BlockStore, settings: Any
) -> None:
    from llm386web import store_access
    from tests.web.tracefactory import conversation, write_session

    settings.LLM386 = {**settings.LLM386, "PAGE_SIZE": 2}
    s = write_session(browser_store, store_access.get_traces(), "paged", conversation(3))
    page = browser.page
    browser.login()

    page.goto(f"/blocks/{s.block_ids[1]}/")
    uses = page.locator("#uses-table")
    expect(uses.locator("tbody tr")).to_have_count(2)
    uses.locator("nav.pager").first.get_by_role("link", name="Next").click()
    expect(uses.locator("nav.pager .range").first).to_have_text("records 3–3 of 3")
    expect(page.locator("#uses-table")).to_have_count(1)  # swapped, not nested in itself
    expect(uses.locator("tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(rf"/blocks/{s.block_ids[1]}/$"))  # still the block page

    page.goto(f"/traces/{s.call_ids[2]}/")
    page.locator("a[data-expand=section-recent]").click()
    section = page.locator("#section-recent")
    expect(section.locator("tbody tr")).to_have_count(2)
    section.locator("nav.pager").first.get_by_role("link", name="Next").click()
    expect(section.locator("nav.pager .range").first).to_have_text("3–4 of 5")
    expect(page.locator("#section-recent")).to_have_count(1)
    expect(page).to_have_url(re.compile(rf"/traces/{s.call_ids[2]}/$"))
    assert browser.page_errors == []
