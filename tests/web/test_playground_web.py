"""The playground and variance runs from the browser's point of view (Django's test client over
the real views; the model calls go over real HTTP to the loopback fakes)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from django.test import Client

from llm386web.models import Action
from runtime.blocks import canonical_json
from runtime.replay.experimentlog import ExperimentLog
from runtime.tracing.records import TraceRecord
from tests.fakes.anthropic_server import AnthropicServer, text_reply, tool_use_reply

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def _textarea(html: str) -> str:
    """Return the playground editor's text as a browser would submit it (entities decoded)."""
    import html as html_module

    found = re.search(r'<textarea id="playground-request"[^>]*>(.*?)</textarea>', html, re.S)
    assert found is not None
    return html_module.unescape(found.group(1))


def test_the_playground_round_trips_to_the_recorded_bytes_through_the_web_view(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer
) -> None:
    page = logged_in.get(f"/traces/{tool_turn.call_id}/playground/").content.decode()
    shown = _textarea(page)
    for kept in ('"tool_use_id"', '"cache_control"', '"input_schema"', '"tool_use"'):
        assert kept in shown
    recorded = traces.request_bytes(tool_turn.prompt_hash)
    anthropic_api.enqueue(text_reply("again 42"))
    response = logged_in.post(f"/traces/{tool_turn.call_id}/playground/send", {"request": shown})
    [row] = ExperimentLog(traces).children(tool_turn.call_id)
    assert response.status_code == 302 and response["Location"] == f"/experiments/{row.child}/"
    assert anthropic_api.requests[-1].body == recorded  # sent unchanged: the original bytes
    assert traces.get(row.child).prompt_hash == tool_turn.prompt_hash and row.kind == "request"
    detail = logged_in.get(response["Location"]).content.decode()
    assert 'data-byte-diff="identical"' in detail


def test_an_edit_in_the_playground_is_sent_as_a_child(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer
) -> None:
    data = json.loads(traces.request_bytes(tool_turn.prompt_hash))
    data["messages"][0]["content"][0]["text"] = "What is 6 * 9?"
    anthropic_api.enqueue(text_reply("54"))
    response = logged_in.post(f"/traces/{tool_turn.call_id}/playground/send",
                              {"request": json.dumps(data, indent=2)})  # fmt: skip
    assert response.status_code == 302
    assert anthropic_api.requests[-1].body == canonical_json(data)
    detail = logged_in.get(response["Location"]).content.decode()
    assert 'data-byte-diff="isolated"' in detail and "messages[0].content[0] cut out" in detail
    assert '<mark class="added" data-region="child">9' in detail
    [row] = ExperimentLog(traces).children(tool_turn.call_id)
    assert row.isolated is True  # proved when sent, too


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"model": "x", "messages": [', "is not a JSON object"),
        ("[1, 2]", "is not a JSON object"),
        ('{"model": "claude-sonnet-4-6"}', "must be a non-empty list"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "has no &quot;model&quot;"),
    ],
)
def test_invalid_json_or_an_invalid_request_is_refused_and_the_edit_kept(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer,
    text: str, message: str,
) -> None:  # fmt: skip
    sent = anthropic_api.request_count
    response = logged_in.post(f"/traces/{tool_turn.call_id}/playground/send", {"request": text})
    html = response.content.decode()
    assert response.status_code == 422 and message in html
    assert _textarea(html) == text and "Nothing was sent or recorded" in html
    assert anthropic_api.request_count == sent
    assert not ExperimentLog(traces).children(tool_turn.call_id)


def test_a_playground_edit_that_breaks_a_tool_pair_is_refused(
    logged_in: Client, tool_turn: TraceRecord, traces: Any
) -> None:
    data = json.loads(traces.request_bytes(tool_turn.prompt_hash))
    del data["messages"][2]  # the tool_result's message
    response = logged_in.post(f"/traces/{tool_turn.call_id}/playground/send",
                              {"request": json.dumps(data)}, headers=HX)  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 422 and "without its pair" in html
    assert html.lstrip().startswith('<section id="playground-form"')
    assert not ExperimentLog(traces).children(tool_turn.call_id)


def test_hostile_request_text_is_escaped_in_the_editor(
    logged_in: Client, tool_turn: TraceRecord
) -> None:
    hostile = "</textarea><script>alert(1)</script>"
    html = logged_in.post(f"/traces/{tool_turn.call_id}/playground/send",
                          {"request": hostile}).content.decode()  # fmt: skip
    assert "<script>alert(1)</script>" not in html and "&lt;/textarea&gt;" in html


# -- variance ------------------------------------------------------------------------------


def test_variance_shows_the_estimate_first_and_sends_nothing_until_confirmed(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer
) -> None:
    sent = anthropic_api.request_count
    response = logged_in.post(f"/traces/{tool_turn.call_id}/samples", {"samples": "5"},
                              headers=HX)  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 200 and html.lstrip().startswith('<section id="samples"')
    assert "Estimated: 5 sends of 120 input tokens each (answers of about" in html
    assert "to the Anthropic API" in html and "(input and output, list price)" in html
    assert 'name="confirm" value="yes"' in html and "Send 5 samples" in html
    assert anthropic_api.request_count == sent
    assert not ExperimentLog(traces).children(tool_turn.call_id)


def _poll(client: Client, job_id: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        html = client.get(f"/samples/{job_id}/", headers=HX).content.decode()
        if "samples-waiting" not in html:
            return html
        time.sleep(0.2)
    raise AssertionError("the variance run did not finish in 60 s")


def test_a_confirmed_variance_run_polls_then_shows_the_groups_and_the_verdict(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, anthropic_api: AnthropicServer
) -> None:
    traces.flag(tool_turn.call_id, "wrong")
    anthropic_api.vary(
        tool_use_reply("toolu_a", "calculator", {"expression": "6*7"}, text="Checking."),
        text_reply("The answer is 42."),
        text_reply("The answer is 42!"),
        text_reply("I cannot say."),
        text_reply("The answer is 42."),
    )
    response = logged_in.post(f"/traces/{tool_turn.call_id}/samples",
                              {"samples": "5", "confirm": "yes"}, headers=HX)  # fmt: skip
    html = response.content.decode()
    job = re.search(r'data-job="([^"]+)"', html)
    assert response.status_code == 200 and job is not None and "answered" in html
    assert f'hx-get="/samples/{job.group(1)}/" hx-trigger="every 1s"' in html
    result = _poll(logged_in, job.group(1))
    assert 'data-verdict="flaky"' in result and "no sample of 5 did what the turn did" in result
    sizes = [int(s) for s in re.findall(r'class="cluster[^"]*" data-size="(\d+)"', result)]
    assert sizes == [3, 1, 1]  # 42. and 42! grouped by text, then the tool call, then the refusal
    assert ExperimentLog(traces).count() == 5
    assert 'id="experiments" class="experiments" hx-swap-oob="true"' in result
    assert result.count('class="experiment-row') == 5  # the tree, swapped out of band
    action = Action.objects.get(kind=Action.SAMPLES)
    assert action.outcome.startswith("flaky") and action.username == "tester"
    audit = logged_in.get("/audit/").content.decode()
    assert '<tr data-action="samples">' in audit and "variance samples" in audit


def test_variance_without_javascript_waits_for_the_run_and_shows_the_page(
    logged_in: Client, tool_turn: TraceRecord, anthropic_api: AnthropicServer
) -> None:
    anthropic_api.vary(text_reply("6 * 7 is 42."))
    html = logged_in.post(f"/traces/{tool_turn.call_id}/samples",
                          {"samples": "3", "confirm": "yes"}).content.decode()  # fmt: skip
    assert "<html" in html and 'data-verdict="reproduces"' in html and "3 of 3 samples" in html


@pytest.mark.parametrize("n", ["0", "51", "five", "-1", ""])
def test_a_bad_number_of_samples_is_refused(
    logged_in: Client, tool_turn: TraceRecord, traces: Any, n: str
) -> None:
    response = logged_in.post(f"/traces/{tool_turn.call_id}/samples",
                              {"samples": n, "confirm": "yes"}, headers=HX)  # fmt: skip
    html = response.content.decode()
    assert response.status_code == 422 and "1 to 50" in html
    assert not ExperimentLog(traces).children(tool_turn.call_id)


def test_variance_without_a_key_uses_the_offline_model_and_says_so(
    logged_in: Client, tool_turn: TraceRecord, monkeypatch: Any
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    html = logged_in.post(f"/traces/{tool_turn.call_id}/samples", {"samples": "2"},
                          headers=HX).content.decode()  # fmt: skip
    assert "No Anthropic API key is set on the server" in html and "offline" in html
    assert "Estimated: 2 sends" in html
