"""A viewer in real Chromium: reads a turn, finds Replay disabled, and is refused (403, with
the reason in the flash area) when it forces the POST anyway; nothing is sent or audited."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from llm386web.roles import VIEWER, set_role
from runtime import BlockStore
from runtime.agent.core import create_demo_conversations

pytestmark = pytest.mark.browser

VIEWER_NAME, VIEWER_PASSWORD = "vera", "viewer-journey-password"


@pytest.fixture
def viewer_user(django_user_model: Any, transactional_db: None) -> Any:
    user = django_user_model.objects.create_user(VIEWER_NAME, password=VIEWER_PASSWORD)
    set_role(user, VIEWER)
    return user


def test_a_viewer_reads_a_turn_but_is_refused_on_replay(
    viewer_user: Any, browser: Any, browser_store: BlockStore
) -> None:
    from llm386web.store_access import get_traces

    traces = get_traces()
    session = create_demo_conversations(browser_store, traces).sessions[0]
    call_id = traces.list(session=session, limit=1, newest_first=False)[0].call_id
    before = len(traces.list(limit=None))
    page = browser.page
    page.goto("/login/")
    page.fill("input[name=username]", VIEWER_NAME)
    page.fill("input[name=password]", VIEWER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/sessions/")

    page.goto(f"/traces/{call_id}/")
    note = page.locator("#replay [data-role=viewer]")
    expect(note).to_contain_text("viewer")
    button = page.locator("#replay button[value=offline]")
    expect(button).to_be_disabled()
    browser.shot("roles-01-viewer-turn")

    # Force the form as a hostile or stale page would: the server refuses, the page says why.
    button.evaluate("b => b.removeAttribute('disabled')")
    button.click()
    expect(page.locator("#flash")).to_contain_text("is a viewer", timeout=10_000)
    expect(page.locator("#flash")).to_contain_text("403")
    browser.shot("roles-02-viewer-refused")
    assert len(traces.list(limit=None)) == before

    page.goto("/audit/")
    expect(page.locator("#audit-table")).to_contain_text("No replay or re-page")
    assert browser.page_errors == []
