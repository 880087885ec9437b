"""Sessions list: figures per session, search, filters, sort and paging; fragments for htmx."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client

from runtime import BlockStore
from runtime.paging.faults import META_KEY

from .tracefactory import conversation
from .tracefactory import session_links as _session_links

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _next_link(html: bytes) -> str | None:
    found = re.search(r'<a href="([^"]+)"[^>]*rel="next"', html.decode())
    return found.group(1).replace("&amp;", "&") if found else None


def _row(html: str, session: str) -> str:
    return html[html.index(f"/sessions/{session}/") :].split("</tr>")[0]


def test_empty_store_says_how_to_get_sessions(logged_in: Client) -> None:
    response = logged_in.get("/")
    assert response.status_code == 200
    assert b"The store has no sessions yet" in response.content


def test_list_shows_model_turns_tokens_errors_flags_and_activity(
    logged_in: Client, traced: Any, put_session: Any, store: BlockStore
) -> None:
    traced("agent-1", conversation(3), errors=[2], flagged=[3], meta={"reward": 0})
    put_session("notes", ["just a block"], model="gpt-4o")
    html = logged_in.get("/sessions/").content.decode()
    row = _row(html, "agent-1")
    assert "claude-sonnet-4-6" in row
    assert '<td class="num">3</td>' in row  # turns
    # tokens: provider usage for the ok turns (1 and 3); the errored turn 2 is counted apart
    ok_in = (100 + 20) + (300 + 160 + 20)
    total = ok_in + (11 + 13)
    assert f">{total:,}<" in row and "failed attempts: 1" in row
    assert 'badge-fail">1</span>' in row  # one error
    assert "failing" in row and "1 flagged" in row
    # last activity: the later of the last put (meta was set just now) and the last call
    updated = dt.datetime.fromtimestamp(store.session_info("agent-1").updated_at / 1000, dt.UTC)
    assert f'<time datetime="{updated.isoformat()}' in row
    notes = _row(html, "notes")
    assert "gpt-4o" in notes and "failing" not in notes


def test_filters_by_model_status_failing_and_faults(
    logged_in: Client, traced: Any, put_session: Any, store: BlockStore
) -> None:
    traced("ok-run", conversation(2))
    traced("broken-run", conversation(2), errors=[1])
    traced("flagged-run", conversation(2), flagged=[2])
    put_session("gpt-run", ["x"], model="gpt-4o", failing=True)
    store.set_session_meta("ok-run", **{META_KEY: {"version": 1, "faults": [{"block_id": "ab"}]}})

    def names(query: str) -> list[str]:
        return sorted(_session_links(logged_in.get("/sessions/?" + query).content))

    assert names("model=gpt-4o") == ["gpt-run"]
    assert names("status=error") == ["broken-run"]
    assert names("status=untraced") == ["gpt-run"]
    assert names("failing=yes") == ["flagged-run", "gpt-run"]
    assert names("failing=no") == ["broken-run", "ok-run"]
    assert names("faults=yes") == ["ok-run"]
    assert names("faults=no&status=ok") == ["flagged-run"]


def test_search_by_id_by_words_in_blocks_and_by_prompt_hash(
    logged_in: Client, traced: Any, traces: Any
) -> None:
    traced("alpha-7", conversation(1))
    traced("beta", conversation(1, prefix="zebra crossing"))
    traced("gamma", conversation(2))

    def names(q: str) -> list[str]:
        return sorted(_session_links(logged_in.get("/sessions/", {"q": q}).content))

    assert names("ALPHA") == ["alpha-7"]
    assert names("zebras") == ["beta"]  # words, stemmed like the pager's index
    assert names("zebra refunds") == ["beta"]  # every word must be in the session
    assert names("nothing-like-this") == []
    gamma_turn_2 = traces.list(session="gamma", limit=None, newest_first=False)[1]
    html = logged_in.get("/sessions/", {"q": gamma_turn_2.prompt_hash}).content
    assert _session_links(html) == ["gamma"]
    assert b"matched as a prompt hash" in html


def test_search_finds_words_in_sessions_written_without_the_index_hook(
    logged_in: Client, tmp_path: Any, web_home: Any, settings: Any
) -> None:
    from llm386web import store_access
    from runtime import NewBlock, open_store
    from runtime.blocks import BlockKind

    store_access.reset_stores()  # another writer: a handle without the index hook
    other = open_store(settings.LLM386["STORE_PATH"])
    other.put_many("cli-run", [NewBlock(BlockKind.USER_MESSAGE, "where is my luggage")])
    html = logged_in.get("/sessions/", {"q": "luggage"}).content
    assert _session_links(html) == ["cli-run"]


def test_sort_by_tokens_both_ways_with_ties_broken_by_id(logged_in: Client, traced: Any) -> None:
    for name, turns in [("b", 1), ("a", 1), ("c", 3), ("d", 2)]:
        traced(name, conversation(turns))
    desc = _session_links(logged_in.get("/sessions/?sort=tokens&dir=desc").content)
    asc = _session_links(logged_in.get("/sessions/?sort=tokens&dir=asc").content)
    assert desc == ["c", "d", "a", "b"]
    assert asc == ["a", "b", "d", "c"]


def test_sort_by_session_id_goes_both_ways(logged_in: Client, put_session: Any) -> None:
    for name in ["b", "d", "a", "c"]:
        put_session(name, [f"body of {name}"])
    desc = _session_links(logged_in.get("/sessions/?sort=session&dir=desc").content)
    asc = _session_links(logged_in.get("/sessions/?sort=session&dir=asc").content)
    assert desc == ["d", "c", "b", "a"]
    assert asc == ["a", "b", "c", "d"]


def test_sort_header_toggles_direction_and_keeps_filters(logged_in: Client, traced: Any) -> None:
    traced("x", conversation(1))
    html = logged_in.get("/sessions/?sort=turns&dir=desc&model=claude-sonnet-4-6").content.decode()
    header = re.search(
        r'<th scope="col" class="num" aria-sort="descending"><a href="([^"]+)"', html
    )
    assert header is not None
    link = header.group(1).replace("&amp;", "&")
    assert "dir=asc" in link and "sort=turns" in link and "model=claude-sonnet-4-6" in link


def test_walking_next_links_visits_every_session_once_in_order(
    logged_in: Client, put_session: Any
) -> None:
    names = [f"s{i:02d}" for i in range(11)]
    for name in reversed(names):
        put_session(name, [f"body of {name}"])
    seen: list[str] = []
    url: str | None = "/sessions/?limit=3&sort=session&dir=asc"
    while url:
        response = logged_in.get(url if url.startswith("/") else "/sessions/" + url)
        seen += _session_links(response.content)
        url = _next_link(response.content)
    assert seen == names


def test_a_write_shows_up_on_the_next_request(logged_in: Client, traced: Any, traces: Any) -> None:
    s = traced("live", conversation(2))
    assert "flagged" not in _row(logged_in.get("/sessions/").content.decode(), "live")
    traces.flag(s.call_ids[0], "bad")
    assert "1 flagged" in _row(logged_in.get("/sessions/").content.decode(), "live")


@pytest.mark.parametrize(
    "query",
    ["status=bogus", "sort=bogus", "dir=up", "failing=maybe", "faults=1", "offset=-1", "limit=0",
     "limit=100000", "offset=abc"],
)  # fmt: skip
def test_bad_list_parameters_are_a_400_that_says_why(logged_in: Client, query: str) -> None:
    response = logged_in.get("/sessions/?" + query)
    assert response.status_code == 400
    assert query.split("=")[0].encode() in response.content


def test_htmx_request_gets_only_the_sessions_table_fragment(
    logged_in: Client, put_session: Any
) -> None:
    for i in range(4):
        put_session(f"s{i}", ["x"])
    response = logged_in.get("/sessions/?limit=2&offset=2&sort=session&dir=asc", headers=HX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="sessions-table"')
    assert "<html" not in html
    assert _session_links(html) == ["s2", "s3"]
    assert "HX-Request" in response["Vary"]
    # the order the fragment was asked for rides along with the filter form
    assert 'form="session-filters" name="sort" value="session"' in html


def test_history_restore_gets_the_whole_page(logged_in: Client, put_session: Any) -> None:
    put_session("s1", ["x"])
    headers = {**HX, "HX-History-Restore-Request": "true"}
    assert b"<html" in logged_in.get("/sessions/", headers=headers).content


def test_every_htmx_link_also_has_an_href(logged_in: Client, traced: Any) -> None:
    for i in range(5):
        traced(f"s{i}", conversation(3))
    for url in ("/sessions/?limit=2&offset=2", "/sessions/s1/?limit=1&offset=1",
                "/sessions/s1/blocks/?limit=1&start=1"):  # fmt: skip
        html = logged_in.get(url).content.decode()
        tags = re.findall(r"<a [^>]*hx-get[^>]*>", html)
        assert tags, url
        for tag in tags:
            href = re.search(r'href="([^"]+)"', tag)
            hx_get = re.search(r'hx-get="([^"]+)"', tag)
            assert href and hx_get and href.group(1) == hx_get.group(1)


def test_session_totals_count_what_was_sent_and_show_the_rest_apart(
    logged_in: Client, traced: Any, traces: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.providers import AnthropicAdapter
    from runtime.replay.resend import replay

    from .tracefactory import record_repage

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    s = traced("run", conversation(2))
    sent = traces.session_stats(["run"])[0]
    repaged = record_repage(traces, s.call_ids[1])
    failed = replay(traces, repaged, AnthropicAdapter(base_url="http://127.0.0.1:9")).record
    assert failed.status.value == "error" and not failed.attempts  # no key: nothing was sent
    page = logged_in.get("/sessions/run/").content.decode()
    assert (
        f'<dd title="calls that were answered; re-pages and failed attempts are counted apart">{sent.input_tokens:,}</dd>'
        in page
    )
    assert "1 (not sent)" in page and 'class="failed-attempts"' in page
    row = _row(logged_in.get("/").content.decode(), "run")
    assert f">{sent.total_tokens:,}<" in row
    assert "re-pages: 1 (not sent)" in row and "failed attempts: 1" in row
    for call_id in (repaged, failed.call_id):  # neither was charged for
        turn = logged_in.get(f"/traces/{call_id}/").content.decode()
        assert "list price" not in turn and "$" not in turn.split("Input cost")[1].split("</dd>")[0]
