"""User journeys in real headless Chromium: log in, browse sessions, open a session and a block."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from runtime import BlockStore, EdgeKind, NewBlock
from runtime.blocks import BlockKind

pytestmark = pytest.mark.browser

HOSTILE_BODIES = (
    "<script>alert('script')</script>",
    "<img src=x onerror=alert('img')>",
    "<a href=\"javascript:alert('link')\">click me</a>",
    "<svg onload=alert('svg')></svg>",
    "\"><script>alert('attr')</script>",
)


def _conversation(store: BlockStore, session: str, count: int, **meta: object) -> list[str]:
    kinds = (BlockKind.USER_MESSAGE, BlockKind.ASSISTANT_MESSAGE)
    blocks = [
        NewBlock(kinds[i % 2], f"{session} message {i}: {'question' if i % 2 == 0 else 'answer'}")
        for i in range(count)
    ]
    ids = [e.id for e in store.put_many(session, blocks)]
    for child, parent in zip(ids[1:], ids, strict=False):
        store.add_edge(child, EdgeKind.PARENT, parent)
    store.set_session_meta(session, **meta)
    return ids


def _no_csp_violations(browser: Any) -> None:
    violations = [m for m in browser.console if "Content Security Policy" in m]
    assert violations == []
    assert browser.page_errors == []


def test_log_in_browse_sessions_and_open_a_session_and_block(
    browser: Any, browser_store: BlockStore
) -> None:
    for i in range(55):
        _conversation(browser_store, f"run-{i:03d}", 2, model="gpt-4o", reward=i % 3 and 1)
    ids = _conversation(browser_store, "run-long", 70, model="claude-sonnet-4", turns=35)
    page = browser.page

    page.goto("/sessions/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/sessions/"))
    browser.shot("01-login")
    browser.login()
    expect(page.locator("h1")).to_contain_text("Sessions")
    expect(page.locator("#sessions-table tbody tr")).to_have_count(50)
    browser.shot("02-sessions")

    page.evaluate("window.__sameDocument = true")
    page.locator("#sessions-table nav.pager").first.get_by_role("link", name="Next").click()
    expect(page).to_have_url(re.compile(r"offset=50"))
    expect(page.locator("#sessions-table tbody tr")).to_have_count(6)
    assert page.evaluate("window.__sameDocument") is True  # htmx swapped the table in place

    page.get_by_role("link", name="run-long", exact=True).click()
    expect(page.locator("h1")).to_contain_text("run-long")
    expect(page.locator("#entries-table tbody tr")).to_have_count(50)
    browser.shot("03-session")

    page.locator("#entries-table nav.pager").first.get_by_role("link", name="Next").click()
    expect(page.locator("#entries-table tbody tr")).to_have_count(20)
    expect(page.locator("#seq-69")).to_be_visible()

    page.locator("#seq-69 td.id a").click()
    expect(page).to_have_url(re.compile(rf"/blocks/{ids[69]}/$"))
    expect(page.locator(".hash")).to_have_text(ids[69])
    page.get_by_role("link", name=ids[68][:12]).click()
    expect(page).to_have_url(re.compile(rf"/blocks/{ids[68]}/$"))
    browser.shot("04-block")
    _no_csp_violations(browser)


def test_htmx_errors_show_in_the_flash_area(browser: Any, browser_store: BlockStore) -> None:
    _conversation(browser_store, "doomed", 60)
    browser.login()
    browser.page.goto("/sessions/doomed/")
    browser_store.purge_session("doomed")
    browser.page.locator("#entries-table nav.pager").first.get_by_role("link", name="Next").click()
    expect(browser.page.locator("#flash")).to_contain_text("Not found (404): no session 'doomed'")
    browser.shot("05-flash-error")


def test_hostile_block_bodies_never_run(browser: Any, browser_store: BlockStore) -> None:
    entries = browser_store.put_many(
        "hostile", [NewBlock(BlockKind.TOOL_RESULT, body) for body in HOSTILE_BODIES]
    )
    browser_store.set_session_meta("hostile", model="<img src=x onerror=alert('meta')>")
    browser.login()
    for path in ["/sessions/", "/sessions/hostile/", *(f"/blocks/{e.id}/" for e in entries)]:
        browser.page.goto(path)
        browser.page.wait_for_load_state("load")
        assert browser.page.locator("a[href^='javascript'], [onerror], [onload]").count() == 0, path
    browser.page.goto("/sessions/hostile/")
    expect(browser.page.locator("td.preview").first).to_contain_text("<script>alert('script')")
    browser.shot("06-hostile-session")
    assert browser.dialogs == []
    _no_csp_violations(browser)
