"""Compare with…: the picker finds turns by session, session and turn number, call id or a
prompt-hash prefix, across sessions; its links open the same section-aligned compare page."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client

from .tracefactory import conversation

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _picked(html: str) -> list[str]:
    return re.findall(r'<li data-call-id="([0-9a-z]+)">', html)


@pytest.fixture
def two(traced: Any) -> tuple[Any, Any]:
    return traced("alpha-run", conversation(3)), traced("beta-run", conversation(2, "other"))


def test_the_turn_page_has_a_picker_that_works_without_javascript(
    logged_in: Client, two: tuple[Any, Any]
) -> None:
    a, _ = two
    html = logged_in.get(f"/traces/{a.call_ids[0]}/").content.decode()
    assert 'action="/compare/pick/"' in html and f'name="a" value="{a.call_ids[0]}"' in html
    assert 'hx-get="/compare/pick/"' in html and 'id="pick-results"' in html


def test_picking_by_session_lists_its_turns_and_links_cross_session_compare(
    logged_in: Client, two: tuple[Any, Any]
) -> None:
    a, b = two
    page = logged_in.get(f"/compare/pick/?a={a.call_ids[2]}&q=beta-run").content.decode()
    assert _picked(page) == b.call_ids
    # the turn that started earlier goes on the left (beta's turn 1 started before alpha's 3)
    assert f'href="/compare/{b.call_ids[0]}/{a.call_ids[2]}/"' in page
    compare = logged_in.get(f"/compare/{b.call_ids[0]}/{a.call_ids[2]}/")
    html = compare.content.decode()
    assert compare.status_code == 200 and "(beta-run)" in html
    assert "Prompt cache" in html and "messages" in html


def test_picking_by_session_and_turn_number_call_id_prefix_or_hash_prefix(
    logged_in: Client, two: tuple[Any, Any], traces: Any
) -> None:
    a, b = two
    base = f"/compare/pick/?a={a.call_ids[0]}&q="
    for q in ("beta-run 2", "beta-run#2", "beta-run/2"):
        found = logged_in.get(base + quote(q), headers=HX).content.decode()
        assert _picked(found) == [b.call_ids[1]], q
    assert _picked(logged_in.get(base + b.call_ids[1][:-3]).content.decode()) == [b.call_ids[1]]
    digest = traces.get(b.call_ids[0]).prompt_hash
    assert _picked(logged_in.get(base + digest[:12]).content.decode()) == [b.call_ids[0]]


def test_the_picker_fragment_never_offers_the_turn_itself(
    logged_in: Client, two: tuple[Any, Any]
) -> None:
    a, _ = two
    response = logged_in.get(f"/compare/pick/?a={a.call_ids[0]}&q=alpha-run", headers=HX)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="pick-results"')
    assert _picked(html) == a.call_ids[1:]


def test_words_that_name_no_turn_offer_matching_sessions_or_say_what_to_type(
    logged_in: Client, two: tuple[Any, Any]
) -> None:
    a, _ = two
    html = logged_in.get(f"/compare/pick/?a={a.call_ids[0]}&q=beta").content.decode()
    assert "Sessions matching it" in html and "q=beta-run" in html
    none = logged_in.get(f"/compare/pick/?a={a.call_ids[0]}&q=zzzz-nothing").content.decode()
    assert "Nothing matches" in none and "8+ characters of a prompt hash" in none
    hexy = logged_in.get(f"/compare/pick/?a={a.call_ids[0]}&q=deadbeefdeadbeef").content.decode()
    assert "Nothing matches" in hexy


def test_the_picker_needs_a_turn_to_compare_from(logged_in: Client, two: tuple[Any, Any]) -> None:
    assert logged_in.get("/compare/pick/?q=x").status_code in (400, 404)
    assert logged_in.get("/compare/pick/?a=zzzzzzzzzzzz&q=x").status_code in (400, 404)


def test_session_turns_and_compare_pages_link_to_the_picker(
    logged_in: Client, two: tuple[Any, Any]
) -> None:
    a, _ = two
    session = logged_in.get("/sessions/alpha-run/").content.decode()
    assert f'href="/compare/pick/?a={a.call_ids[1]}"' in session
    compare = logged_in.get(f"/compare/{a.call_ids[0]}/{a.call_ids[1]}/").content.decode()
    assert f'href="/compare/pick/?a={a.call_ids[1]}"' in compare
