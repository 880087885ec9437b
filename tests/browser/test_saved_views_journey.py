"""Filters, saved views and export in real Chromium: filter the sessions list, save the view,
reload, open it from the saved views, export a session."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from runtime import BlockStore
from runtime.tags import retag
from tests.web.tracefactory import T0, conversation, write_session

pytestmark = pytest.mark.browser

DAY = 86_400_000


def test_filter_save_reload_open_and_export(browser: Any, browser_store: BlockStore) -> None:
    from llm386web.store_access import get_traces

    traces = get_traces()
    write_session(browser_store, traces, "nightly-old", conversation(2))
    write_session(browser_store, traces, "nightly-new", conversation(3), started=T0 + 2 * DAY)
    write_session(browser_store, traces, "adhoc-new", conversation(2), started=T0 + 2 * DAY)
    retag(browser_store, "nightly-old", ["nightly"])
    retag(browser_store, "nightly-new", ["nightly"])
    page = browser.page
    browser.login()
    rows = page.locator("#sessions-table td.id > a")
    expect(rows).to_have_count(3)

    page.fill("#session-filters input[name=tag]", "nightly")
    page.fill("#session-filters input[name=since]", "2025-10-10")
    page.click("#session-filters button[type=submit]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_text("nightly-new")
    expect(page).to_have_url(re.compile(r"since=2025-10-10.*tag=nightly|tag=nightly.*since=2025"))
    browser.shot("saved-views-01-filtered")

    page.fill("form.save-view input[name=name]", "recent nightly")
    page.click("form.save-view button[type=submit]")
    expect(page.locator("#flash")).to_contain_text("Saved the view 'recent nightly'")
    page.goto("/sessions/")  # the unfiltered list, reloaded: the view is offered
    page.reload()
    expect(rows).to_have_count(3)
    link = page.locator(".saved-view-links a", has_text="recent nightly")
    expect(link).to_be_visible()
    browser.shot("saved-views-02-listed")
    link.click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_text("nightly-new")
    expect(page.locator("#session-filters input[name=tag]")).to_have_value("nightly")
    expect(page.locator(".saved-view-links a[aria-current=page]")).to_have_text("recent nightly")

    rows.first.click()
    expect(page.locator("h1")).to_contain_text("nightly-new")
    with page.expect_download() as download_info:
        page.click("text=Export JSONL")
    download = download_info.value
    assert download.suggested_filename == "nightly-new.llm386.jsonl"
    lines = [json.loads(line) for line in Path(download.path()).read_text("utf-8").splitlines()]
    assert lines[0]["session"] == "nightly-new" and lines[0]["meta"]["tags"] == ["nightly"]
    assert [line["record"]["turn"] for line in lines if line["type"] == "trace"] == [1, 2, 3]
    assert lines[-1]["type"] == "footer"
    assert browser.page_errors == [] and browser.console == []
