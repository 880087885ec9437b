"""Everything from the store is untrusted: it renders as text, never as markup."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from runtime.tracing.records import StoredTrace, TraceRecord, new_call_id

from .hostile import executable, tags_of
from .tracefactory import conversation

pytestmark = pytest.mark.django_db

RAW = (
    b"<script>alert(1)</script>",
    b"<img src=x onerror=alert(1)>",
    b'<a href="javascript:alert(1)">',
    b"<script>alert(2)</script>",
)
HOSTILE = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
)
ESCAPED = (
    b"&lt;script&gt;alert(1)&lt;/script&gt;",
    b"&lt;img src=x onerror=alert(1)&gt;",
    b"&lt;a href=&quot;javascript:alert(1)&quot;&gt;",
)


def _assert_inert(html: bytes) -> None:
    for raw in RAW:
        assert raw not in html
    # Parsed as a browser would: text that reads href="javascript:…" is not an attribute.
    assert executable(tags_of(html.decode()), page=True) == []
    assert b"onerror=alert(1)>" not in html


def test_session_blocks_page_escapes_hostile_bodies(logged_in: Client, hostile: list[str]) -> None:
    html = logged_in.get("/sessions/hostile-1/blocks/").content
    _assert_inert(html)
    for escaped in ESCAPED:
        assert escaped in html


def test_sessions_list_escapes_hostile_meta(logged_in: Client, hostile: list[str]) -> None:
    html = logged_in.get("/sessions/").content
    _assert_inert(html)
    assert b"&lt;script&gt;alert(2)&lt;/script&gt;" in html


@pytest.mark.parametrize("index", [0, 1, 2])
def test_block_page_escapes_hostile_body_and_neighbours(
    logged_in: Client, hostile: list[str], index: int
) -> None:
    html = logged_in.get(f"/blocks/{hostile[index]}/").content
    _assert_inert(html)
    assert ESCAPED[index] in html


@pytest.mark.parametrize("tab", ["", "blocks/"])
def test_session_meta_details_escape_values(
    logged_in: Client, hostile: list[str], tab: str
) -> None:
    html = logged_in.get(f"/sessions/hostile-1/{tab}").content
    assert b"&lt;script&gt;alert(2)&lt;/script&gt;" in html
    _assert_inert(html)


def _hostile_turns(traced: Any) -> Any:
    bodies = ["<script>alert(1)</script> system", *(f"{b} #{i}" for i, b in enumerate(HOSTILE * 2))]
    return traced("hostile-2", bodies, meta={"title": "<script>alert(2)</script>"})


def test_turn_pages_and_fragments_escape_hostile_content(logged_in: Client, traced: Any) -> None:
    s = _hostile_turns(traced)
    cid = s.call_ids[-1]
    for url in ("/sessions/hostile-2/", f"/traces/{cid}/", f"/traces/{cid}/sections/recent/",
                f"/traces/{cid}/messages/", f"/traces/{cid}/json/",
                f"/compare/{s.call_ids[0]}/{cid}/", "/sessions/?q=alert"):  # fmt: skip
        html = logged_in.get(url).content
        _assert_inert(html)
        assert b"alert(" in html and b"&lt;" in html, url  # shown, as text


def test_raw_request_bytes_are_plain_text(logged_in: Client, traced: Any) -> None:
    s = _hostile_turns(traced)
    response = logged_in.get(f"/traces/{s.call_ids[0]}/request")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"<script>alert(1)</script>" in response.content  # exact bytes, never rendered


def test_raw_body_is_served_as_plain_text_not_html(logged_in: Client, hostile: list[str]) -> None:
    response = logged_in.get(f"/blocks/{hostile[0]}/raw")
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content == RAW[0]


def _with_plan_sections(traced: Any, traces: Any, names: list[str]) -> str:
    """Record a copy of a turn whose plan names the given sections; return its call id."""
    s = traced("odd-sections", conversation(2))
    stored = traces.stored_trace(s.call_ids[-1])
    block = s.block_ids[0]
    plan = {"selected": [{"block_id": block, "section": n, "reason": "r", "tokens": 1} for n in names],
            "omitted": [], "sections": [{"section": n, "allocated": 10, "used": 1} for n in names]}  # fmt: skip
    record = TraceRecord.from_json(
        stored.record.to_json() | {"call_id": new_call_id(), "turn": 3, "plan": plan}
    )
    traces.record_many([StoredTrace(record, stored.request, stored.response)])
    return record.call_id


def test_stored_section_names_never_reach_htmx_selectors_or_urls(
    logged_in: Client, traced: Any, traces: Any
) -> None:
    cid = _with_plan_sections(traced, traces, ["x,#main", "a/b", "recent"])
    html = logged_in.get(f"/traces/{cid}/").content.decode()
    hx = re.findall(r'hx-(?:target|indicator)="([^"]*)"', html)
    ids = re.findall(r'\sid="([^"]*)"', html)
    assert hx and not any("main" in v or "/" in v or "," in v for v in hx)
    assert not any("," in v or "/" in v for v in ids)
    assert 'href=""' not in html and "x,#main" in html and "a/b" in html  # shown as text
    assert (
        f'hx-get="/traces/{cid}/sections/recent/"' in html and 'hx-target="#section-recent"' in html
    )
    assert logged_in.get(f"/traces/{cid}/sections/x,%23main/").status_code == 404
