"""Readable content: assistant text as sanitised Markdown, tool calls and results as a JSON tree,
raw text one click away, and no executable markup from any hostile vector (tests/web/hostile.py)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from llm386web.content import MAX_DEPTH, json_tree_html, markdown_html
from runtime import BlockStore
from runtime.tracing.records import TraceStore

from .hostile import DEEP_UNPARSEABLE, VECTORS, executable, tags_of, write_hostile_turn

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("vector", VECTORS)
def test_markdown_of_a_hostile_vector_holds_no_executable_markup(vector: str) -> None:
    html = markdown_html(vector)
    assert html is not None
    assert executable(tags_of(html), page=False) == []
    assert {tag for tag, _ in tags_of(html)} <= {"a", "blockquote", "code", "em", "p", "pre", "strong",
        "table", "tbody", "td", "th", "thead", "tr", "h1", "h2", "ul", "ol", "li", "br", "hr"}  # fmt: skip


@pytest.mark.parametrize("vector", VECTORS)
def test_json_tree_of_a_hostile_vector_escapes_keys_and_values(vector: str) -> None:
    html = json_tree_html(json.dumps({vector: [vector, {"html": vector}]}))
    assert html is not None
    tags = tags_of(html)
    assert executable(tags, page=False) == []
    assert {tag for tag, _ in tags} <= {"ul", "li", "details", "summary", "span"}
    assert all(set(attrs) <= {"class", "open", "title"} for _, attrs in tags)


def test_markdown_renders_what_the_model_wrote() -> None:
    html = markdown_html(
        "# Plan\n\n1. **check** the `id`\n2. [docs](https://example.com)\n\n| a |\n|---|\n| 1 |"
    )
    assert (
        "<h1>Plan</h1>" in html and "<strong>check</strong>" in html and "<code>id</code>" in html
    )
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">docs</a>' in html
    assert "<td>1</td>" in html


def test_json_tree_caps_depth_and_size_and_keeps_numbers_exact() -> None:
    deep = json_tree_html("[" * 60 + "1" + "]" * 60)
    assert deep is not None and deep.count("<details") == MAX_DEPTH and "json-cut" in deep
    assert json_tree_html(DEEP_UNPARSEABLE) is None  # too deep to parse: shown raw
    huge = json_tree_html("[" + "9" * 5000 + ", 1e99999]")
    assert huge is not None and "9" * 5000 in huge and "1e99999" in huge
    wide = json_tree_html(json.dumps(list(range(5000))))
    assert wide is not None and wide.count("<li>") < 2100 and "more: see raw" in wide
    assert json_tree_html('"just a string"') is None and json_tree_html("not json") is None


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def test_turn_and_messages_pages_with_every_vector_hold_no_executable_markup(
    logged_in: Client, store: BlockStore, traces: TraceStore
) -> None:
    cid = write_hostile_turn(store, traces)
    for url in (f"/traces/{cid}/", f"/traces/{cid}/messages/?limit=500"):
        html = _page(logged_in, url)
        assert executable(tags_of(html), page=True) == [], url
    messages = _page(logged_in, f"/traces/{cid}/messages/?limit=500")
    # The readable views are there (so the check above read them), each with its raw text.
    assert messages.count('class="part part-markdown"') == len(VECTORS)
    assert messages.count('<ul class="json-tree">') >= 2 * len(VECTORS)
    assert messages.count('<details class="raw-view">') >= 3 * len(VECTORS)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in messages  # shown as text, not dropped
    assert "[" * 1000 in messages  # the unparseable depth is shown raw, not as a 500


def test_the_response_on_the_turn_page_is_markdown_with_its_raw_text(
    logged_in: Client, traced
) -> None:
    from .tracefactory import conversation

    s = traced("md", [*conversation(1)[:2], "**bold** and a [link](https://example.com)"])
    html = _page(logged_in, f"/traces/{s.call_ids[0]}/")
    assert "<strong>bold</strong>" in html
    assert (
        '<details class="raw-view"><summary>Raw</summary><pre class="part part-text">**bold** and a [link](https://example.com)</pre>'
        in html
    )
