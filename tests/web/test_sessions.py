"""Sessions list and session page: paging windows, fragments for htmx, links that work without JS."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from runtime import BlockStore

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _session_links(html: bytes) -> list[str]:
    return re.findall(r'<td class="id"><a href="/sessions/([^/]+)/">', html.decode())


def _next_link(html: bytes) -> str | None:
    found = re.search(r'<a href="([^"]+)"[^>]*rel="next"', html.decode())
    return found.group(1).replace("&amp;", "&") if found else None


def test_empty_store_says_how_to_get_sessions(logged_in: Client) -> None:
    response = logged_in.get("/")
    assert response.status_code == 200
    assert b"The store has no sessions yet" in response.content


def test_list_shows_each_session_with_count_and_meta(logged_in: Client, put_session: Any) -> None:
    put_session("tau-7", ["a", "b", "c"], model="gpt-4o", reward=0, turns=2)
    put_session("chat-1", ["hello"], model="claude-sonnet-4", reward=1)
    html = logged_in.get("/sessions/").content.decode()
    assert _session_links(html.encode()) == ["chat-1", "tau-7"]
    tau_row = html[html.index("/sessions/tau-7/") :].split("</tr>")[0]
    assert "gpt-4o" in tau_row
    assert "failing" in tau_row
    assert '<td class="num">3</td>' in tau_row
    assert '<td class="num">2</td>' in tau_row
    chat_row = html[html.index("/sessions/chat-1/") :].split("</tr>")[0]
    assert "failing" not in chat_row


def test_walking_next_links_visits_every_session_once_in_order(
    logged_in: Client, put_session: Any
) -> None:
    names = [f"s{i:02d}" for i in range(11)]
    for name in reversed(names):
        put_session(name, [f"body of {name}"])
    seen: list[str] = []
    url: str | None = "/sessions/?limit=3"
    while url:
        response = logged_in.get(url if url.startswith("/") else "/sessions/" + url)
        seen += _session_links(response.content)
        url = _next_link(response.content)
    assert seen == names


def test_htmx_request_gets_only_the_sessions_table_fragment(
    logged_in: Client, put_session: Any
) -> None:
    for i in range(4):
        put_session(f"s{i}", ["x"])
    response = logged_in.get("/sessions/?limit=2&offset=2", headers=HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="sessions-table"')
    assert "<html" not in html
    assert _session_links(response.content) == ["s2", "s3"]
    assert "HX-Request" in response["Vary"]


def test_history_restore_gets_the_whole_page(logged_in: Client, put_session: Any) -> None:
    put_session("s1", ["x"])
    headers = {**HX, "HX-History-Restore-Request": "true"}
    assert b"<html" in logged_in.get("/sessions/", headers=headers).content


def test_every_htmx_link_also_has_an_href(logged_in: Client, put_session: Any) -> None:
    for i in range(5):
        put_session(f"s{i}", ["x", "y", "z"])
    for url in ("/sessions/?limit=2&offset=2", "/sessions/s1/?limit=1&start=1"):
        html = logged_in.get(url).content.decode()
        tags = re.findall(r"<a [^>]*hx-get[^>]*>", html)
        assert tags, url
        for tag in tags:
            href = re.search(r'href="([^"]+)"', tag)
            hx_get = re.search(r'hx-get="([^"]+)"', tag)
            assert href and hx_get and href.group(1) == hx_get.group(1)


def test_session_page_lists_entries_with_block_links_and_tokens(
    logged_in: Client, put_session: Any
) -> None:
    ids = put_session("chat", ["What is the capital of France?", "Paris."], model="m1")
    html = logged_in.get("/sessions/chat/").content.decode()
    for block_id in ids:
        assert f'href="/blocks/{block_id}/"' in html
        assert f">{block_id[:12]}</a>" in html
    assert "What is the capital of France?" in html
    assert "user-message" in html and "assistant-message" in html
    assert '<td class="num">2</td>' in html  # "Paris." is 2 cl100k tokens


def test_session_pages_skip_deleted_entries_without_repeating(
    logged_in: Client, put_session: Any, store: BlockStore
) -> None:
    ids = put_session("gappy", [f"message {i}" for i in range(7)])
    store.delete_block(ids[2])
    store.delete_block(ids[3])
    seen: list[str] = []
    url: str | None = "/sessions/gappy/?limit=2"
    while url:
        html = logged_in.get(url if url.startswith("/") else "/sessions/gappy/" + url).content
        seen += re.findall(r'<tr id="seq-(\d+)">', html.decode())
        url = _next_link(html)
    assert seen == ["0", "1", "4", "5", "6"]


def test_session_page_previous_link_goes_back_one_page(logged_in: Client, put_session: Any) -> None:
    put_session("long", [f"m{i}" for i in range(6)])
    html = logged_in.get("/sessions/long/?limit=2&start=4").content.decode()
    prev = re.search(r'<a href="([^"]+)"[^>]*rel="prev"', html)
    assert prev is not None
    assert "start=2" in prev.group(1)


def test_session_page_fragment_for_htmx(logged_in: Client, put_session: Any) -> None:
    put_session("frag", ["a", "b", "c"])
    html = logged_in.get("/sessions/frag/?limit=1&start=1", headers=HX).content.decode()
    assert html.lstrip().startswith('<section id="entries-table"')
    assert re.findall(r'<tr id="seq-(\d+)">', html) == ["1"]
