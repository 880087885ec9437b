"""The sessions list's date range, provider, tag and metadata filters, and their bad values."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from runtime import BlockStore
from runtime.tags import retag

from .tracefactory import T0, Session, conversation, session_links

pytestmark = pytest.mark.django_db

DAY = 86_400_000  # T0 is 2025-10-09 (UTC); turns start a second apart


def _listed(client: Client, query: str) -> list[str]:
    response = client.get(f"/sessions/?{query}")
    assert response.status_code == 200, response.content[:300]
    return sorted(session_links(response.content))


def test_date_range_keeps_sessions_with_calls_on_those_utc_days(
    logged_in: Client, traced: Callable[..., Session]
) -> None:
    traced("early", conversation(2))
    traced("later", conversation(2), started=T0 + 3 * DAY)
    assert _listed(logged_in, "since=2025-10-09&until=2025-10-09") == ["early"]
    assert _listed(logged_in, "since=2025-10-10") == ["later"]
    assert _listed(logged_in, "until=2025-10-11") == ["early"]
    assert _listed(logged_in, "since=2025-10-08&until=2025-10-12") == ["early", "later"]
    assert _listed(logged_in, "since=2025-10-13") == []


def test_provider_filter_reads_meta_provider_else_the_models_provider(
    logged_in: Client, traced: Callable[..., Session], put_session: Any
) -> None:
    traced("claude", conversation(2))  # claude-sonnet-4-6: anthropic by the catalog
    put_session("gpt", ["hi", "hello"], model="gpt-4o")
    put_session("captured", ["hi", "hello"], model="some-local-model", provider="offline")
    put_session("unknown", ["hi", "hello"], model="some-local-model")
    assert _listed(logged_in, "provider=anthropic") == ["claude"]
    assert _listed(logged_in, "provider=openai") == ["gpt"]
    assert _listed(logged_in, "provider=offline") == ["captured"]
    page = logged_in.get("/sessions/").content.decode()
    assert '<option value="openai">openai</option>' in page


def test_tag_filter_needs_every_tag_named(
    logged_in: Client, put_session: Any, store: BlockStore
) -> None:
    for name in ("a", "b", "c"):
        put_session(name, ["hi", "hello"])
    retag(store, "a", ["billing", "urgent"])
    retag(store, "b", ["billing"])
    store.set_session_meta("c", tags="billing")  # not a list: read as no tags
    assert _listed(logged_in, "tag=billing") == ["a", "b"]
    assert _listed(logged_in, "tag=urgent,billing") == ["a"]
    assert _listed(logged_in, "tag=billing,+urgent+,") == ["a"]  # spaces and empties ignored
    assert _listed(logged_in, "tag=nope") == []
    page = logged_in.get("/sessions/?tag=billing").content.decode()
    assert 'name="tag" value="billing"' in page
    assert '<option value="urgent">' in page  # the known tags are offered


def test_meta_filter_by_key_and_by_key_value(logged_in: Client, put_session: Any) -> None:
    put_session("a", ["hi"], model="m", task_id=12, captured=True, info={"x": 1})
    put_session("b", ["hi"], model="m", task_id=7)
    put_session("c", ["hi"], model="m")
    assert _listed(logged_in, "meta=task_id") == ["a", "b"]
    assert _listed(logged_in, "meta=task_id%3D12") == ["a"]
    assert _listed(logged_in, "meta=captured%3Dtrue") == ["a"]
    assert _listed(logged_in, "meta=info") == ["a"]  # an object: its key only
    assert _listed(logged_in, "meta=task_id&meta=captured") == ["a"]  # every term
    assert _listed(logged_in, "meta=model%3Dm&meta=") == ["a", "b", "c"]
    assert _listed(logged_in, "meta=task_id%3D") == []  # an empty value is a value
    page = logged_in.get("/sessions/?meta=task_id%3D12").content.decode()
    assert 'name="meta" value="task_id=12"' in page


def test_filters_combine_and_each_link_keeps_them(
    logged_in: Client, traced: Callable[..., Session], store: BlockStore
) -> None:
    for i in range(3):
        traced(f"s{i}", conversation(2), started=T0 + i * DAY, meta={"source": "tau-bench"})
        retag(store, f"s{i}", ["nightly"])
    query = "since=2025-10-10&tag=nightly&provider=anthropic&source=import&limit=1"
    response = logged_in.get(f"/sessions/?{query}")
    assert session_links(response.content) == ["s2"]  # newest activity first
    page = response.content.decode()
    nxt = page.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert "since=2025-10-10" in nxt and "tag=nightly" in nxt and "provider=anthropic" in nxt
    assert session_links(logged_in.get(nxt).content) == ["s1"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("since=yesterday", "since='yesterday' is not a date written YYYY-MM-DD"),
        ("until=2025-13-01", "until='2025-13-01' is not a date"),
        ("since=2025-10-12&until=2025-10-10", "starts (2025-10-12) after it ends (2025-10-10)"),
        ("tag=%3Cscript%3E", "tag '<script>' is not valid"),
        ("tag=" + ",".join(f"t{i}" for i in range(11)), "filter by at most 10"),
        ("meta=%3Dvalue", "names no key"),
        ("meta=" + "k" * 201, "is over 200 characters"),
    ],
)
def test_bad_filter_values_are_a_400_that_says_why(
    logged_in: Client, query: str, says: str
) -> None:
    response = logged_in.get(f"/sessions/?{query}")
    assert response.status_code == 400
    assert says in html.unescape(response.content.decode())
    assert b"<script>" not in response.content


def test_hostile_tags_and_meta_are_escaped(logged_in: Client, put_session: Any, store: Any) -> None:
    put_session("h", ["hi"], **{"<b>key</b>": "<script>alert(1)</script>"})
    page = logged_in.get("/sessions/?meta=%3Cb%3Ekey%3C/b%3E").content.decode()
    assert session_links(page) == ["h"]
    assert "<b>key</b>" not in page and "&lt;b&gt;key&lt;/b&gt;" in page
