"""Layout in real Chromium: usable 390 px wide (no page-wide horizontal scroll, "Log out" on
screen, tables scroll inside their box), dark mode from prefers-color-scheme, and the triage
journey."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from runtime import BlockStore
from runtime.blocks import BlockKind, NewBlock
from tests.web.tracefactory import T0, conversation, write_session

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def _pages(store: BlockStore) -> list[str]:
    from llm386web.store_access import get_traces

    traces = get_traces()
    a = write_session(store, traces, "a-rather-long-session-name-for-a-narrow-screen",
                      conversation(4, "a long line of words that a phone must wrap or scroll"),
                      errors=[3], flagged=[4], omit_fact="a fact the pager left out")  # fmt: skip
    return [
        "/sessions/", f"/sessions/{a.name}/", f"/sessions/{a.name}/blocks/",
        f"/traces/{a.call_ids[1]}/", f"/traces/{a.call_ids[1]}/messages/",
        f"/compare/{a.call_ids[0]}/{a.call_ids[1]}/", f"/blocks/{a.block_ids[1]}/",
        "/triage/", "/search/?q=nothing-matches-this", "/audit/", "/dashboard/?range=all",
    ]  # fmt: skip


def _fits(page: Any) -> tuple[int, dict[str, float] | None]:
    width = page.evaluate("document.documentElement.scrollWidth")
    box = page.locator("form.logout button").bounding_box()
    return width, box


def test_every_main_page_fits_390_px_with_log_out_on_screen(
    browser: Any, browser_store: BlockStore
) -> None:
    urls = _pages(browser_store)
    browser.login()
    page = browser.page
    page.set_viewport_size(PHONE)
    for url in urls:
        page.goto(url)
        page.wait_for_load_state("load")
        width, box = _fits(page)
        assert width <= PHONE["width"], f"{url} lays out {width} px wide"
        assert box is not None, url
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (url, box)
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], (url, box)
    page.goto(urls[0])
    browser.shot("layout-390-sessions")
    page.goto(urls[3])
    browser.shot("layout-390-turn")
    # A wide table scrolls inside its own box, not the page.
    page.goto("/triage/")
    scroller = page.locator("#triage-table")
    assert scroller.evaluate("e => getComputedStyle(e).overflowX") in ("auto", "scroll")
    expect(page.locator("form.logout button")).to_be_visible()


def _luminance(rgb: str) -> float:
    r, g, b = (int(x) / 255 for x in re.findall(r"\d+", rgb)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_dark_mode_follows_prefers_color_scheme(browser: Any, browser_store: BlockStore) -> None:
    urls = _pages(browser_store)
    browser.login()
    page = browser.page
    body = "getComputedStyle(document.body).backgroundColor"
    text = "getComputedStyle(document.body).color"
    page.emulate_media(color_scheme="light")
    page.goto(urls[3])
    assert _luminance(page.evaluate(body)) > 0.8
    page.emulate_media(color_scheme="dark")
    for url in urls:
        page.goto(url)
        assert _luminance(page.evaluate(body)) < 0.2, url
        assert _luminance(page.evaluate(text)) > 0.6, url
        heads = page.locator("table.data thead th, .message header, .filters, .site-header")
        for i in range(min(heads.count(), 5)):
            assert (
                _luminance(heads.nth(i).evaluate("e => getComputedStyle(e).backgroundColor")) < 0.3
            ), url
    page.goto(urls[3])
    browser.shot("layout-dark-turn")
    assert browser.page_errors == []


def test_triage_journey_filters_and_compares_with_the_last_good_turn(
    browser: Any, browser_store: BlockStore
) -> None:
    from llm386web.store_access import get_traces

    traces = get_traces()
    a = write_session(browser_store, traces, "alpha", conversation(4), errors=[3])
    b = write_session(browser_store, traces, "beta", conversation(4), flagged=[4])
    page = browser.page
    browser.login()
    page.locator("nav.site-nav a", has_text="Triage").click()
    expect(page).to_have_url(re.compile(r"/triage/$"))
    rows = page.locator("#triage-table tbody tr")
    expect(rows).to_have_count(2)
    page.evaluate("window.__sameDocument = true")
    page.select_option("#triage-filters select[name=kind]", "errored")
    expect(page).to_have_url(re.compile(r"kind=errored"))
    expect(rows).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True  # the table swapped, not the page
    expect(rows.first).to_contain_text("overloaded_error")
    rows.first.locator("a.compare-good").click()
    expect(page).to_have_url(re.compile(rf"/compare/{a.call_ids[1]}/{a.call_ids[2]}/$"))
    page.go_back()
    page.select_option("#triage-filters select[name=kind]", "flagged")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("wrong answer")
    rows.first.locator("td.id a").click()
    expect(page).to_have_url(re.compile(rf"/traces/{b.call_ids[3]}/$"))
    assert browser.dialogs == [] and browser.page_errors == []


# -- long unbroken words from traces and notes ---------------------------------------------------
# What real traces and notes carry with no space to break at; each case fails on its own page.
LONG_URL = (
    "https://tracker.example.com/browse/PROJ-1234?focusedCommentId=987654321&page=com.atlassian"
)
LONG_TOOL = "mcp__github_enterprise__create_or_update_pull_request_review_thr"  # 64 characters


def _flag_note_turn(store: BlockStore) -> str:
    from llm386web.store_access import get_traces

    traces = get_traces()
    s = write_session(store, traces, "noted", conversation(1))
    traces.flag(s.call_ids[0], f"regressed again, see {LONG_URL}")
    return f"/traces/{s.call_ids[0]}/"


def _tool_call_messages(store: BlockStore) -> str:
    from llm386web.store_access import get_traces
    from runtime.blocks import canonical_json
    from runtime.tracing.records import Provider, StoredTrace, new_record

    use = {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": LONG_TOOL,
           "input": {"url": LONG_URL}}  # fmt: skip
    request = canonical_json({"max_tokens": 64, "model": "claude-sonnet-4-6", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Open the review thread."}]},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "ok"}]}]})  # fmt: skip
    record = new_record(request, session="tools", turn=1, started_at=T0,
                        provider=Provider.ANTHROPIC, model="claude-sonnet-4-6")  # fmt: skip
    store.put("tools", NewBlock(BlockKind.USER_MESSAGE, "Open the review thread.", created_at=T0))
    get_traces().record_many([StoredTrace(record, request)])
    return f"/traces/{record.call_id}/messages/"


def _unmatched_prompt_hash(store: BlockStore) -> str:
    return "/search/?q=" + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _span_tree(store: BlockStore) -> str:
    from llm386web.store_access import get_traces
    from runtime.otel.ingest import ingest_request
    from tests.fakes import otlp

    spans = otlp.agent_tree()
    spans[2] = otlp.span(3, f"execute_tool {LONG_TOOL}", {"gen_ai.operation.name": "execute_tool",
                                                        "gen_ai.tool.name": LONG_TOOL},
                         parent=1, start_ms=450, end_ms=900)  # fmt: skip
    traces = get_traces()
    ingest_request(otlp.request(*spans), store, traces)
    return f"/traces/{traces.turns('conv-1')[0][1]}/"


def _provider_error_turn(store: BlockStore) -> str:
    from llm386web.store_access import get_traces
    from runtime.tracing.records import Provider, StoredTrace, TraceError, new_record
    from tests.web.tracefactory import anthropic_request

    request = anthropic_request("You are a test.", ["Hello?"])
    # OpenAI masks a wrong project key in its 401 with one star per hidden character.
    wrong_key = (f"Incorrect API key provided: sk-proj-{'*' * 148}JkQA. You can find your API "
                 "key at https://platform.openai.com/account/api-keys.")  # fmt: skip
    record = new_record(request, session="wrong-key", turn=1, started_at=T0,
                        provider=Provider.ANTHROPIC, model="claude-sonnet-4-6",
                        error=TraceError("invalid_request_error", wrong_key, 401))  # fmt: skip
    store.put("wrong-key", NewBlock(BlockKind.USER_MESSAGE, "Hello?", created_at=T0))
    get_traces().record_many([StoredTrace(record, request)])
    return f"/traces/{record.call_id}/"


LONG_PAGES = {
    "flag note on the turn page": _flag_note_turn,
    "tool call name on the messages page": _tool_call_messages,
    "prompt hash on the no-match search page": _unmatched_prompt_hash,
    "tool span name in a turn's span tree": _span_tree,
    "provider error message on the turn page": _provider_error_turn,
}


@pytest.mark.parametrize("case", sorted(LONG_PAGES))
def test_long_unbroken_words_wrap_instead_of_widening_the_page_at_390_px(
    browser: Any, browser_store: BlockStore, case: str
) -> None:
    url = LONG_PAGES[case](browser_store)
    browser.login()
    page = browser.page
    page.set_viewport_size(PHONE)
    page.goto(url)
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], (case, url)
    assert browser.page_errors == []
