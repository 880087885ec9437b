"""Experiments from the browser: change one thing on the turn page, see the child in the tree and
beside the original with the byte diff of the requests; refusals record nothing; no key; OpenAI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from llm386web.models import Action
from runtime.replay.experimentlog import ExperimentLog
from runtime.tracing.records import TraceRecord
from tests.fakes.anthropic_server import AnthropicServer, text_reply
from tests.fakes.openai_server import OpenAIServer, chat_reply

from .conftest import ANTHROPIC_KEY as KEY
from .conftest import HOSTILE_BODIES, OPENAI_KEY
from .tracefactory import conversation

pytestmark = pytest.mark.django_db

TOOL_RESULT = "messages[2].content[0]"


def _children(traces: Any, call_id: str) -> list[Any]:
    return ExperimentLog(traces).children(call_id)


def test_the_turn_page_offers_the_forms_and_an_empty_tree(
    logged_in: Client, tool_turn: TraceRecord
) -> None:
    page = logged_in.get(f"/traces/{tool_turn.call_id}/").content.decode()
    assert '<section id="experiments"' in page and "No experiment has been run" in page
    for kind in ("edit", "drop", "insert", "set", "model", "provider", "budget", "weight"):
        assert f'data-kind="{kind}"' in page
    assert f'href="/traces/{tool_turn.call_id}/playground/"' in page


def test_an_edit_sends_only_the_changed_bytes_and_shows_the_child_beside_the_original(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer
) -> None:
    anthropic_api.enqueue(text_reply("6 * 8 is 48.", usage=(100, 7, 0, 0)))
    response = logged_in.post(f"/traces/{tool_turn.call_id}/experiment",
                              {"kind": "edit", "target": "messages[0].content[0]",
                               "value": "What is 6 * 8?"})  # fmt: skip
    [row] = _children(traces, tool_turn.call_id)
    assert response.status_code == 302 and response["Location"] == f"/experiments/{row.child}/"
    before = traces.request_bytes(tool_turn.prompt_hash)
    sent = anthropic_api.requests[-1].body
    assert sent == before.replace(b"What is 6 * 7?", b"What is 6 * 8?")
    assert (row.who, row.description, row.isolated) == ("tester", "edit messages[0].content[0]",
                                                        True)  # fmt: skip
    page = logged_in.get(response["Location"]).content.decode()
    assert 'data-byte-diff="isolated"' in page and "only the change differs" in page
    assert '<mark class="removed" data-region="original">7</mark>' in page
    assert '<mark class="added" data-region="child">8</mark>' in page
    assert '<td class="code op-added">6 * <mark>8</mark> is 4<mark>8</mark>.</td>' in page
    assert (
        '<th scope="row">Input tokens</th><td class="num">120</td><td class="num">100</td><td class="num">-20</td>'
        in page
    )
    assert "Output tokens" in page and "Experiment recorded: edit messages[0].content[0]" in page
    tree = logged_in.get(f"/traces/{tool_turn.call_id}/").content.decode()
    assert f'data-child="{row.child}"' in tree and f'href="/experiments/{row.child}/"' in tree
    assert f'href="/traces/{row.child}/"' in tree and '<td class="who">tester</td>' in tree
    child_page = logged_in.get(f"/traces/{row.child}/").content.decode()
    assert f'data-made-by="{tool_turn.call_id}"' in child_page  # replayable, changeable again
    action = Action.objects.get(kind=Action.EXPERIMENT)
    assert (action.call_id, action.result_call_id, action.username) == (
        tool_turn.call_id, row.child, "tester")  # fmt: skip
    assert KEY not in page + tree


def test_an_experiment_on_an_experiment_is_a_grandchild_in_the_tree(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer
) -> None:
    anthropic_api.enqueue(text_reply("one"), text_reply("two"))
    logged_in.post(f"/traces/{tool_turn.call_id}/experiment",
                   {"kind": "set", "target": "temperature", "value": "0"})  # fmt: skip
    [child] = _children(traces, tool_turn.call_id)
    logged_in.post(f"/traces/{child.child}/experiment",
                   {"kind": "set", "target": "max_tokens", "value": "64"})  # fmt: skip
    [grandchild] = _children(traces, child.child)
    page = logged_in.get(f"/traces/{tool_turn.call_id}/").content.decode()
    assert f'data-child="{child.child}" data-kind="param" data-depth="1"' in page
    assert f'data-child="{grandchild.child}" data-kind="param" data-depth="2"' in page
    assert json.loads(anthropic_api.requests[-1].body)["temperature"] == 0


def test_dropping_a_tool_result_alone_is_refused_with_the_runtimes_message(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer
) -> None:
    sent = anthropic_api.request_count
    response = logged_in.post(f"/traces/{tool_turn.call_id}/experiment",
                              {"kind": "drop", "target": TOOL_RESULT})  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 422
    assert "Drop the tool_use toolu_1 instead" in html and "Nothing was sent or recorded" in html
    assert f'name="target" value="{TOOL_RESULT}"' in html  # the form keeps what was asked
    assert anthropic_api.request_count == sent and not _children(traces, tool_turn.call_id)
    assert not Action.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "rename", "target": "x", "value": "y"}, "Choose what to change"),
        ({"kind": "edit", "target": "", "value": "y"}, "Name a unit"),
        ({"kind": "set", "target": "temperature", "value": " "}, "Give the new value"),
        (
            {"kind": "edit", "target": "messages[99]", "value": "y"},
            "the request has no messages[99]",
        ),
        ({"kind": "set", "target": "messages", "value": "1"}, "is not a sampling parameter"),
        ({"kind": "provider", "value": "nowhere"}, "Choose a provider that takes"),
    ],
)
def test_bad_changes_are_refused_with_a_clear_message_under_htmx_too(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, data: dict, message: str
) -> None:
    response = logged_in.post(f"/traces/{tool_turn.call_id}/experiment", data,
                              headers={"HX-Request": "true"})  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 422 and message in html
    assert html.lstrip().startswith('<section id="experiments"')
    assert not _children(traces, tool_turn.call_id)


def test_unknown_ids_are_404(logged_in: Client, tool_turn: TraceRecord) -> None:
    assert logged_in.get("/experiments/0000000000000000000000000/").status_code == 404
    # a trace that is not an experiment has no experiment page
    assert logged_in.get(f"/experiments/{tool_turn.call_id}/").status_code == 404
    assert logged_in.get("/traces/0000000000000000000000000/playground/").status_code == 404
    assert logged_in.get("/samples/no-such-run/").status_code == 404
    response = logged_in.post("/traces/0000000000000000000000000/experiment", {"kind": "drop"})
    assert response.status_code == 404


def test_a_refused_edit_keeps_its_text_escaped_in_the_form(
    logged_in: Client, tool_turn: TraceRecord
) -> None:
    response = logged_in.post(f"/traces/{tool_turn.call_id}/experiment",
                              {"kind": "edit", "target": "messages[99]",
                               "value": HOSTILE_BODIES[0]})  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 422 and HOSTILE_BODIES[0] not in html
    assert "required>&lt;script&gt;alert(1)&lt;/script&gt;</textarea>" in html


def test_hostile_text_in_an_edit_and_its_answer_is_escaped(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer
) -> None:
    anthropic_api.enqueue(text_reply(HOSTILE_BODIES[1]))
    logged_in.post(f"/traces/{tool_turn.call_id}/experiment",
                   {"kind": "edit", "target": "messages[0].content[0]",
                    "value": HOSTILE_BODIES[0]})  # fmt: skip
    [row] = _children(traces, tool_turn.call_id)
    for url in (f"/experiments/{row.child}/", "/experiments/?q=edit"):
        page = logged_in.get(url).content.decode()
        for body in HOSTILE_BODIES[:2]:
            assert body not in page
    assert (
        "&lt;img src=x onerror=alert(1)&gt;"
        in logged_in.get(f"/experiments/{row.child}/").content.decode()
    )


def test_experiments_are_listed_and_searchable_across_sessions_with_the_one_pager(
    logged_in: Client,
    tool_turn: TraceRecord,
    traces: Any,
    traced: Any,
    anthropic_api: AnthropicServer,
) -> None:
    other = traced("second", conversation(1))
    anthropic_api.enqueue(text_reply("a"), text_reply("b"))
    logged_in.post(f"/traces/{tool_turn.call_id}/experiment",
                   {"kind": "set", "target": "temperature", "value": "0"})  # fmt: skip
    logged_in.post(f"/traces/{other.call_ids[0]}/experiment",
                   {"kind": "model", "value": "claude-haiku-4-5"})  # fmt: skip
    page = logged_in.get("/experiments/").content.decode()
    assert page.count('class="experiment-row') == 2
    found = logged_in.get("/experiments/?q=haiku").content.decode()
    assert found.count('class="experiment-row') == 1 and "model -&gt; claude-haiku-4-5" in found
    assert logged_in.get("/experiments/?q=tester+temperature").content.decode().count(
        'class="experiment-row') == 1  # fmt: skip
    assert (
        "No experiment matches nobody" in logged_in.get("/experiments/?q=nobody").content.decode()
    )
    paged = logged_in.get("/experiments/?limit=1").content.decode()
    assert 'class="pager"' in paged and "experiments 1–1 of 2" in paged
    fragment = logged_in.get("/experiments/?limit=1&offset=1", headers={"HX-Request": "true"})
    assert fragment.content.decode().lstrip().startswith('<section id="experiment-list"')


def test_without_a_key_the_offline_model_answers_and_the_page_says_so(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    response = logged_in.post(f"/traces/{tool_turn.call_id}/experiment",
                              {"kind": "set", "target": "temperature", "value": "0"}, follow=True)  # fmt: skip
    html = response.content.decode()
    assert "No Anthropic API key is set on the server (ANTHROPIC_API_KEY)" in html
    assert "sent to the offline model instead" in html
    [row] = _children(traces, tool_turn.call_id)
    assert row.provider == "offline" and traces.get(row.child).error is None


def test_a_counterfactual_on_an_openai_turn_goes_to_the_openai_api(
    logged_in: Client, imported_demo: list[TraceRecord], traces: Any, openai_api: OpenAIServer
) -> None:
    rec = imported_demo[2]
    openai_api.enqueue(chat_reply("At temperature 0 I can help."))
    response = logged_in.post(f"/traces/{rec.call_id}/experiment",
                              {"kind": "set", "target": "temperature", "value": "0"})  # fmt: skip
    [row] = _children(traces, rec.call_id)
    assert response.status_code == 302 and row.provider == "openai" and row.isolated
    sent = json.loads(openai_api.requests[-1].body)
    original = json.loads(traces.request_bytes(rec.prompt_hash))
    assert sent == {**original, "temperature": 0}
    page = logged_in.get(f"/experiments/{row.child}/").content.decode()
    assert "At temperature 0 I can help." in page and 'data-byte-diff="isolated"' in page
    assert OPENAI_KEY not in page


def test_an_openai_turn_without_a_key_is_refused_and_nothing_is_recorded(
    logged_in: Client, imported_demo: list[TraceRecord], traces: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rec = imported_demo[2]
    response = logged_in.post(f"/traces/{rec.call_id}/experiment",
                              {"kind": "set", "target": "temperature", "value": "0"})  # fmt: skip
    assert response.status_code == 422
    assert "No OpenAI API key is set on the server" in response.content.decode()
    assert not _children(traces, rec.call_id)


@pytest.fixture
def paged_turn(store: Any, traces: Any) -> TraceRecord:
    """The last of five offline turns paged for a 900-token budget (blocks were left out)."""
    from runtime.agent.core import Agent
    from runtime.providers import OfflineModel
    from tests.runtime.pager_support import profile

    agent = Agent(store, traces, OfflineModel(), session="paged", profile=profile(900))
    for question in ("What is 6 * 7?", "Tell me about user u-1001", "What is 2 + 2?",
                     "hello there", "What is 9 * 9?"):  # fmt: skip
        reply = agent.say(question)
    return traces.get(reply.call_ids[-1])


def test_a_retriever_weight_re_pages_from_the_form_and_a_bad_section_is_refused(
    logged_in: Client, paged_turn: TraceRecord, traces: Any
) -> None:
    url = f"/traces/{paged_turn.call_id}/experiment"
    refused = logged_in.post(url, {"kind": "budget", "target": "nope", "value": "0.1"})
    assert refused.status_code == 422 and "takes state, plan, recent" in refused.content.decode()
    response = logged_in.post(url, {"kind": "weight", "target": "recency", "value": "0"})
    [row] = _children(traces, paged_turn.call_id)
    assert response.status_code == 302 and row.kind == "weight" and row.isolated is None
    child = traces.get(row.child)
    assert child.plan["settings"]["retrievers"][0]["weight"] == 0.0
    page = logged_in.get(f"/experiments/{row.child}/").content.decode()
    assert 'data-byte-diff="measured"' in page and "weight recency=0" in page


def test_the_search_box_points_to_the_experiments(logged_in: Client) -> None:
    page = logged_in.get("/search/?q=temperature").content.decode()
    assert 'href="/experiments/?q=temperature"' in page


def test_dropping_a_tool_call_takes_its_result_and_a_provider_swap_sends_the_same_bytes(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer
) -> None:
    anthropic_api.enqueue(text_reply("no tool this time"))
    url = f"/traces/{tool_turn.call_id}/experiment"
    dropped = logged_in.post(url, {"kind": "drop", "target": "messages[1].content[1]"})
    swapped = logged_in.post(url, {"kind": "provider", "value": "offline"})
    rows = {r.kind: r for r in _children(traces, tool_turn.call_id)}
    assert dropped.status_code == swapped.status_code == 302 and set(rows) == {"drop", "provider"}
    sent = json.loads(anthropic_api.requests[-1].body)
    assert "tool_result" not in json.dumps(sent["messages"])
    page = logged_in.get(f"/experiments/{rows['drop'].child}/").content.decode()
    assert "also dropped messages[2], the result of tool_use toolu_1" in page
    assert 'data-byte-diff="isolated"' in page
    offline = traces.get(rows["provider"].child)
    assert offline.provider.value == "offline" and offline.prompt_hash == tool_turn.prompt_hash
    page = logged_in.get(f"/experiments/{offline.call_id}/").content.decode()
    assert 'data-byte-diff="identical"' in page
