"""A session's export from its page: the `llm386 export` file, streamed, with no API key in it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from runtime.transfer.exchange import FORMAT, parse_export
from tests.web.tracefactory import conversation, write_session

from .conftest import HOSTILE_BODIES

pytestmark = pytest.mark.django_db

CANARY = "sk-ant-export-CANARY-7f3e9b"


@pytest.fixture
def api_key() -> str:
    return CANARY  # what make_adapter's adapters send (tests/conftest.py)


def _export(client: Client, session: str) -> tuple[Any, bytes]:
    response = client.get(f"/sessions/{session}/export.jsonl")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def test_export_streams_the_llm386_export_file_with_every_turn(
    logged_in: Client, tool_turn: Any, traces: Any, anthropic_api: Any
) -> None:
    response, body = _export(logged_in, "web-exp")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == 'attachment; filename="web-exp.llm386.jsonl"'
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["format"] == FORMAT
    assert lines[-1]["type"] == "footer"
    turns = [line for line in lines if line["type"] == "trace"]
    records = traces.list(session="web-exp", limit=None, newest_first=False)
    assert [t["record"]["call_id"] for t in turns] == [r.call_id for r in records]
    first = turns[-1]
    assert first["record"]["model"] == tool_turn.model
    assert first["record"]["provider"] == "anthropic"
    assert {"usage", "latency_ms", "turn", "plan"} <= set(first["record"])
    assert first["fidelity"] == "replay-complete"
    stored = traces.stored_trace(tool_turn.call_id)
    assert first["request"]["text"].encode() == stored.request  # the bytes as they were stored
    parsed = parse_export(body)  # the digest and every hash check, as import-session does
    assert len(parsed.traces) == len(records)
    # The key went over HTTP to the provider, and is in no byte of the export.
    assert any(r.carries_api_key(CANARY) for r in anthropic_api.requests)
    assert CANARY.encode() not in body


def test_session_page_links_to_its_export(logged_in: Client, tool_turn: Any) -> None:
    page = logged_in.get("/sessions/web-exp/").content.decode()
    assert 'href="/sessions/web-exp/export.jsonl" download' in page


def test_unknown_session_is_a_404(logged_in: Client) -> None:
    response = logged_in.get("/sessions/no-such-session/export.jsonl")
    assert response.status_code == 404
    assert b"no-such-session" in response.content


def test_hostile_content_stays_data(logged_in: Client, hostile: Any) -> None:
    response, body = _export(logged_in, "hostile-1")
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("attachment;")
    bodies = [
        line["body"] for line in map(json.loads, body.splitlines()) if line["type"] == "block"
    ]
    assert sorted(bodies) == sorted(HOSTILE_BODIES)  # kept exactly, as JSON strings


def test_a_viewer_can_export(viewer: Client, hostile: Any) -> None:
    assert _export(viewer, "hostile-1")[0].status_code == 200


def test_a_turn_without_its_request_bytes_is_named_before_the_download_starts(
    logged_in: Client, store: Any, traces: Any
) -> None:
    from runtime.storage.tracerows import REQUESTS

    session = write_session(store, traces, "lost-bytes", conversation(3))
    lost = traces.get(session.call_ids[1])
    store.kv.write(lambda t: t.delete(REQUESTS, bytes.fromhex(lost.prompt_hash)))
    response, body = _export(logged_in, "lost-bytes")
    # Not a 200 whose file stops short of its footer: an error page saying which turn and why.
    assert response.status_code == 503 and not response.streaming
    page = body.decode()
    assert "Stored data is damaged or missing" in page and "The store is unavailable" not in page
    assert "LLM386_STORE" not in page  # no advice to point the app at another store
    assert "turn 2 of session lost-bytes" in page and lost.call_id in page
    assert "no stored request bytes" in page and "llm386 verify" in page
