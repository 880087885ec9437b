"""The triage list: failing, errored and flagged turns across sessions, filters, paging, and the
link to the last good turn."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.test import Client

from runtime import BlockStore
from runtime.tracing.records import TraceStore

from .tracefactory import T0, Session, conversation

pytestmark = pytest.mark.django_db

DAY = 86_400_000


def _turn_links(html: bytes) -> list[str]:
    return re.findall(r'<td class="id"><a href="/traces/([^/]+)/">', html.decode())


def _compare_links(html: bytes) -> list[tuple[str, str]]:
    return re.findall(r'href="/compare/([^/]+)/([^/]+)/"', html.decode())


def test_lists_errored_and_flagged_turns_newest_first_with_their_notes(
    logged_in: Client, traced: Callable[..., Session]
) -> None:
    old = traced("alpha", conversation(4), errors=[3])
    new = traced("beta", conversation(4), flagged=[2], started=T0 + DAY)
    traced("calm", conversation(3))  # nothing wrong: not listed
    response = logged_in.get("/triage/")
    assert response.status_code == 200
    assert _turn_links(response.content) == [new.call_ids[1], old.call_ids[2]]
    html = response.content.decode()
    assert "overloaded_error (HTTP 529): Overloaded" in html
    assert "wrong answer" in html
    assert "calm" not in html


def test_compare_link_pairs_a_turn_with_the_last_good_turn_before_it(
    logged_in: Client, traced: Callable[..., Session]
) -> None:
    s = traced("alpha", conversation(5), errors=[4], flagged=[3])
    html = logged_in.get("/triage/").content
    # Turn 4 errored and turn 3 is flagged: the last good turn before 4 is turn 2.
    assert (s.call_ids[1], s.call_ids[3]) in _compare_links(html)
    assert (s.call_ids[1], s.call_ids[2]) in _compare_links(html)


def test_first_turn_that_failed_has_no_good_turn_to_compare_with(
    logged_in: Client, traced: Callable[..., Session]
) -> None:
    traced("alpha", conversation(2), errors=[1])
    html = logged_in.get("/triage/").content
    assert _compare_links(html) == []
    assert b"no good turn before" in html


def test_kind_filter_keeps_only_that_kind(
    logged_in: Client, traced: Callable[..., Session]
) -> None:
    a = traced("alpha", conversation(3), errors=[2])
    b = traced("beta", conversation(3), flagged=[1])
    c = traced("gamma", conversation(3), meta={"reward": 0})  # failing, nothing flagged
    assert _turn_links(logged_in.get("/triage/?kind=errored").content) == [a.call_ids[1]]
    assert _turn_links(logged_in.get("/triage/?kind=flagged").content) == [b.call_ids[0]]
    # A failing session with no errored or flagged turn is listed by its last turn.
    assert _turn_links(logged_in.get("/triage/?kind=failing").content) == [c.call_ids[2]]


def test_model_source_and_date_filters(logged_in: Client, traced: Callable[..., Session]) -> None:
    a = traced("alpha", conversation(2), errors=[1], meta={"source": "tau-bench"})
    b = traced("beta", conversation(2), errors=[1], started=T0 + 3 * DAY)
    assert _turn_links(logged_in.get("/triage/?source=tau-bench").content) == [a.call_ids[0]]
    assert _turn_links(logged_in.get("/triage/?model=claude-sonnet-4-6").content) == [
        b.call_ids[0], a.call_ids[0]]  # fmt: skip
    assert _turn_links(logged_in.get("/triage/?model=other").content) == []
    # T0 is 2025-10-09 UTC: "since" the day after keeps only the later session.
    assert _turn_links(logged_in.get("/triage/?since=2025-10-10").content) == [b.call_ids[0]]
    assert _turn_links(logged_in.get("/triage/?until=2025-10-10").content) == [a.call_ids[0]]


@pytest.mark.parametrize(
    "query", ["kind=bad", "since=yesterday", "until=2025-13-01", "since=2025-10-10&until=2025-10-01",
              "offset=-1", "limit=0"],
)  # fmt: skip
def test_bad_filters_are_a_400_with_a_message(logged_in: Client, query: str) -> None:
    response = logged_in.get(f"/triage/?{query}")
    assert response.status_code == 400
    assert b"Traceback" not in response.content


def test_pages_with_the_one_pager_and_serves_the_fragment_to_htmx(
    logged_in: Client, traced: Callable[..., Session]
) -> None:
    s = traced("alpha", conversation(5), errors=[1, 2, 3, 4, 5])
    first = logged_in.get("/triage/?limit=2")
    assert _turn_links(first.content) == [s.call_ids[4], s.call_ids[3]]
    assert b"turns 1\xe2\x80\x932 of 5" in first.content
    last = logged_in.get("/triage/?limit=2&offset=4", HTTP_HX_REQUEST="true")
    assert _turn_links(last.content) == [s.call_ids[0]]
    assert not last.content.lstrip().startswith(b"<!doctype")
    assert last.content.lstrip().startswith(b'<section id="triage-table"')


def test_a_new_flag_and_unflag_show_on_the_next_request(
    logged_in: Client, traced: Callable[..., Session], traces: TraceStore
) -> None:
    s = traced("alpha", conversation(3))
    assert _turn_links(logged_in.get("/triage/").content) == []
    traces.flag(s.call_ids[1], "<b>looks wrong</b>")
    html = logged_in.get("/triage/").content
    assert _turn_links(html) == [s.call_ids[1]]
    assert b"&lt;b&gt;looks wrong&lt;/b&gt;" in html  # a note is escaped like all trace text
    traces.unflag(s.call_ids[1])
    assert _turn_links(logged_in.get("/triage/").content) == []


def test_triage_needs_a_login(client: Client) -> None:
    response = client.get("/triage/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_imported_failing_runs_are_listed_by_the_turn_that_went_wrong(
    logged_in: Client, imported_demo: list, traces: TraceStore
) -> None:
    html = logged_in.get("/triage/?kind=flagged&limit=200").content
    links = _turn_links(html)
    assert len(links) == 84 == traces.count(flagged=True)
    assert b"first to call" in html  # most runs name the call that departed from the task
    # The compare link pairs each with an earlier turn of the same session.
    for good, bad in _compare_links(html):
        a, b = traces.get(good), traces.get(bad)
        assert a.session == b.session and a.turn < b.turn and not a.flagged


def test_only_the_listed_records_are_ever_decoded(
    logged_in: Client, traced: Callable[..., Session], store: BlockStore
) -> None:
    from runtime.inspect import triage

    a = traced("alpha", conversation(6), errors=[2])
    b = traced("beta", conversation(6), flagged=[5])
    logged_in.get("/triage/")
    traced("gamma", conversation(6))  # ok turns: a change, but nothing to decode
    assert _turn_links(logged_in.get("/triage/").content) == [b.call_ids[4], a.call_ids[1]]
    assert sorted(triage._records[store.kv]) == sorted([a.call_ids[1], b.call_ids[4]])


def test_the_table_kept_across_writes_equals_one_built_from_scratch(
    traced: Callable[..., Session], store: BlockStore, traces: TraceStore
) -> None:
    from runtime.inspect import triage
    from runtime.storage.purge import purge_session

    def both() -> tuple[tuple[triage.TriageRow, ...], tuple[triage.TriageRow, ...]]:
        kept = triage.triage_table(store, traces)
        triage.forget_triage()
        return kept, triage.triage_table(store, traces)

    a = traced("alpha", conversation(4), errors=[2], meta={"reward": 0})
    triage.triage_table(store, traces)
    steps = [
        lambda: traced("beta", conversation(3), flagged=[1]),
        lambda: traces.flag(a.call_ids[3], "later"),
        lambda: traces.unflag(a.call_ids[3]),
        lambda: traced("gamma", conversation(2), meta={"failing": True}),
        lambda: store.set_session_meta("gamma", failing=False),
        lambda: purge_session(store, traces, "beta"),
    ]
    for step in steps:
        step()
        kept, fresh = both()
        assert kept == fresh
    assert {r.session for r in fresh} == {"alpha"}
