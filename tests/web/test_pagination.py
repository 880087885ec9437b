"""Every paginated page uses the one pager: its links replace the fragment they came in.

The contract (templates/common/_pagination.html): a fragment is the element whose id its
links target, swapped with outerHTML, so paging never nests a list inside itself; lists that
are the page's own push the URL, lists embedded in another page (a turn's sections and
request, a block's uses) do not. Bad cursors are a 400 naming the parameter, never a 500.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from .tracefactory import conversation

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


@pytest.fixture
def paged(traced: Any, put_session: Any) -> dict[str, tuple[str, bool]]:
    """Return, for each paginated list, a URL showing a pager and whether its links push."""
    s = traced("run", conversation(3), omit_fact="an old fact")
    shared = put_session("one", ["shared question"])[0]
    put_session("two", ["shared question"])  # a second holder of the same block
    call = s.call_ids[2]
    return {
        "sessions-table": ("/sessions/?limit=1", True),
        "turns-table": ("/sessions/run/?limit=1", True),
        "entries-table": ("/sessions/run/blocks/?limit=1&start=1", True),
        "holders-table": (f"/blocks/{shared}/?limit=1", True),
        "uses-table": (f"/blocks/{s.block_ids[1]}/turns/?limit=1", False),
        "section-recent": (f"/traces/{call}/sections/recent/?limit=1", False),
        "omitted": (f"/traces/{call}/omitted/?limit=1&offset=5", False),  # past the end
        "request-view": (f"/traces/{call}/messages/?limit=1&offset=1", False),
    }


def _pager_links(html: str) -> list[str]:
    return [tag for nav in re.findall(r'<nav class="pager".*?</nav>', html, re.S)
            for tag in re.findall(r"<a [^>]*>", nav)]  # fmt: skip


def test_every_pager_link_replaces_the_fragment_it_came_in(
    logged_in: Client, paged: dict[str, tuple[str, bool]]
) -> None:
    for dom_id, (url, push) in paged.items():
        fragment = logged_in.get(url, headers=HX).content.decode()
        root = re.match(r'\s*<\w+ id="([^"]+)"', fragment)
        assert root is not None and root.group(1) == dom_id, (url, fragment[:80])
        links = _pager_links(fragment)
        assert links, url
        for tag in links:
            assert f'hx-target="#{dom_id}"' in tag and 'hx-swap="outerHTML"' in tag, tag
            assert f'hx-push-url="{"true" if push else "false"}"' in tag, tag
            href = re.search(r'href="([^"]+)"', tag)
            assert href and f'hx-get="{href.group(1)}"' in tag


def test_a_page_link_keeps_the_lists_query(logged_in: Client, put_session: Any) -> None:
    for i in range(3):
        put_session(f"s{i}", ["x"])
    listing = logged_in.get("/sessions/?limit=1&sort=session&dir=asc").content.decode()
    assert 'href="?dir=asc&amp;limit=1&amp;offset=1&amp;sort=session" ' in listing


def test_the_block_page_pages_its_uses_at_their_own_url_with_only_their_size(
    logged_in: Client, traced: Any, settings: Any
) -> None:
    settings.LLM386 = {**settings.LLM386, "PAGE_SIZE": 2}
    s = traced("run", conversation(3))
    html = logged_in.get(f"/blocks/{s.block_ids[1]}/?full=1").content.decode()
    uses = html[html.index('id="uses-table"') : html.index("Sessions holding it")]
    assert "records 1–2 of 3" in uses
    assert (
        re.findall(r'<a href="([^"]+)"[^>]*rel="next"', uses)
        == [f"/blocks/{s.block_ids[1]}/turns/?limit=2&amp;offset=2"] * 2
    )


@pytest.mark.parametrize("value", ["-1", "x", "1.5", "²", "9" * 5000, str(2**64)])
def test_a_bad_cursor_on_any_paginated_page_is_a_400_naming_it(
    logged_in: Client, paged: dict[str, tuple[str, bool]], value: str
) -> None:
    for url, _ in paged.values():
        base, _, query = url.partition("?")
        param = "start" if "start=" in query else "offset"
        response = logged_in.get(f"{base}?{param}={value}")
        assert response.status_code == 400, (url, response.status_code)
        assert (
            f"{param}=".encode() in response.content
            and b"is not a whole number" in response.content
        )
        assert logged_in.get(f"{base}?limit={value}").status_code == 400, url
