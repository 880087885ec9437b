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


def test_log_in_browse_sessions_and_open_a_session_and_its_blocks(
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

    page.locator("#sessions-table nav.pager").first.get_by_role("link", name="First").click()
    page.get_by_role("link", name="run-long", exact=True).click()  # the newest comes first
    expect(page.locator("h1")).to_contain_text("run-long")
    expect(page.locator("#turns-table")).to_contain_text("No model call of this session was traced")
    page.locator("nav.tabs").get_by_role("link", name=re.compile("^Blocks")).click()
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
    browser.page.goto("/sessions/doomed/blocks/")
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
    for path in ["/sessions/", "/sessions/hostile/", "/sessions/hostile/blocks/",
                 *(f"/blocks/{e.id}/" for e in entries)]:  # fmt: skip
        browser.page.goto(path)
        browser.page.wait_for_load_state("load")
        assert browser.page.locator("a[href^='javascript'], [onerror], [onload]").count() == 0, path
    browser.page.goto("/sessions/hostile/blocks/")
    expect(browser.page.locator("td.preview").first).to_contain_text("<script>alert('script')")
    browser.shot("06-hostile-session")
    assert browser.dialogs == []
    _no_csp_violations(browser)


def _traced_sessions(store: BlockStore) -> dict[str, Any]:
    from llm386web import store_access
    from tests.web.tracefactory import conversation, write_session

    traces = store_access.get_traces()
    made = {}
    for i in range(6):
        name = f"agent-{i}"
        made[name] = write_session(
            store, traces, name, conversation(4, prefix=f"topic {i}"),
            flagged=[4] if i % 2 else [], errors=[2] if i == 3 else [],
            omit_fact=f"fact {i}" if i == 1 else None,
        )  # fmt: skip
    return made


def test_debugging_journey_from_sessions_to_a_byte_identical_replay(
    browser: Any, browser_store: BlockStore, settings: Any, model_server: Any, monkeypatch: Any
) -> None:
    settings.LLM386 = {**settings.LLM386, "ANTHROPIC_BASE_URL": model_server.base_url}
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-journey-test")
    made = _traced_sessions(browser_store)
    page = browser.page
    browser.login()
    expect(page.locator("#sessions-table tbody tr")).to_have_count(6)

    # filter to failing sessions: htmx swaps the table and the URL follows
    page.evaluate("window.__sameDocument = true")
    page.select_option("select[name=failing]", "yes")
    expect(page).to_have_url(re.compile(r"failing=yes"))
    expect(page.locator("#sessions-table tbody tr")).to_have_count(3)
    assert page.evaluate("window.__sameDocument") is True
    browser.shot("10-sessions-failing")

    # open a failing session: its timeline, the flagged turn standing out
    page.get_by_role("link", name="agent-1", exact=True).click()
    expect(page.locator("h1")).to_contain_text("agent-1")
    expect(page.locator("#turns-table tbody tr")).to_have_count(4)
    expect(page.locator("#turn-4")).to_have_class(re.compile("failing"))
    expect(page.locator("svg.stacked a.bar")).to_have_count(4)
    browser.shot("11-session-timeline")

    # open turn 3 and expand its recent section (loaded on demand)
    page.locator("#turn-3 a").first.click()
    expect(page.locator("h1")).to_contain_text("Turn 3")
    page.locator("a[data-expand=section-recent]").click()
    expect(page.locator("#section-recent table tbody tr")).to_have_count(5)
    expect(page.locator("#section-recent")).to_contain_text("recent-window")
    page.get_by_role("link", name=re.compile("candidates left out")).click()
    expect(page.locator("#omitted")).to_contain_text("over-budget")
    browser.shot("12-turn-expanded")

    # compare with the previous turn, then move with j and k
    page.get_by_role("link", name="Compare with previous").click()
    calls = made["agent-1"].call_ids
    expect(page).to_have_url(re.compile(rf"/compare/{calls[1]}/{calls[2]}/$"))
    expect(page.locator("table.diff").first).to_be_visible()
    browser.shot("13-compare")
    page.keyboard.press("j")
    expect(page).to_have_url(re.compile(rf"/compare/{calls[2]}/{calls[3]}/$"))
    page.keyboard.press("k")
    expect(page).to_have_url(re.compile(rf"/compare/{calls[1]}/{calls[2]}/$"))

    # replay turn 3 against the loopback Anthropic server: the bytes are identical
    page.goto(f"/traces/{calls[2]}/")
    page.get_by_role("button", name="Replay with the Anthropic API").click()
    expect(page.locator("[data-byte-identity]")).to_have_attribute(
        "data-byte-identity", "identical"
    )
    expect(page.locator("#replay")).to_contain_text("History")
    expect(page.locator("table.replays tbody tr")).to_have_count(1)
    browser.shot("14-replay")
    traces_request = model_server.requests[-1]
    from llm386web import store_access

    rec = store_access.get_traces().get(calls[2])
    assert traces_request.sha256 == rec.prompt_hash
    assert browser.page.content().count("sk-journey-test") == 0
    _no_csp_violations(browser)


def test_copying_the_prompt_hash_and_flagging_a_turn(
    browser: Any, browser_store: BlockStore
) -> None:
    made = _traced_sessions(browser_store)
    call = made["agent-0"].call_ids[0]
    page = browser.page
    browser.login()
    browser.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto(f"/traces/{call}/")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    from llm386web import store_access

    digest = store_access.get_traces().get(call).prompt_hash
    assert page.evaluate("navigator.clipboard.readText()") == digest
    page.fill("#flag-form input[name=note]", "<b>wrong</b> tool chosen")
    page.get_by_role("button", name="Flag as failing").click()
    expect(page.locator("#flag-form")).to_contain_text("flagged failing")
    expect(page.locator(".flag-note")).to_have_text("<b>wrong</b> tool chosen")
    assert store_access.get_traces().get(call).flagged
    _no_csp_violations(browser)


def test_hostile_trace_content_never_runs_on_turn_and_compare_pages(
    browser: Any, browser_store: BlockStore
) -> None:
    from llm386web import store_access
    from tests.web.tracefactory import write_session

    s = write_session(browser_store, store_access.get_traces(), "hostile-turns",
                      ["<script>alert('sys')</script>", *HOSTILE_BODIES])  # fmt: skip
    browser.login()
    urls = [f"/traces/{s.call_ids[-1]}/", f"/compare/{s.call_ids[0]}/{s.call_ids[-1]}/",
            f"/traces/{s.call_ids[-1]}/messages/", "/sessions/?q=alert"]  # fmt: skip
    for url in urls:
        browser.page.goto(url)
        browser.page.wait_for_load_state("load")
        assert browser.page.locator("a[href^='javascript'], [onerror], [onload]").count() == 0
    browser.page.goto(f"/traces/{s.call_ids[-1]}/")
    browser.page.locator("a[data-expand=section-recent]").click()
    expect(browser.page.locator("#section-recent")).to_contain_text("<img src=x onerror=")
    browser.shot("15-hostile-turn")
    _markdown_and_json_views_never_run(browser, browser_store)
    assert browser.dialogs == []
    _no_csp_violations(browser)


def _markdown_and_json_views_never_run(browser: Any, store: BlockStore) -> None:
    """Every vector of tests/web/hostile.py through the Markdown and JSON views, every
    collapsed part opened (and the raw text too): nothing runs, nothing is left executable."""
    from llm386web import store_access
    from tests.web.hostile import VECTORS, write_hostile_turn

    cid = write_hostile_turn(store, store_access.get_traces())
    page = browser.page
    for url in (f"/traces/{cid}/", f"/traces/{cid}/messages/?limit=500"):
        page.goto(url)
        page.wait_for_load_state("load")
        closed = page.locator("details:not([open]) > summary:visible")
        for _ in range(60):  # real clicks, as a reader opens collapsed parts (then all at once)
            if not closed.count():
                break
            closed.first.click()
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        page.mouse.move(5, 5)
        page.mouse.move(400, 400)  # hover handlers, if any had survived
        assert page.evaluate("window.__xss") is None, url
        assert page.locator(
            "main [onerror], main [onload], main [onclick], main [onmouseover], main [style], "
            "main script, main iframe, main object, main embed, main svg, main img, main a[href^='javascript']"
        ).count() == 0, url  # fmt: skip
    expect(page.locator(".part-markdown").first).to_be_visible()
    assert page.locator(".part-markdown").count() == len(VECTORS)
    expect(page.locator(".json-tree").first).to_contain_text("<b>key</b>")
    browser.shot("16-hostile-markdown-json", full_page=False)
