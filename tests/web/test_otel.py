"""The OTLP receiver on the web app, the ingest tokens page, and from-spans turn pages."""

from __future__ import annotations

import gzip
import re

import pytest
from django.urls import reverse
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from llm386web import store_access
from llm386web.store_access import get_traces
from runtime.otel import tokens
from runtime.otel.wire import Status
from tests.fakes import otlp

PB = "application/x-protobuf"


def _send(client, body, token, **extra):
    return client.post("/v1/traces", data=body, content_type=PB,
                       headers={"Authorization": f"Bearer {token}", **extra})  # fmt: skip


def test_the_receiver_takes_a_bearer_token_not_a_login_or_csrf_token(client, store):
    token = tokens.create_token(store.kv, "ci")
    client.handler.enforce_csrf_checks = True
    body = gzip.compress(otlp.body(otlp.request(*otlp.agent_tree())))
    response = _send(client, body, token, **{"Content-Encoding": "gzip"})
    assert response.status_code == 200 and response["Content-Type"] == PB
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    assert [s.session for s in store.sessions()] == ["conv-1"]


def test_the_receiver_refuses_a_missing_or_revoked_token_with_401(client, store):
    token = tokens.create_token(store.kv, "ci")
    body = otlp.body(otlp.request(*otlp.agent_tree()))
    assert client.post("/v1/traces", data=body, content_type=PB).status_code == 401
    tokens.revoke_token(store.kv, "ci")
    response = _send(client, body, token)
    assert (
        response.status_code == 401
        and "ingest token" in Status.FromString(response.content).message
    )
    assert store.sessions() == []


def test_the_receiver_limit_is_a_setting(client, store, settings):
    settings.LLM386 = {**settings.LLM386, "OTLP_MAX_BODY_BYTES": 50}
    token = tokens.create_token(store.kv, "ci")
    response = _send(client, otlp.body(otlp.request(*otlp.agent_tree())), token)
    assert response.status_code == 413 and b"over the limit of 50" in response.content


def test_the_receiver_answers_a_store_that_cannot_be_opened_with_a_503_status(
    client, settings, tmp_path
):
    not_a_store = tmp_path / "file"
    not_a_store.write_text("not a store")
    settings.LLM386 = {**settings.LLM386, "STORE_PATH": str(not_a_store)}
    store_access.reset_stores()
    body = otlp.body(otlp.request(*otlp.agent_tree()), "json")
    response = client.post("/v1/traces", data=body, content_type="application/json",
                           headers={"Authorization": "Bearer llm386_any"})  # fmt: skip
    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    status = json_format.Parse(response.content, Status())
    assert status.code == 14 and "StoreNotAStore" in status.message
    assert "nothing of this request was stored" in status.message
    assert str(not_a_store) not in status.message  # the token was not checked: no details


@pytest.mark.parametrize("workers", ["two", -1, 1.5, True, 10**30, 10**400])
def test_a_wrong_workers_setting_is_a_status_saying_what_to_fix_not_an_error_page(
    client, store, settings, workers
):
    settings.LLM386 = {**settings.LLM386, "OTLP_WORKERS": workers}
    token = tokens.create_token(store.kv, "ci")
    response = _send(client, otlp.body(otlp.request(*otlp.agent_tree())), token)
    assert response.status_code == 500 and response["Content-Type"] == PB
    message = Status.FromString(response.content).message
    assert "LLM386['OTLP_WORKERS'] must be" in message and "nothing was stored" in message
    assert store.sessions() == []


def test_the_tokens_page_shows_a_new_token_once_then_only_its_name(logged_in, store):
    page = logged_in.get(reverse("otel-tokens"))
    assert page.status_code == 200 and b"No ingest tokens yet" in page.content
    made = logged_in.post(reverse("otel-token-create"), {"name": "laptop"})
    assert made.status_code == 200 and "no-store" in made["Cache-Control"]
    token = re.search(r'<code class="token">(llm386_[A-Za-z0-9_-]+)</code>', made.content.decode())[
        1
    ]
    assert tokens.check_token(store.kv, token) == "laptop"
    again = logged_in.get(reverse("otel-tokens"))
    assert b"laptop" in again.content and token.encode() not in again.content
    bad = logged_in.post(reverse("otel-token-create"), {"name": "no spaces"})
    assert bad.status_code == 422 and b"is not a token name" in bad.content
    gone = logged_in.post(reverse("otel-token-revoke", args=["laptop"]), follow=True)
    assert b"Revoked ingest token laptop" in gone.content
    assert tokens.list_tokens(store.kv) == []


def test_the_tokens_page_needs_a_login(client, store):
    response = client.get(reverse("otel-tokens"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_turn_from_spans_shows_its_badge_its_replay_text_and_its_span_tree(logged_in, store):
    token = tokens.create_token(store.kv, "ci")
    _send(logged_in, otlp.body(otlp.request(*otlp.agent_tree())), token)
    first = get_traces().get(get_traces().turns("conv-1")[0][1])
    page = logged_in.get(reverse("turn", args=[first.call_id])).content.decode()
    assert 'data-fidelity="from-spans"' in page and "from spans: rebuilt" in page
    assert "rebuilt from an OpenTelemetry span" in page and "Re-page and record" in page
    assert "Replay with" not in page
    assert "execute_tool get_weather" in page and "450.0 ms" in page
    assert 'class="span-node depth-1 current"' in page


def test_the_span_timeline_places_each_bar_by_its_start_and_end(logged_in, store):
    token = tokens.create_token(store.kv, "ci")
    _send(logged_in, otlp.body(otlp.request(*otlp.agent_tree())), token)
    first = get_traces().get(get_traces().turns("conv-1")[0][1])
    page = logged_in.get(reverse("turn", args=[first.call_id])).content.decode()
    timeline = page[
        page.index('<section id="span-timeline"') : page.index(
            "</section>", page.index('id="span-timeline"')
        )
    ]
    # The agent spans 0-2000 ms; the plot is 532 units from x=260: the chat (10-400 ms) and
    # the tool it asked for (450-900 ms) sit where their times put them.
    rows = re.findall(r'<g class="gantt-row ([^"]+)" data-span="(\w+)" data-depth="(\d)">.*?'
                      r'<rect class="gantt-bar" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', timeline, re.S)  # fmt: skip
    assert [(css, depth, float(x), float(w)) for css, _, depth, x, w in rows] == [
        ("op-invoke_agent", "0", 260.0, 532.0),
        ("op-chat current", "1", 262.66, 103.74),
        ("op-execute_tool", "1", 379.7, 119.7),
    ]
    assert "style=" not in timeline and "<script" not in timeline


def test_the_sessions_list_filters_by_source(logged_in, store, put_session):
    token = tokens.create_token(store.kv, "ci")
    _send(logged_in, otlp.body(otlp.request(*otlp.agent_tree())), token)
    put_session("captured-1", ["hello"], source="proxy")
    put_session("imported-1", ["hello"], source="tau-bench-airline")
    put_session("agent-1", ["hello"], source="sample-agent")
    listed = {}
    for source in ("otlp", "proxy", "import", "agent", ""):
        page = logged_in.get(reverse("sessions"), {"source": source}).content.decode()
        listed[source] = sorted(set(re.findall(r'href="/sessions/([\w.-]+)/"', page)))
    assert listed["otlp"] == ["conv-1"] and listed["proxy"] == ["captured-1"]
    assert listed["import"] == ["imported-1"] and listed["agent"] == ["agent-1"]
    assert len(listed[""]) == 4
    assert logged_in.get(reverse("sessions"), {"source": "mars"}).status_code == 400


def test_the_session_page_exports_to_the_configured_collector(
    logged_in, store, settings, tmp_path, otlp_receiver, monkeypatch
):
    token = tokens.create_token(store.kv, "ci")
    _send(logged_in, otlp.body(otlp.request(*otlp.agent_tree())), token)
    url = reverse("session-otlp-export", args=["conv-1"])
    assert logged_in.get(url).status_code == 405
    page = logged_in.get(reverse("session", args=["conv-1"])).content.decode()
    assert f'action="{url}"' in page
    unset = logged_in.post(url, follow=True).content.decode()
    assert "set [otel] export_url in llm386.toml" in unset
    (tmp_path / "llm386.toml").write_text(f'[otel]\nexport_url = "{otlp_receiver.url}"\n')
    settings.LLM386 = {**settings.LLM386, "CONFIG_PATH": tmp_path / "llm386.toml"}
    refused = logged_in.post(url, follow=True).content.decode()
    assert f"collector at {otlp_receiver.url}" in refused and "401" in refused
    header = otlp_receiver.headers["Authorization"].replace(" ", "%20")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"Authorization={header}")
    sent = logged_in.post(url, follow=True).content.decode()
    assert f"spans of conv-1 to {otlp_receiver.url}" in sent
    back = otlp_receiver.traces
    assert len(back.turns("conv-1")) == 2
