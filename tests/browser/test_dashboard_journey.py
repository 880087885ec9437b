"""The dashboard in real Chromium: charts render as SVG under the CSP, grouping switches in
place, and each chart's CSV link downloads its numbers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from runtime import BlockStore
from tests.web.tracefactory import MODEL, conversation, write_session

pytestmark = pytest.mark.browser

# Recorded before any page script runs (an init script is not subject to the page's CSP).
CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def test_dashboard_switches_grouping_and_downloads_a_chart_as_csv(
    browser: Any, browser_store: BlockStore
) -> None:
    from llm386web.store_access import get_traces

    traces = get_traces()
    write_session(browser_store, traces, "proxied", conversation(3), errors=[2],
                  meta={"source": "proxy"})  # fmt: skip
    write_session(browser_store, traces, "imported", conversation(2), meta={"source": "tau-bench"})
    page = browser.page
    page.add_init_script(CSP_WATCH)
    browser.login()
    page.locator("nav.site-nav a", has_text="Dashboard").click()
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    page.select_option("#dashboard-filters select[name=range]", "all")
    expect(page).to_have_url(re.compile(r"range=all"))
    charts = page.locator("#dashboard-charts svg.dash")
    expect(charts).to_have_count(6)
    expect(page.locator("#chart-input-tokens svg rect")).not_to_have_count(0)
    expect(page.locator("#chart-input-tokens .legend")).to_contain_text(MODEL)
    expect(page.locator("#chart-latency-p95 svg")).to_be_visible()

    page.evaluate("window.__sameDocument = true")
    page.select_option("#dashboard-filters select[name=group]", "source")
    expect(page).to_have_url(re.compile(r"group=source"))
    legend = page.locator("#chart-errors .legend")
    expect(legend).to_contain_text("proxy")
    expect(legend).to_contain_text("import")
    assert page.evaluate("window.__sameDocument") is True  # the charts swapped, not the page
    error_bars = page.locator("#chart-errors svg rect")
    expect(error_bars).to_have_count(1)
    assert "proxy: 1" in (error_bars.first.locator("title").text_content() or "")
    box = charts.first.bounding_box()
    assert box is not None and box["height"] > 50  # the SVG drew at a size, not collapsed

    with page.expect_download() as info:
        page.locator("#chart-errors a.csv-link").click()
    download = info.value
    assert download.suggested_filename == "llm386-errors-by-source.csv"
    lines = Path(download.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0] == "bucket_start_utc,source,calls,errors"
    assert sum(int(line.split(",")[3]) for line in lines[1:]) == 1
    browser.shot("dashboard-by-source")
    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="dark")
    page.reload()
    box = page.locator("#chart-errors svg").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390  # it scaled
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    fill = page.locator("#chart-errors svg rect").first.evaluate("e => getComputedStyle(e).fill")
    assert fill == "rgb(68, 147, 248)"  # series-0 in the dark palette
    browser.shot("dashboard-dark-390", full_page=False)
    assert page.evaluate("window.__csp") == []
    assert browser.console == [] and browser.page_errors == []
