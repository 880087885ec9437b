"""Session timeline and turn page: figures, sections, blocks on demand, request, response, flag."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.test import Client

from runtime.tracing.records import StoredTrace, TraceOrigin, new_call_id
from runtime.tracing.records import TraceRecord as Record

from .tracefactory import conversation

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def test_timeline_lists_turns_in_order_with_status_latency_and_tokens(
    logged_in: Client, traced: Any
) -> None:
    s = traced("run", conversation(3), errors=[2], flagged=[3])
    html = logged_in.get("/sessions/run/").content.decode()
    rows = re.findall(r'<tr id="turn-(\d+)" class="([^"]*)">(.*?)</tr>', html, re.S)
    assert [n for n, _, _ in rows] == ["1", "2", "3"]
    (_, cls1, row1), (_, cls2, row2), (_, cls3, row3) = rows
    assert cls1 == "" and "errored" in cls2 and "failing" in cls3
    assert f'href="/traces/{s.call_ids[0]}/"' in row1
    assert "251 ms" in row1  # latency
    assert ">120</td>" in row1.replace(" ", "")  # provider input: 100 + 0 read + 20 written
    assert "error" in row2 and "est." in row2  # no usage: the local estimate, marked
    assert ">160</td>" in row3  # cache read of turn 3
    assert "first turn" in row1 and "with previous" in row2


def test_timeline_chart_has_a_bar_per_turn_stacked_by_section(
    logged_in: Client, traced: Any
) -> None:
    s = traced("run", conversation(3), flagged=[2])
    html = logged_in.get("/sessions/run/").content.decode()
    svg = html[html.index('<svg class="stacked"') : html.index("</svg>")]
    bars = re.findall(r'<a href="/traces/([0-9a-f]+)/" class="bar([^"]*)">', svg)
    assert [cid for cid, _ in bars] == s.call_ids
    assert "bar-failing" in bars[1][1]
    assert svg.count('class="seg seg-system"') == 3 and svg.count('class="seg seg-recent"') == 3
    assert "style=" not in svg  # geometry in attributes, colours from CSS classes (CSP)


def test_replays_are_counted_under_the_turn_they_replay(
    logged_in: Client, traced: Any, traces: Any
) -> None:
    s = traced("run", conversation(2))
    stored = traces.stored_trace(s.call_ids[1])
    replay = Record.from_json(
        stored.record.to_json() | {"call_id": new_call_id(), "origin": TraceOrigin.REPLAY.value,
                                   "parent_call_id": s.call_ids[1]}
    )  # fmt: skip
    traces.record_many([StoredTrace(replay, stored.request, stored.response)])
    html = logged_in.get("/sessions/run/").content.decode()
    assert re.findall(r'<tr id="turn-(\d+)"', html) == ["1", "2"]
    assert "1 replay" in html
    turn = logged_in.get(f"/traces/{s.call_ids[1]}/").content.decode()
    assert f'href="/traces/{replay.call_id}/"' in turn  # the turn lists its replays


def test_timeline_pages_by_turn(logged_in: Client, traced: Any) -> None:
    traced("long", conversation(5))
    html = logged_in.get("/sessions/long/?limit=2&offset=2").content.decode()
    assert re.findall(r'<tr id="turn-(\d+)"', html) == ["3", "4"]
    fragment = logged_in.get("/sessions/long/?limit=2&offset=4", headers=HX).content.decode()
    assert fragment.lstrip().startswith('<section id="turns-table"')
    assert re.findall(r'<tr id="turn-(\d+)"', fragment) == ["5"]


def test_session_without_traces_points_to_its_blocks(logged_in: Client, put_session: Any) -> None:
    put_session("plain", ["a", "b"])
    html = logged_in.get("/sessions/plain/").content.decode()
    assert "No model call of this session was traced" in html
    assert 'href="/sessions/plain/blocks/"' in html


def test_blocks_tab_lists_entries_with_links_and_tokens(
    logged_in: Client, put_session: Any
) -> None:
    ids = put_session("chat", ["What is the capital of France?", "Paris."], model="m1")
    html = logged_in.get("/sessions/chat/blocks/").content.decode()
    for block_id in ids:
        assert f'href="/blocks/{block_id}/"' in html
    assert "What is the capital of France?" in html
    assert '<td class="num">2</td>' in html  # "Paris." is 2 cl100k tokens


def test_session_turn_number_redirects_to_the_record(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(2))
    response = logged_in.get("/sessions/run/turns/2/")
    assert response.status_code == 302 and response["Location"] == f"/traces/{s.call_ids[1]}/"
    assert logged_in.get("/sessions/run/turns/9/").status_code == 404


def test_turn_page_shows_sections_figures_hash_and_badges(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(3), omit_fact="the customer is a gold member")
    html = logged_in.get(f"/traces/{s.call_ids[2]}/").content.decode()
    assert "Turn 3" in html and "replay-complete" in html
    assert '<code id="prompt-hash" class="hash">' in html and 'data-copy="prompt-hash"' in html
    # sections: budget and use with a bar, block counts linking to the blocks
    system = html[html.index('id="section-row-system"') :].split("</tr>")[0]
    recent = html[html.index('id="section-row-recent"') :].split("</tr>")[0]
    assert '<td class="num">4,000</td>' in recent and "% of budget" in recent
    assert "share of input" in system
    assert f'href="/traces/{s.call_ids[2]}/sections/recent/"' in recent
    # provider counts with the local estimate beside them
    assert '480 <span class="muted">provider</span>' in html and "270 <abbr" in html
    assert 'Omitted candidates <span class="count">1</span>' in html
    assert "$0.00" in html and "list price" in html  # priced from usage


def test_section_fragment_lists_blocks_with_reason_scores_and_tokens(
    logged_in: Client, traced: Any
) -> None:
    s = traced("run", conversation(2))
    url = f"/traces/{s.call_ids[1]}/sections/recent/"
    fragment = logged_in.get(url, headers=HX).content.decode()
    assert "<html" not in fragment
    assert fragment.count("</tr>") == 1 + 3  # header, messages 0..2 (system has its own section)
    assert "recent-window" in fragment and "bm25 0.250" in fragment and "recency 1.000" in fragment
    assert f'href="/blocks/{s.block_ids[1]}/"' in fragment
    page = logged_in.get(url + "?limit=2").content.decode()
    assert "<html" in page and page.count("</tr>") == 1 + 2
    assert 'rel="next"' in page and "offset=2" in page


def test_omitted_fragment_says_why_each_was_left_out(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(2), omit_fact="an old fact")
    html = logged_in.get(f"/traces/{s.call_ids[0]}/omitted/", headers=HX).content.decode()
    assert "over-budget" in html and "an old fact" in html and "retrieved" in html


def test_unknown_section_is_a_404(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(1))
    response = logged_in.get(f"/traces/{s.call_ids[0]}/sections/nope/")
    assert response.status_code == 404 and b"nope" in response.content


def test_request_as_chat_json_and_exact_bytes(logged_in: Client, traced: Any, traces: Any) -> None:
    s = traced("run", conversation(3))
    cid = s.call_ids[2]
    chat = logged_in.get(f"/traces/{cid}/messages/", headers=HX).content.decode()
    assert chat.count('class="message role-user"') == 3
    assert chat.count('class="message role-assistant"') == 2
    assert "You are a careful assistant." in chat and "cache breakpoint" in chat
    paged = logged_in.get(f"/traces/{cid}/messages/?limit=2&offset=4").content.decode()
    assert 'id="message-4"' in paged and 'id="message-3"' not in paged
    pretty = logged_in.get(f"/traces/{cid}/json/", headers=HX).content.decode()
    assert "&quot;max_tokens&quot;: 1024" in pretty
    raw = logged_in.get(f"/traces/{cid}/request")
    record = traces.get(cid)
    assert hashlib.sha256(raw.content).hexdigest() == record.prompt_hash
    assert "attachment" in logged_in.get(f"/traces/{cid}/request?download=1")["Content-Disposition"]
    response = logged_in.get(f"/traces/{cid}/response")
    assert hashlib.sha256(response.content).hexdigest() == record.response_hash


def test_errored_turn_shows_the_error_and_has_no_response(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(2), errors=[2])
    html = logged_in.get(f"/traces/{s.call_ids[1]}/").content.decode()
    assert "overloaded_error" in html and "HTTP 529" in html and "Overloaded" in html
    assert "No response was recorded" in html
    assert logged_in.get(f"/traces/{s.call_ids[1]}/response").status_code == 404


def test_turn_nav_links_previous_next_and_compare(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(3))
    html = logged_in.get(f"/traces/{s.call_ids[1]}/").content.decode()
    assert f'href="/traces/{s.call_ids[0]}/" rel="prev" data-key="k"' in html
    assert f'href="/traces/{s.call_ids[2]}/" rel="next" data-key="j"' in html
    assert f'href="/compare/{s.call_ids[0]}/{s.call_ids[1]}/"' in html


def test_a_call_id_prefix_redirects_to_the_permalink(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(1))
    response = logged_in.get(f"/traces/{s.call_ids[0][:20]}/")
    assert response.status_code == 302 and response["Location"] == f"/traces/{s.call_ids[0]}/"


@pytest.mark.parametrize(
    ("url", "status"),
    [("/traces/zzz/", 400), ("/traces/1234567890123000000000000/", 404),
     ("/traces/1234567890123000000000000/messages/", 404), ("/sessions/nope/", 404),
     ("/sessions/bad id!/", 404), ("/traces/1234567890123000000000000/request", 404)],
)  # fmt: skip
def test_bad_turn_urls_say_what_was_not_found(
    logged_in: Client, traced: Any, url: str, status: int
) -> None:
    traced("run", conversation(1))
    response = logged_in.get(url)
    assert response.status_code == status
    assert b"error-text" in response.content


def _csrf_client(user: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _token(client: Client, url: str) -> str:
    html = client.get(url).content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]


def test_flagging_a_turn_needs_csrf_and_keeps_the_note(
    user: Any, store: Any, traced: Any, traces: Any
) -> None:
    s = traced("run", conversation(2))
    client = _csrf_client(user)
    url = f"/traces/{s.call_ids[0]}/flag"
    assert client.post(url, {"note": "no token"}).status_code == 403
    assert not traces.get(s.call_ids[0]).flagged
    token = _token(client, f"/traces/{s.call_ids[0]}/")
    response = client.post(url, {"note": "booked the <wrong> flight", "action": "flag",
                                 "csrfmiddlewaretoken": token})  # fmt: skip
    assert response.status_code == 302
    assert traces.get(s.call_ids[0]).flag.note == "booked the <wrong> flight"
    html = client.get(f"/traces/{s.call_ids[0]}/").content.decode()
    assert "flagged failing" in html and "booked the &lt;wrong&gt; flight" in html
    fragment = client.post(url, {"action": "unflag", "csrfmiddlewaretoken": token},
                           headers=HX).content.decode()  # fmt: skip
    assert fragment.lstrip().startswith('<form id="flag-form"')
    assert not traces.get(s.call_ids[0]).flagged


def test_a_bad_flag_post_is_a_422_with_the_form_again(
    logged_in: Client, traced: Any, traces: Any
) -> None:
    s = traced("run", conversation(1))
    url = f"/traces/{s.call_ids[0]}/flag"
    long = logged_in.post(url, {"note": "x" * 2001, "action": "flag"}, headers=HX)
    assert long.status_code == 422 and b"keep it under 2000" in long.content
    odd = logged_in.post(url, {"action": "explode"})
    assert odd.status_code == 422 and b"Unknown action" in odd.content
    assert not traces.get(s.call_ids[0]).flagged
    assert logged_in.get(url).status_code == 405


@pytest.mark.parametrize("depth", [100_000, 950])
def test_deeply_nested_request_shows_as_text_on_the_json_and_chat_pages(
    logged_in: Client, traced: Any, traces: Any, depth: int
) -> None:
    s = traced("run", conversation(1))
    stored = traces.stored_trace(s.call_ids[0])
    nested = b"[" * depth + b"]" * depth
    request = b'{"messages":[{"role":"user","content":' + nested + b"}]}"
    record = Record.from_json(
        stored.record.to_json() | {"call_id": new_call_id(), "turn": 2, "request_size": len(request),
                                   "prompt_hash": hashlib.sha256(request).hexdigest()}
    )  # fmt: skip
    traces.record_many([StoredTrace(record, request)])
    for page in ("json", "messages"):
        response = logged_in.get(f"/traces/{record.call_id}/{page}/", headers=HX)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert "nested too deeply" in html and "[[[[" in html, page
    assert logged_in.get(f"/traces/{record.call_id}/").status_code == 200
    assert logged_in.get(f"/compare/{s.call_ids[0]}/{record.call_id}/").status_code == 200


def test_messages_full_page_shows_chat_not_reprs_in_the_flash_area(
    logged_in: Client, traced: Any
) -> None:
    s = traced("run", conversation(3))
    page = logged_in.get(f"/traces/{s.call_ids[2]}/messages/").content.decode()
    assert "ChatMessage(" not in page
    assert '<p class="flash' not in page  # nothing was flashed
    assert page.count('class="message role-user"') == 3


def test_no_view_context_shadows_a_context_processor_name(rf: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from llm386web.views.common import render_page

    with pytest.raises(ImproperlyConfigured, match="messages"):
        render_page(rf.get("/"), "turns/messages.html", "messages-list", {"messages": ()})


def _replay_without_key(traces: Any, call_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from runtime.providers import AnthropicAdapter
    from runtime.replay.resend import replay

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    return replay(traces, call_id, AnthropicAdapter(base_url="http://127.0.0.1:9")).record


def test_turn_row_shows_the_error_of_a_failed_replay(
    logged_in: Client, traced: Any, traces: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.providers import OfflineModel
    from runtime.replay.resend import replay

    s = traced("run", conversation(2))
    replay(traces, s.call_ids[0], OfflineModel())
    _replay_without_key(traces, s.call_ids[0], monkeypatch)
    html = logged_in.get("/sessions/run/").content.decode()
    assert "1 error" in html  # the session's badge
    first, second = (html[html.index(f'<tr id="turn-{n}"') :].split("</tr>")[0] for n in (1, 2))
    assert "2 replays" in first and "replay failed" in first and 'class="errored' not in second
    assert "replay failed" not in second


def test_replay_history_says_not_sent_with_the_reason_never_identical(
    logged_in: Client, traced: Any, traces: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.providers import OfflineModel
    from runtime.replay.resend import replay

    s = traced("run", conversation(1))
    replay(traces, s.call_ids[0], OfflineModel())
    failed = _replay_without_key(traces, s.call_ids[0], monkeypatch)
    html = logged_in.get(f"/traces/{s.call_ids[0]}/").content.decode()
    rows = html[html.index('class="data replays"') :].split("</table>")[0].split("<tr")[2:]
    sent, unsent = rows
    assert 'data-replay-bytes="identical"' in sent
    assert failed.call_id[:12] in unsent
    assert 'data-replay-bytes="not-sent"' in unsent and "identical" not in unsent
    assert "failed before sending: no API key: set ANTHROPIC_API_KEY" in unsent
    assert failed.error.message.startswith("no API key")
