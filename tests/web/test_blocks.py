"""Block page: content, hash, edges both ways, sessions holding it; prefixes; raw bytes; search."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from django.test import Client

from llm386web.templatetags.llm386 import short_call_id
from runtime import BlockStore, NewBlock
from runtime.blocks import BlockKind, content_hash
from runtime.tracing.records import _CallIds, new_call_id, prompt_hash

from .tracefactory import conversation

pytestmark = pytest.mark.django_db


def test_block_page_shows_body_hash_kind_and_holders(logged_in: Client, put_session: Any) -> None:
    ids = put_session("a", ["shared question", "answer a"])
    put_session("b", ["shared question", "answer b"])
    html = logged_in.get(f"/blocks/{ids[0]}/").content.decode()
    assert "shared question" in html
    assert ids[0] in html
    assert "user-message" in html
    assert 'href="/sessions/a/blocks/?start=0#seq-0"' in html
    assert 'href="/sessions/b/blocks/?start=0#seq-0"' in html


def test_block_page_links_edges_in_and_out(logged_in: Client, put_session: Any) -> None:
    ids = put_session("a", ["first", "second", "third"])
    html = logged_in.get(f"/blocks/{ids[1]}/").content.decode()
    out_part, in_part = html.split("Edges in")
    assert f'href="/blocks/{ids[0]}/"' in out_part.split("Edges out")[1]
    assert f'href="/blocks/{ids[2]}/"' in in_part.split("Sessions holding it")[0]
    assert "parent" in out_part


def test_a_unique_prefix_redirects_to_the_full_id(logged_in: Client, put_session: Any) -> None:
    ids = put_session("a", ["only block"])
    response = logged_in.get(f"/blocks/{ids[0][:10]}/")
    assert response.status_code == 302
    assert response["Location"] == f"/blocks/{ids[0]}/"


def test_raw_returns_the_exact_stored_bytes(logged_in: Client, store: BlockStore) -> None:
    body = "line one\r\n\ttabbed — ünïcode 🚀\n<b>not html</b>"
    entry = store.put("raw", NewBlock(BlockKind.DOCUMENT_CHUNK, body))
    response = logged_in.get(f"/blocks/{entry.id}/raw")
    assert response.content == body.encode("utf-8")
    assert response["Content-Type"] == "text/plain; charset=utf-8"


def test_long_bodies_render_cut_with_a_link_to_all_of_it(
    logged_in: Client, store: BlockStore
) -> None:
    body = "x" * 100_000 + "THE-END"
    entry = store.put("big", NewBlock(BlockKind.DOCUMENT_CHUNK, body))
    cut = logged_in.get(f"/blocks/{entry.id}/").content.decode()
    assert "THE-END" not in cut
    assert 'href="?full=1"' in cut
    assert "THE-END" in logged_in.get(f"/blocks/{entry.id}/?full=1").content.decode()


def test_search_jumps_to_a_session_or_block(logged_in: Client, put_session: Any) -> None:
    ids = put_session("findme", ["needle"])
    assert logged_in.get("/search/?q=findme")["Location"] == "/sessions/findme/"
    assert logged_in.get(f"/search/?q={ids[0][:8]}")["Location"] == f"/blocks/{ids[0]}/"


def test_search_without_a_match_says_why(logged_in: Client) -> None:
    html = logged_in.get("/search/?q=zzz").content.decode()
    assert "No match for" in html
    assert "no session &#x27;zzz&#x27;" in html
    assert "expected 4-64 hex characters" in html


def test_block_page_lists_every_turn_that_packed_or_omitted_it(
    logged_in: Client, traced: Any
) -> None:
    s = traced("run", conversation(3), omit_fact="an unused fact")
    first_message = s.block_ids[1]
    html = logged_in.get(f"/blocks/{first_message}/").content.decode()
    section = html[html.index("Turns that packed or omitted it") :]
    assert 'class="count">3</span>' in section
    for cid in s.call_ids:
        assert f'href="/traces/{cid}/"' in section
    assert section.count('badge-ok">packed') == 3 and "recent-window" in section
    fact = content_hash(BlockKind.FACT, "an unused fact")  # every turn left it out
    html = logged_in.get(f"/blocks/{fact}/").content.decode()
    assert html.count('badge-flag">omitted') == 3 and "over-budget" in html


def test_block_turns_page_and_fragment_page_through_uses(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(5))
    url = f"/blocks/{s.block_ids[0]}/turns/?limit=2&offset=2"
    page = logged_in.get(url).content.decode()
    assert "<html" in page and page.count('href="/traces/') == 2
    assert f'href="/traces/{s.call_ids[2]}/"' in page and 'rel="next"' in page
    fragment = logged_in.get(url, headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<section id="uses-table"')


def test_new_and_deleted_turns_show_up_on_the_block_page(
    logged_in: Client, traced: Any, traces: Any
) -> None:
    s = traced("run", conversation(2))
    block = s.block_ids[0]  # the system prompt, packed by every turn of every session
    assert 'class="count">2</span>' in logged_in.get(f"/blocks/{block}/").content.decode()
    traced("run2", conversation(3))  # shares the system prompt block
    html = logged_in.get(f"/blocks/{block}/").content.decode()
    assert 'Turns that packed or omitted it <span class="count">5</span>' in html
    traces.delete_session("run")
    html = logged_in.get(f"/blocks/{block}/").content.decode()
    assert 'Turns that packed or omitted it <span class="count">3</span>' in html
    assert "/sessions/run/" not in html.split("Sessions holding it")[0].split("Turns that")[1]


def test_search_jumps_to_a_turn_or_to_the_sessions_that_sent_a_prompt(
    logged_in: Client, traced: Any, traces: Any
) -> None:
    s = traced("run", conversation(2))
    call = s.call_ids[1]
    assert logged_in.get(f"/search/?q={call[:20]}")["Location"] == f"/traces/{call}/"
    digest = traces.get(call).prompt_hash
    assert logged_in.get(f"/search/?q={digest.upper()}")["Location"] == f"/sessions/?q={digest}"


# Two requests whose prompt hashes share their first 8 hex characters (351ff2e6).
TWINS = (b'{"messages":[],"n":26350}', b'{"messages":[],"n":57230}')


def test_search_takes_a_prompt_hash_prefix_and_explains_an_ambiguous_or_short_one(
    logged_in: Client, traced: Any, traces: Any
) -> None:
    s = traced("run", conversation(2))
    digest = traces.get(s.call_ids[1]).prompt_hash
    shown = logged_in.get(f"/search/?q={digest[:12]}")  # the 12 characters pages show
    assert shown["Location"] == f"/sessions/?q={digest}"
    assert logged_in.get(f"/search/?q={digest[:8].upper()}")["Location"] == f"/sessions/?q={digest}"
    html = logged_in.get("/sessions/", {"q": digest[:12]}).content.decode()
    assert '<a href="/sessions/run/">' in html and "matched as a prompt hash" in html
    first = traces.get(s.call_ids[0])
    for n, request in enumerate(TWINS, start=3):
        record = replace(first, call_id=new_call_id(), turn=n, prompt_hash=prompt_hash(request),
                         request_size=len(request))  # fmt: skip
        traces.record(record, request)
    a, b = sorted(prompt_hash(r) for r in TWINS)
    page = logged_in.get(f"/search/?q={a[:8]}")
    assert page.status_code == 200
    assert f"matches 2 hashes: {a[:12]}, {b[:12]}; give more characters" in page.content.decode()
    assert logged_in.get(f"/search/?q={b[:9]}")["Location"] == f"/sessions/?q={b}"
    short = logged_in.get(f"/search/?q={digest[:6]}").content.decode()
    assert "too short: give at least 8 hex characters" in short


def test_calls_made_in_the_same_millisecond_get_distinct_short_ids() -> None:
    ids = _CallIds()
    first, second = ids.next(now_ms=1_795_355_862_000), ids.next(now_ms=1_795_355_862_000)
    assert first[:12] == second[:12]  # why twelve characters were not enough
    assert short_call_id(first) != short_call_id(second)
    assert first.startswith(short_call_id(first)) and second.startswith(short_call_id(second))


def test_block_page_shows_each_turn_by_a_distinct_short_call_id(
    logged_in: Client, traced: Any
) -> None:
    s = traced("run", conversation(4))
    html = logged_in.get(f"/blocks/{s.block_ids[0]}/").content.decode()
    shown = re.findall(r'href="/traces/(\w+)/" title="\1">(\w+)</a>', html)
    assert sorted(cid for cid, _ in shown) == sorted(s.call_ids)
    assert len({short for _, short in shown}) == 4
    assert all(cid.startswith(short) and len(short) > 12 for cid, short in shown)
