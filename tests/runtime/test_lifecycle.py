"""Retired models are refused before any request reaches the (loopback) API; deprecated ones warn.

An "old trace" of a model that has since been retired is made the real way: the sample agent
records a turn over HTTP while the lifecycle table is as it was before the retirement (no
entries), then the real table is back in force.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runtime.agent.core import DEFAULT_MODEL, Agent, create_demo_conversations
from runtime.blocks import canonical_json
from runtime.errors import ModelRetired
from runtime.inspect.paging import DEFAULT_PRICE
from runtime.profiles import lifecycle
from runtime.profiles.catalog import get_profile
from runtime.profiles.lifecycle import ModelStatus, check_callable, lifecycle_of
from runtime.providers import AnthropicAdapter, OfflineModel, get_model_client
from runtime.replay.repage import repage
from runtime.replay.resend import replay, replays_of
from runtime.tracing.records import TraceRecord
from tests.fakes import anthropic_server
from tests.fakes.anthropic_server import AnthropicServer, text_reply

KEY = "sk-ant-test-lifecycle-0123456789"
RETIRED, REPLACEMENT, DEPRECATED = "claude-sonnet-4-5", "claude-sonnet-4-6", "claude-opus-4-5"


pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def make_adapter(model_server: AnthropicServer) -> Iterator[Callable[..., AnthropicAdapter]]:
    made: list[AnthropicAdapter] = []

    def make(**kwargs: Any) -> AnthropicAdapter:
        made.append(AnthropicAdapter(api_key=KEY, base_url=model_server.base_url, timeout=5.0))
        return made[-1]

    yield make
    for adapter in made:
        adapter.close()


def _turn_recorded_before_retirement(
    stores, model_server, make_adapter, monkeypatch, model: str = RETIRED
) -> TraceRecord:
    store, traces = stores
    model_server.enqueue(text_reply("Hello from the past."))
    with monkeypatch.context() as past:
        past.setattr(lifecycle, "LIFECYCLES", {})
        reply = Agent(store, traces, make_adapter(), session="old", profile=model).say("hello")
    assert reply.text == "Hello from the past."
    return traces.get(reply.call_ids[-1])


@pytest.fixture
def old_turn(stores, model_server, make_adapter, monkeypatch) -> TraceRecord:
    return _turn_recorded_before_retirement(stores, model_server, make_adapter, monkeypatch)


def test_the_adapter_refuses_a_request_naming_a_retired_model_before_sending(
    model_server, make_adapter
):
    request = canonical_json(
        {"max_tokens": 16, "messages": [{"role": "user", "content": "hi"}], "model": RETIRED}
    )
    with pytest.raises(ModelRetired) as refused:
        make_adapter().send(request, expected_sha256=None)
    message = str(refused.value)
    assert f"model {RETIRED} was retired on 2026-11-30" in message
    assert f"llm386 chat --model {REPLACEMENT}" in message and "nothing was sent" in message
    assert (refused.value.model, refused.value.replacement) == (RETIRED, REPLACEMENT)
    assert model_server.request_count == 0


def test_no_client_is_made_for_a_retired_model_and_a_snapshot_of_it():
    for name in (RETIRED, f"{RETIRED}-20250929"):
        with pytest.raises(ModelRetired, match=REPLACEMENT):
            get_model_client(get_profile(name), api_key=KEY)
    assert isinstance(get_model_client(get_profile(RETIRED), offline=True), OfflineModel)


def test_the_agent_refuses_a_retired_model_before_any_request(stores, model_server, make_adapter):
    store, traces = stores
    with pytest.raises(ModelRetired, match=f"llm386 chat --model {REPLACEMENT}"):
        Agent(store, traces, make_adapter(), session="s", profile=RETIRED)
    with pytest.raises(ModelRetired):
        Agent(store, traces, OfflineModel(), session="s", profile=f"anthropic/{RETIRED}")
    assert model_server.request_count == 0 and traces.count() == 0


def test_replaying_a_retired_turn_is_refused_and_names_the_repage_for_the_replacement(
    stores, old_turn, model_server, make_adapter
):
    _, traces = stores
    sent, recorded = model_server.request_count, traces.count()
    for client in (make_adapter(), OfflineModel()):
        with pytest.raises(ModelRetired) as refused:
            replay(traces, old_turn.call_id, client)
        assert f"llm386 repage {old_turn.call_id} --model {REPLACEMENT} --record" in str(
            refused.value
        )
    assert model_server.request_count == sent and traces.count() == recorded


def test_repaging_for_a_retired_model_is_refused_but_checking_the_old_turn_still_works(
    stores, old_turn
):
    store, traces = stores
    for how in ({"profile": RETIRED}, {"record": True}):
        with pytest.raises(ModelRetired, match=f"--model {REPLACEMENT} --record"):
            repage(store, traces, old_turn.call_id, **how)
    checked = repage(store, traces, old_turn.call_id)
    assert checked.hash_matches and checked.record is None
    (warning,) = checked.warnings
    assert "only checks" in warning and f"--model {REPLACEMENT} --record" in warning
    assert traces.count() == 1


def test_a_retired_turn_repaged_for_its_replacement_replays_to_the_replacement(
    stores, old_turn, model_server, make_adapter
):
    store, traces = stores
    moved = repage(store, traces, old_turn.call_id, profile=REPLACEMENT, record=True)
    assert moved.record is not None and moved.warnings == ()
    model_server.enqueue(text_reply("Hello from now."))
    result = replay(traces, moved.record.call_id, make_adapter())
    assert result.ok and result.new_text == "Hello from now." and result.warnings == ()
    assert json.loads(model_server.requests[-1].body)["model"] == REPLACEMENT


def test_a_deprecated_model_is_called_with_a_warning(stores, model_server, make_adapter):
    store, traces = stores
    agent = Agent(store, traces, make_adapter(), session="dep", profile=DEPRECATED)
    (warning,) = agent.warnings
    assert f"{DEPRECATED} is deprecated (end of life 2027-01-22)" in warning
    model_server.enqueue(text_reply("Still here."), text_reply("Still here, replayed."))
    reply = agent.say("hello")
    assert reply.text == "Still here."
    result = replay(traces, reply.call_ids[-1], make_adapter())
    assert result.ok and result.warnings == (warning,)
    assert result.to_json()["warnings"] == [warning]
    assert model_server.request_count == 2


@pytest.fixture
def cli(stores, run, monkeypatch, model_server):
    """Run the CLI on the ``stores`` store (both live at tmp_path/store), sending to the fake."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model_server.base_url)
    return run


def test_cli_replay_of_a_retired_turn_exits_2_with_one_line_and_sends_nothing(
    cli, stores, old_turn, model_server
):
    sent = model_server.request_count
    for extra in ((), ("--offline",)):
        code, out, err = cli("replay", old_turn.call_id, *extra)
        assert code == 2 and out == "" and len(err.splitlines()) == 1
        assert err.startswith("llm386: error: cannot replay trace")
        assert f"llm386 repage {old_turn.call_id} --model {REPLACEMENT} --record" in err
    code, _, err = cli("repage", old_turn.call_id, "--record")
    assert code == 2 and f"--model {REPLACEMENT}" in err
    assert model_server.request_count == sent
    assert replays_of(stores[1], old_turn.call_id) == []


def test_cli_chat_refuses_a_retired_model_and_warns_for_a_deprecated_one(
    cli, model_server, monkeypatch
):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    code, _, err = cli("chat", "--model", RETIRED)
    assert (
        code == 2
        and f"llm386 chat --model {REPLACEMENT}" in err
        and model_server.request_count == 0
    )
    model_server.enqueue(text_reply("Deprecated but answering."))
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    code, out, err = cli("chat", "--model", DEPRECATED)
    assert code == 0 and "assistant: Deprecated but answering." in out
    assert err.startswith(f"llm386: warning: model {DEPRECATED} is deprecated")


def test_cli_replay_and_repage_of_a_deprecated_turn_warn_on_stderr(
    cli, stores, model_server, make_adapter, monkeypatch
):
    old = _turn_recorded_before_retirement(
        stores, model_server, make_adapter, monkeypatch, model=DEPRECATED
    )
    model_server.enqueue(text_reply("Again."))
    code, out, err = cli("replay", old.call_id, "--json")
    assert code == 0 and json.loads(out)["warnings"] and "is deprecated" in err
    code, out, err = cli("repage", old.call_id)
    assert code == 0 and "prompt hash: matches" in out and "is deprecated" in err


def test_defaults_and_demo_name_no_retired_model(stores):
    for name in (DEFAULT_MODEL, DEFAULT_PRICE, anthropic_server.DEFAULT_MODEL):
        assert lifecycle_of(name).status is ModelStatus.CURRENT, name
        assert check_callable(name, action="test") is None
    store, traces = stores
    create_demo_conversations(store, traces)
    models = {r.model for r in traces.list(limit=None)} | {
        str(r.profile.get("name")) for r in traces.list(limit=None)
    }
    assert models and all(lifecycle_of(m).status is ModelStatus.CURRENT for m in models)
