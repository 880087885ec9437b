"""Replay from the turn page: exact bytes over real HTTP, the byte-identity verdict, the output
diff, history, errors in the page, no key, imported turns (refused, re-paged), CSRF."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from llm386web.views.turns import REPAGE_PROFILES
from runtime.agent.core import create_demo_conversations
from runtime.profiles.lifecycle import ModelStatus, lifecycle_of
from runtime.tracing.records import TraceRecord
from tests.fakes.anthropic_server import AnthropicServer, RawReply, error_reply, text_reply
from tests.fakes.openai_server import OpenAIServer, chat_reply

from . import tracefactory
from .conftest import ANTHROPIC_KEY as KEY
from .tracefactory import conversation

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


@pytest.fixture
def api(anthropic_api: AnthropicServer) -> AnthropicServer:
    """The app's Anthropic client on the loopback server, with KEY in the environment."""
    return anthropic_api


@pytest.fixture
def no_key(monkeypatch: Any) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def test_replay_sends_the_exact_bytes_and_says_they_match(
    logged_in: Client, traced: Any, traces: Any, api: AnthropicServer
) -> None:
    s = traced("run", conversation(2))
    api.enqueue(text_reply("a new answer"))
    response = logged_in.post(
        f"/traces/{s.call_ids[1]}/replay", {"target": "anthropic"}, headers=HX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<section id="replay"')
    stored = traces.request_bytes(traces.get(s.call_ids[1]).prompt_hash)
    assert [r.body for r in api.requests] == [stored]
    assert api.requests[0].carries_api_key(KEY)
    assert 'data-byte-identity="identical"' in html
    # the new output beside the original ("message 3: an answer"), changed words marked
    assert '<td class="code op-added"><mark>a new</mark> answer</td>' in html
    assert '<td class="code op-removed"><mark>message 3: an</mark> answer</td>' in html
    new = [r for r in traces.list(session="run", limit=None) if r.parent_call_id == s.call_ids[1]]
    assert len(new) == 1 and f'href="/traces/{new[0].call_id}/"' in html  # in the history
    assert KEY not in html


def test_replay_with_the_offline_model_needs_no_key(
    logged_in: Client, store: Any, traces: Any, no_key: None
) -> None:
    report = create_demo_conversations(store, traces)
    session = report.sessions[0]
    first = traces.list(session=session, limit=1, newest_first=False)[0]
    page = logged_in.get(f"/traces/{first.call_id}/").content.decode()
    assert "No Anthropic API key is set on the server" in page
    assert re.search(r'value="anthropic"[^>]*disabled', page)
    html = logged_in.post(f"/traces/{first.call_id}/replay", {"target": "offline"}).content.decode()
    assert 'data-byte-identity="identical"' in html
    assert "same as the original" in html and "response bytes identical" in html
    assert "<html" in html  # without htmx: the whole turn page with the outcome in it


def test_without_a_key_the_api_is_refused_with_a_422_that_says_why(
    logged_in: Client, traced: Any, traces: Any, no_key: None
) -> None:
    s = traced("run", conversation(1))
    response = logged_in.post(
        f"/traces/{s.call_ids[0]}/replay", {"target": "anthropic"}, headers=HX
    )
    assert response.status_code == 422
    assert b"No Anthropic API key is set on the server" in response.content
    assert traces.count(session="run") == 1  # nothing was recorded


def test_a_model_error_shows_in_the_page_and_is_recorded(
    logged_in: Client, traced: Any, traces: Any, api: AnthropicServer
) -> None:
    s = traced("run", conversation(1))
    api.enqueue(*[error_reply(400, "prompt is too long")] * 3)
    response = logged_in.post(
        f"/traces/{s.call_ids[0]}/replay", {"target": "anthropic"}, headers=HX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "invalid_request_error" in html and "HTTP 400" in html and "prompt is too long" in html
    assert 'data-byte-identity="identical"' in html  # the bytes went out; the API refused them
    errored = [r for r in traces.list(session="run", limit=None) if r.parent_call_id]
    assert len(errored) == 1 and errored[0].error is not None


def test_a_deeply_nested_reply_is_recorded_as_an_error_with_advice_not_a_500(
    logged_in: Client, traced: Any, traces: Any, api: AnthropicServer
) -> None:
    s = traced("run", conversation(1))
    api.enqueue(
        RawReply(200, b'{"type":"message","content":' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    )
    response = logged_in.post(
        f"/traces/{s.call_ids[0]}/replay", {"target": "anthropic"}, headers=HX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "malformed-response" in html and "nested deeper than 64 levels" in html
    errored = [r for r in traces.list(session="run", limit=None) if r.parent_call_id]
    assert len(errored) == 1 and errored[0].error.type == "malformed-response"


def test_an_imported_turn_is_refused_and_can_be_re_paged(
    logged_in: Client, imported_demo: list[TraceRecord]
) -> None:
    rec = imported_demo[2]
    page = logged_in.get(f"/traces/{rec.call_id}/").content.decode()
    assert "Re-page and record" in page and "Replay with the Anthropic API" not in page
    refused = logged_in.post(f"/traces/{rec.call_id}/replay", {"target": "offline"}, headers=HX)
    assert refused.status_code == 422
    assert b"Choose where to send the request: openai (got &#x27;offline&#x27;)" in refused.content
    moved = logged_in.post(f"/traces/{rec.call_id}/repage", {"profile": "claude-sonnet-4-6"})
    assert moved.status_code == 302
    new_page = logged_in.get(moved["Location"]).content.decode()
    assert "Re-paged for claude-sonnet-4-6" in new_page and "never sent" in new_page
    assert "Replay with the offline model" in new_page
    original = logged_in.get(f"/traces/{rec.call_id}/").content.decode()
    assert "re-page (not sent)" in original  # in the original's history


def test_an_imported_openai_turn_re_pages_for_its_own_model_and_replays_to_openai(
    logged_in: Client, imported_demo: list[TraceRecord], traces: Any, openai_api: OpenAIServer
) -> None:
    rec = imported_demo[2]
    page = logged_in.get(f"/traces/{rec.call_id}/").content.decode()
    assert f'<option value="{rec.model}" selected>' in page and rec.model.startswith("gpt-4o")
    moved = logged_in.post(f"/traces/{rec.call_id}/repage", {"profile": "gpt-4o"})
    assert moved.status_code == 302
    new = traces.get(moved["Location"].strip("/").split("/")[-1])
    stored = traces.request_bytes(new.prompt_hash)
    request = json.loads(stored)
    assert new.provider == "openai" and new.parent_call_id == rec.call_id
    assert request["model"] == "gpt-4o" and request["messages"][0]["role"] == "system"
    assert all(tool["type"] == "function" for tool in request["tools"])
    new_page = logged_in.get(moved["Location"]).content.decode()
    assert "Re-paged for gpt-4o" in new_page and 'value="openai"' in new_page
    openai_api.enqueue(chat_reply("Your flight is booked."))
    response = logged_in.post(f"/traces/{new.call_id}/replay", {"target": "openai"}, headers=HX)
    assert response.status_code == 200
    assert 'data-byte-identity="identical"' in response.content.decode()
    assert [r.body for r in openai_api.requests] == [stored]
    assert openai_api.requests[0].path == "/v1/chat/completions"


def test_a_re_page_shows_as_not_sent_and_is_not_counted_as_a_replay(
    logged_in: Client, imported_demo: list[TraceRecord]
) -> None:
    rec = imported_demo[2]
    moved = logged_in.post(f"/traces/{rec.call_id}/repage", {"profile": "claude-sonnet-4-6"})
    heading = logged_in.get(moved["Location"]).content.decode().split("</h1>")[0]
    assert "re-page (not sent)" in heading and "for claude-sonnet-4-6" in heading
    assert 'badge-ok">ok' not in heading and 'badge-info">replay' not in heading
    original = logged_in.get(f"/traces/{rec.call_id}/").content.decode()
    assert 'href="#replay">Replay</a>' in original  # no "(1)": nothing was sent again
    timeline = logged_in.get("/sessions/tau-task000-trial0/").content.decode()
    assert "1 re-page (not sent)" in timeline and "replays of this turn" not in timeline


@pytest.mark.parametrize(("path", "data"), [("replay", {"target": "elsewhere"}), ("replay", {}),
                                            ("repage", {"profile": "gpt-4o"})])  # fmt: skip
def test_bad_replay_and_repage_posts_are_422(
    logged_in: Client, traced: Any, path: str, data: dict[str, str]
) -> None:
    s = traced("run", conversation(1))
    response = logged_in.post(f"/traces/{s.call_ids[0]}/{path}", data, headers=HX)
    assert response.status_code == 422
    assert b"error-box" in response.content


def test_replay_needs_post_and_csrf(user: Any, store: Any, traced: Any, traces: Any) -> None:
    s = traced("run", conversation(1))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(f"/traces/{s.call_ids[0]}/replay").status_code == 405
    assert client.post(f"/traces/{s.call_ids[0]}/replay", {"target": "offline"}).status_code == 403
    assert traces.count(session="run") == 1


@pytest.fixture
def retired_model(monkeypatch: Any) -> str:
    """Turns written from here on were sent to claude-sonnet-4-5 (retired 2026-11-30)."""
    monkeypatch.setattr(tracefactory, "MODEL", "claude-sonnet-4-5")
    return "claude-sonnet-4-5"


def test_a_retired_turn_offers_the_repage_for_its_replacement_instead_of_replay(
    logged_in: Client, traced: Any, retired_model: str, api: AnthropicServer
) -> None:
    s = traced("old", conversation(1))
    page = logged_in.get(f"/traces/{s.call_ids[0]}/").content.decode()
    assert f"sent to <bdi>{retired_model}</bdi>, which was retired on 2026-11-30" in page
    assert '<option value="claude-sonnet-4-6" selected>' in page
    assert 'value="anthropic"' not in page  # no replay buttons


def test_replaying_a_retired_turn_is_a_422_naming_the_repage_and_nothing_is_sent(
    logged_in: Client, traced: Any, traces: Any, retired_model: str, api: AnthropicServer
) -> None:
    s = traced("old", conversation(1))
    for target in ("anthropic", "offline"):
        response = logged_in.post(f"/traces/{s.call_ids[0]}/replay", {"target": target}, headers=HX)
        html = response.content.decode()
        assert response.status_code == 422 and 'role="alert"' in html
        assert f"llm386 repage {s.call_ids[0]} --model claude-sonnet-4-6 --record" in html
    assert api.requests == [] and traces.count(session="old") == 1


def test_a_retired_turn_repaged_for_its_replacement_replays_there(
    logged_in: Client, traced: Any, traces: Any, retired_model: str, api: AnthropicServer
) -> None:
    s = traced("old", conversation(1))
    moved = logged_in.post(f"/traces/{s.call_ids[0]}/repage", {"profile": "claude-sonnet-4-6"})
    assert moved.status_code == 302
    new_id = moved.headers["Location"].strip("/").split("/")[-1]
    api.enqueue(text_reply("answered by the replacement"))
    response = logged_in.post(f"/traces/{new_id}/replay", {"target": "anthropic"}, headers=HX)
    assert response.status_code == 200
    assert [json.loads(r.body)["model"] for r in api.requests] == ["claude-sonnet-4-6"]


def test_a_deprecated_turn_replays_with_the_warning_on_the_page(
    logged_in: Client, traced: Any, monkeypatch: Any, api: AnthropicServer
) -> None:
    monkeypatch.setattr(tracefactory, "MODEL", "claude-opus-4-5")
    s = traced("dep", conversation(1))
    page = logged_in.get(f"/traces/{s.call_ids[0]}/").content.decode()
    assert "<bdi>claude-opus-4-5</bdi> is deprecated (end of life 2027-01-22)" in page
    api.enqueue(text_reply("still answering"))
    response = logged_in.post(
        f"/traces/{s.call_ids[0]}/replay", {"target": "anthropic"}, headers=HX
    )
    html = response.content.decode()
    assert response.status_code == 200 and len(api.requests) == 1
    assert 'class="flash flash-warning"' in html and "model claude-opus-4-5 is deprecated" in html


def test_the_models_offered_for_a_repage_are_current() -> None:
    assert REPAGE_PROFILES
    for name in REPAGE_PROFILES:
        assert lifecycle_of(name).status is ModelStatus.CURRENT, name


def test_a_web_replay_goes_to_the_base_url_set_in_llm386_toml(
    logged_in: Client, traced: Any, traces: Any, web_home: Path, model_server: AnthropicServer,
    monkeypatch: Any,
) -> None:  # fmt: skip
    # The same file and the same lookup as the CLI: LLM386_CONFIG names llm386.toml, whose
    # [anthropic] base_url is the loopback server; nothing in settings.LLM386 names it.
    config = web_home / "llm386.toml"
    config.write_text(f'[anthropic]\nbase_url = "{model_server.base_url}"\ntimeout_seconds = 5\n')
    monkeypatch.setenv("LLM386_CONFIG", str(config))
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    s = traced("run", conversation(2))
    model_server.enqueue(text_reply("from the configured server"))
    response = logged_in.post(
        f"/traces/{s.call_ids[1]}/replay", {"target": "anthropic"}, headers=HX
    )
    assert response.status_code == 200, response.content.decode()[:500]
    stored = traces.request_bytes(traces.get(s.call_ids[1]).prompt_hash)
    assert [r.body for r in model_server.requests] == [stored]
    assert 'data-byte-identity="identical"' in response.content.decode()


def test_a_wrong_llm386_toml_makes_a_replay_a_400_that_names_the_key(
    logged_in: Client, traced: Any, web_home: Path, monkeypatch: Any
) -> None:
    config = web_home / "llm386.toml"
    config.write_text("[anthropic]\ntimeout_seconds = -1\n")
    monkeypatch.setenv("LLM386_CONFIG", str(config))
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    s = traced("run", conversation(1))
    response = logged_in.post(f"/traces/{s.call_ids[0]}/replay", {"target": "anthropic"})
    assert response.status_code == 400 and b"anthropic.timeout_seconds" in response.content
