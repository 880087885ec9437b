"""The /v1/traces endpoint as a plain function, and ingest tokens (runtime and CLI)."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from runtime.otel import tokens
from runtime.otel.receiver import bearer_token, handle
from runtime.otel.wire import Status
from tests.fakes import otlp

PB, JS = "application/x-protobuf", "application/json"


@pytest.fixture
def token(stores):
    return tokens.create_token(stores[0].kv, "ci")


def _post(stores, body, *, token=None, content_type=PB, **headers):
    store, traces = stores
    sent = {"Content-Type": content_type, **headers}
    if token:
        sent["authorization"] = f"Bearer {token}"
    return handle("POST", "/v1/traces", sent, body, store=store, traces=traces)


def test_tokens_are_stored_hashed_listed_by_name_and_checked(stores, token):
    engine = stores[0].kv
    assert token.startswith("llm386_") and len(token) > 40
    rows = engine.read(lambda t: list(t.scan(tokens.TOKENS)))
    assert token.encode() not in rows[0][1] and b"sha256" in rows[0][1]
    assert [t.name for t in tokens.list_tokens(engine)] == ["ci"]
    assert tokens.check_token(engine, token) == "ci"
    assert (
        tokens.check_token(engine, token + "x") is None and tokens.check_token(engine, None) is None
    )
    tokens.revoke_token(engine, "ci")
    assert tokens.check_token(engine, token) is None
    with pytest.raises(tokens.TokenNotFound):
        tokens.revoke_token(engine, "ci")


def test_token_names_are_checked_and_unique(stores, token):
    with pytest.raises(tokens.InvalidInput, match="exists"):
        tokens.create_token(stores[0].kv, "ci")
    with pytest.raises(tokens.InvalidInput, match="is not a token name"):
        tokens.create_token(stores[0].kv, "bad name")


def test_without_a_valid_token_the_answer_is_401_and_nothing_is_read(stores, token):
    body = otlp.body(otlp.request(*otlp.agent_tree()))
    for sent in (None, "wrong", token[:-1]):
        status, headers, out = _post(stores, body, token=sent)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert "ingest token" in Status.FromString(out).message
    assert stores[0].sessions() == []


def test_a_valid_export_answers_200_with_an_empty_export_response(stores, token):
    status, headers, out = _post(stores, otlp.body(otlp.request(*otlp.agent_tree())), token=token)
    assert status == 200 and headers["Content-Type"] == PB
    response = ExportTraceServiceResponse.FromString(out)
    assert not response.HasField("partial_success")
    assert [s.session for s in stores[0].sessions()] == ["conv-1"]


def test_json_exports_get_json_answers_and_partial_success_names_the_refused(stores, token):
    bad = otlp.span(9, "chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"})
    body = otlp.body(otlp.request(bad, *otlp.agent_tree()), "json")
    status, headers, out = _post(stores, body, token=token, content_type=JS)
    assert status == 200 and headers["Content-Type"] == JS
    response = json_format.Parse(out, ExportTraceServiceResponse())
    assert response.partial_success.rejected_spans == 1
    assert "without messages" in response.partial_success.error_message
    assert json.loads(out)["partialSuccess"]["rejectedSpans"] == "1"


def test_every_span_refused_is_a_400_and_bad_bodies_get_status_messages(stores, token):
    bad = otlp.span(9, "chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"})
    status, _, out = _post(stores, otlp.body(otlp.request(bad)), token=token)
    assert status == 400 and "every span was refused" in Status.FromString(out).message
    status, headers, out = _post(stores, b"{", token=token, content_type=JS)
    assert status == 400 and "invalid JSON" in json.loads(out)["message"]
    status, _, _ = _post(stores, b"x", token=token, content_type="text/plain")
    assert status == 415


def test_only_post_to_the_traces_path_is_served(stores, token):
    store, traces = stores
    auth = {"Authorization": f"Bearer {token}"}
    assert handle("GET", "/v1/traces", auth, b"", store=store, traces=traces)[0] == 405
    assert handle("POST", "/v1/metrics", auth, b"", store=store, traces=traces)[0] == 404


def test_bearer_token_reads_the_header_in_any_case():
    assert bearer_token({"AUTHORIZATION": "bearer abc"}) == "abc"
    assert bearer_token({"Authorization": "Basic abc"}) is None
    assert bearer_token({}) is None


def test_cli_creates_lists_and_revokes_tokens(run):
    code, out, _ = run("token", "create", "laptop")
    assert code == 0 and "shown this once" in out
    token = out.splitlines()[1]
    code, out, _ = run("token", "list")
    assert "laptop" in out and token not in out
    code, out, _ = run("--json", "token", "list")
    assert json.loads(out)[0]["name"] == "laptop"
    assert run("token", "revoke", "laptop")[0] == 0
    code, _, err = run("token", "revoke", "laptop")
    assert code == 2 and "no ingest token is called 'laptop'" in err
    code, _, err = run("token", "create")
    assert code == 2 and "needs a NAME" in err
