"""Model clients: the Anthropic adapter over real HTTP (official SDK -> loopback server) and the
offline model."""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.agent.tools import tool_schema
from runtime.blocks import canonical_json
from runtime.errors import InvalidInput, ModelCallFailed, ReplayMismatch, UnknownModel
from runtime.profiles.catalog import get_profile
from runtime.providers import (
    OFFLINE_MODEL_NAME,
    AnthropicAdapter,
    OfflineModel,
    ToolUse,
    Usage,
    api_key_available,
    get_model_client,
)
from runtime.tokenizers import get_tokenizer
from tests.fakes.anthropic_server import (
    AnthropicServer,
    DropConnection,
    RawReply,
    SlowReply,
    error_reply,
    text_reply,
    tool_use_reply,
)

KEY = "sk-ant-test-Zq9-never-print-me-4711"
MODEL = "claude-sonnet-5"

CALCULATOR = tool_schema("calculator", "Evaluate an arithmetic expression.", "expression")
LOOKUP = tool_schema("lookup_user", "Fetch a user's profile.", "user_id")


def request(messages: list[dict[str, Any]], **extra: Any) -> bytes:
    return canonical_json({"model": MODEL, "max_tokens": 256, "messages": messages, **extra})


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TOOL_ROUND_TRIP = request(
    [
        user("what is 12*7?"),
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me compute."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "calculator",
                    "input": {"expression": "12*7"},
                },
            ],
        },
        user([{"type": "tool_result", "tool_use_id": "toolu_01", "content": "84"}]),
    ],
    system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    tools=[CALCULATOR, LOOKUP],
)

REQUESTS = {
    "plain": request([user("Hello")]),
    "non-ascii": request([user('héllo ☃ 日本語 🎉 \u2028 "quoted" \\ tab\t')]),
    "tool-round-trip": TOOL_ROUND_TRIP,
    # messages.create() would emit these keys in its own order; the adapter must not.
    "keys-create-would-reorder": request(
        [user("x")], metadata={"user_id": "u-1"}, temperature=0.2, stop_sequences=["END"]
    ),
}


pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def api_key() -> str:
    return KEY


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_server_receives_exactly_the_request_bytes(name, make_adapter, model_server):
    body = REQUESTS[name]
    response = make_adapter().send(body, expected_sha256=sha(body))
    (received,) = model_server.requests
    assert received.path == "/v1/messages"
    assert received.body == body
    assert response.sent_sha256 == sha(body) == received.sha256
    assert sha(body) in response.text  # the fake's default reply echoes the hash it received


def test_every_request_carries_the_api_key_and_version_headers(make_adapter, model_server):
    make_adapter().send(REQUESTS["plain"], expected_sha256=None)
    (received,) = model_server.requests
    assert received.carries_api_key(KEY)
    assert received.header("anthropic-version")
    assert received.header("content-type") == "application/json"


def test_a_text_reply_is_parsed_with_its_usage(make_adapter, model_server):
    reply = text_reply("Hello there.", msg_id="msg_1", usage=(10, 5, 300, 20))
    model_server.enqueue(reply)
    response = make_adapter().send(REQUESTS["plain"], expected_sha256=None)
    assert response.body == reply.body
    assert response.text == "Hello there."
    assert response.id == "msg_1"
    assert response.stop_reason == "end_turn"
    assert response.tool_uses == ()
    assert response.usage == Usage(
        10, 5, cache_read_input_tokens=300, cache_creation_input_tokens=20
    )
    assert response.usage.total_input_tokens == 330
    assert [(a.number, a.status, a.error_type) for a in response.attempts] == [(1, 200, None)]


def test_a_tool_use_reply_is_parsed(make_adapter, model_server):
    model_server.enqueue(
        tool_use_reply("toolu_9", "calculator", {"expression": "12*7"}, text="Computing.")
    )
    response = make_adapter().send(REQUESTS["plain"], expected_sha256=None)
    assert response.stop_reason == "tool_use"
    assert response.text == "Computing."
    assert response.tool_uses == (ToolUse("toolu_9", "calculator", {"expression": "12*7"}),)
    assert [block.type for block in response.content] == ["text", "tool_use"]


def test_the_response_body_is_kept_byte_for_byte(make_adapter, model_server):
    body = (
        b'{ "usage": {"output_tokens": 2, "input_tokens": 3},\n "type": "message", "id": "m",'
        b' "model": "claude-sonnet-5", "stop_reason": "end_turn",'
        b' "content": [{"type": "text", "text": "caf\\u00e9"}] }'
    )
    model_server.enqueue(RawReply(200, body))
    response = make_adapter().send(REQUESTS["plain"], expected_sha256=None)
    assert response.body == body
    assert response.text == "café"
    assert response.usage == Usage(3, 2)


def test_a_refused_key_fails_at_once_saying_how_to_fix_it(make_adapter, model_server):
    model_server.enqueue(error_reply(401, "invalid x-api-key"), text_reply("never sent"))
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter().send(REQUESTS["plain"], expected_sha256=None)
    assert failure.value.status == 401
    assert failure.value.error_type == "authentication_error"
    assert "the API key was refused: set ANTHROPIC_API_KEY to a valid key" in str(failure.value)
    assert len(failure.value.attempts) == 1
    assert model_server.request_count == 1
    assert model_server.pending == 1


def test_rate_limit_then_success_records_two_attempts_and_honours_retry_after(
    make_adapter, model_server
):
    model_server.enqueue(error_reply(429, retry_after=0.02), text_reply("ok"))
    response = make_adapter().send(REQUESTS["plain"], expected_sha256=None)
    first, second = response.attempts
    assert (first.number, first.status, first.error_type) == (1, 429, "rate_limit_error")
    assert first.wait_ms == 20.0
    assert (second.number, second.status, second.error_type) == (2, 200, None)
    assert response.text == "ok"
    assert [r.body for r in model_server.requests] == [REQUESTS["plain"]] * 2


def test_retry_after_is_capped_by_max_backoff(make_adapter, model_server):
    model_server.enqueue(error_reply(429, retry_after=30), text_reply("ok"))
    response = make_adapter(max_backoff_seconds=0.05).send(REQUESTS["plain"], expected_sha256=None)
    assert response.attempts[0].wait_ms == 50.0


def test_server_errors_back_off_exponentially_then_give_up_with_every_attempt(
    make_adapter, model_server
):
    model_server.enqueue(*(error_reply(500) for _ in range(3)), text_reply("too late"))
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter(max_retries=2).send(REQUESTS["plain"], expected_sha256=None)
    attempts = failure.value.attempts
    assert [(a.number, a.status, a.error_type) for a in attempts] == [
        (1, 500, "api_error"),
        (2, 500, "api_error"),
        (3, 500, "api_error"),
    ]
    assert [a.wait_ms for a in attempts] == [1.0, 2.0, 0.0]
    assert failure.value.status == 500
    assert "after 3 attempts: try again later and replay" in str(failure.value)
    assert model_server.pending == 1


def test_rate_limited_to_the_end_says_wait_and_replay(make_adapter, model_server):
    model_server.enqueue(error_reply(429), error_reply(429))
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter(max_retries=1).send(REQUESTS["plain"], expected_sha256=None)
    assert "rate limited after 2 attempts: wait and replay" in str(failure.value)
    assert failure.value.error_type == "rate_limit_error"


def test_overloaded_is_retried_and_named(make_adapter, model_server):
    model_server.enqueue(error_reply(529), error_reply(529))
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter(max_retries=1).send(REQUESTS["plain"], expected_sha256=None)
    assert failure.value.error_type == "overloaded_error"
    assert "overloaded after 2 attempts" in str(failure.value)


def test_a_bad_request_is_not_retried(make_adapter, model_server):
    model_server.enqueue(error_reply(400, "messages: field required"), text_reply("never"))
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter().send(REQUESTS["plain"], expected_sha256=None)
    assert failure.value.error_type == "invalid_request_error"
    assert "messages: field required" in str(failure.value)
    assert "retrying will not help" in str(failure.value)
    assert model_server.request_count == 1


def test_no_answer_within_the_timeout_fails_with_advice(make_adapter, model_server):
    model_server.enqueue(SlowReply(5.0, then=text_reply("too late")))
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter(timeout=0.5, max_retries=0).send(REQUESTS["plain"], expected_sha256=None)
    assert failure.value.error_type == "timeout"
    assert "no answer within 0.5s" in str(failure.value)
    assert "raise timeout_seconds or retry" in str(failure.value)
    assert [(a.status, a.error_type) for a in failure.value.attempts] == [(None, "timeout")]
    assert model_server.request_count == 1


def test_a_timeout_is_retried(make_adapter, model_server):
    model_server.enqueue(SlowReply(5.0), text_reply("second time lucky"))
    response = make_adapter(timeout=0.5, max_retries=1).send(
        REQUESTS["plain"], expected_sha256=None
    )
    assert [a.error_type for a in response.attempts] == ["timeout", None]
    assert response.text == "second time lucky"


@pytest.mark.parametrize(
    "body",
    [b'{"type": "message", "content": [', b'{"hello": 1}', b"<html>502</html>", b"\xff\xfe"],
)
def test_a_malformed_response_fails_and_is_not_retried(body, make_adapter, model_server):
    model_server.enqueue(RawReply(200, body), text_reply("never"))
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter().send(REQUESTS["plain"], expected_sha256=None)
    assert failure.value.error_type == "malformed-response"
    assert "malformed response" in str(failure.value)
    assert len(failure.value.attempts) == 1
    assert model_server.pending == 1


def test_a_message_without_usage_is_malformed(make_adapter, model_server):
    body = b'{"type":"message","id":"m","model":"x","content":[],"stop_reason":"end_turn"}'
    model_server.enqueue(RawReply(200, body))
    with pytest.raises(ModelCallFailed, match="usage"):
        make_adapter().send(REQUESTS["plain"], expected_sha256=None)


def test_a_dropped_connection_is_retried(make_adapter, model_server):
    model_server.enqueue(DropConnection(), text_reply("back again"))
    response = make_adapter().send(REQUESTS["plain"], expected_sha256=None)
    assert [a.error_type for a in response.attempts] == ["connection", None]
    assert response.text == "back again"


def test_connection_drops_to_the_end_say_what_to_check(make_adapter, model_server):
    model_server.enqueue(DropConnection(), DropConnection())
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter(max_retries=1).send(REQUESTS["plain"], expected_sha256=None)
    assert failure.value.error_type == "connection"
    assert f"could not reach {model_server.base_url}" in str(failure.value)
    assert len(failure.value.attempts) == 2


@pytest.mark.parametrize("env_value", [None, ""])
def test_a_missing_key_fails_before_any_http(env_value, monkeypatch, model_server):
    if env_value is not None:
        monkeypatch.setenv("ANTHROPIC_API_KEY", env_value)
    adapter = AnthropicAdapter(base_url=model_server.base_url)
    with pytest.raises(ModelCallFailed) as failure:
        adapter.send(REQUESTS["plain"], expected_sha256=None)
    assert str(failure.value) == "no API key: set ANTHROPIC_API_KEY or use the offline model"
    assert failure.value.error_type == "missing-key"
    assert failure.value.attempts == ()
    assert model_server.request_count == 0
    assert not api_key_available()


def test_the_key_is_read_from_the_environment(monkeypatch, model_server):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with AnthropicAdapter(base_url=model_server.base_url) as adapter:
        adapter.send(REQUESTS["plain"], expected_sha256=None)
    assert model_server.requests[0].carries_api_key(KEY)
    assert api_key_available()


def test_anthropic_base_url_is_honoured(monkeypatch, model_server):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model_server.base_url)
    with AnthropicAdapter(api_key=KEY) as adapter:
        response = adapter.send(REQUESTS["plain"], expected_sha256=None)
        assert adapter.base_url.startswith(model_server.base_url)
    assert model_server.request_count == 1
    assert response.sent_sha256 == model_server.requests[0].sha256


def test_bytes_that_do_not_hash_to_the_recorded_hash_are_never_sent(make_adapter, model_server):
    with pytest.raises(ReplayMismatch, match="nothing was sent"):
        make_adapter().send(REQUESTS["plain"], expected_sha256=sha(b"something else"))
    assert model_server.request_count == 0


def test_bytes_changed_on_the_way_to_the_wire_are_refused_before_sending(
    make_adapter, model_server
):
    def rewrite_body(api_request, call_next):
        changed = api_request.copy()
        changed.options.content = api_request.options.content.replace(b"Hello", b"Howdy")
        return call_next(changed)

    adapter = make_adapter(middleware=[rewrite_body])
    with pytest.raises(ModelCallFailed) as failure:
        adapter.send(REQUESTS["plain"], expected_sha256=sha(REQUESTS["plain"]))
    assert failure.value.error_type == "byte-mismatch"
    assert "nothing was sent" in str(failure.value)
    assert model_server.request_count == 0


def test_request_bytes_that_are_not_a_messages_request_are_refused(make_adapter, model_server):
    with pytest.raises(InvalidInput):
        make_adapter().send(b"not json", expected_sha256=None)
    with pytest.raises(InvalidInput):
        make_adapter().send(b'{"model":"x"}', expected_sha256=None)
    assert model_server.request_count == 0


def test_the_api_key_never_appears_in_reprs_messages_tracebacks_or_logs(
    make_adapter, model_server, caplog
):
    caplog.set_level(logging.DEBUG)
    adapter = make_adapter(max_retries=1)
    response = adapter.send(REQUESTS["plain"], expected_sha256=None)
    model_server.enqueue(
        error_reply(401),
        error_reply(400, f"bad header: {KEY}"),  # a server that echoes the key back
        error_reply(429),
        error_reply(429),
        DropConnection(),
        DropConnection(),
        RawReply(200, f'{{"oops": "{KEY}"'.encode()),
    )
    failures = []
    for _ in range(5):
        with pytest.raises(ModelCallFailed) as failure:
            adapter.send(REQUESTS["plain"], expected_sha256=None)
        failures.append(failure.value)
    seen = [repr(adapter), str(adapter), repr(response), str(response.attempts), caplog.text]
    for error in failures:
        seen += [str(error), repr(error), repr(error.attempts)]
        seen += traceback.format_exception(error)
    assert [f.error_type for f in failures] == [
        "authentication_error",
        "invalid_request_error",
        "rate_limit_error",
        "connection",
        "malformed-response",
    ]
    assert "[api key]" in str(failures[1])
    assert [text for text in seen if KEY in text] == []
    assert model_server.requests[0].carries_api_key(KEY)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[AnthropicServer]:
    with AnthropicServer(max_lifetime=60) as server:
        yield server


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=200),
    number=st.integers() | st.floats(allow_nan=False, allow_infinity=False),
)
def test_any_canonical_request_arrives_byte_for_byte(shared_server, text, number):
    body = request([user(text)], metadata={"note": text, "n": number})
    with AnthropicAdapter(api_key=KEY, base_url=shared_server.base_url) as adapter:
        response = adapter.send(body, expected_sha256=sha(body))
    assert shared_server.requests[-1].body == body
    assert response.sent_sha256 == sha(body)


# -- the offline model -------------------------------------------------------------------------


def test_the_offline_model_answers_the_same_bytes_with_the_same_bytes():
    body = request([user("Tell me about paging.")])
    first = OfflineModel().send(body, expected_sha256=sha(body))
    second = OfflineModel().send(body, expected_sha256=sha(body))
    assert first.body == second.body
    assert first == second
    assert first.sent_sha256 == sha(body)


def test_the_offline_model_labels_every_reply():
    body = request([user("Tell me about paging.")])
    response = OfflineModel().send(body, expected_sha256=None)
    assert response.model == OFFLINE_MODEL_NAME
    assert response.text.startswith("[offline model]")
    assert "Tell me about paging." in response.text
    assert response.tool_uses == ()


def test_the_offline_model_calls_the_calculator_then_answers_from_its_result():
    ask = request([user("what is 12*7?")], tools=[LOOKUP, CALCULATOR])
    call = OfflineModel().send(ask, expected_sha256=None)
    (tool_use,) = call.tool_uses
    assert (tool_use.name, dict(tool_use.input)) == ("calculator", {"expression": "12*7"})
    assert call.stop_reason == "tool_use"
    follow_up = request(
        [
            user("what is 12*7?"),
            {"role": "assistant", "content": [dict(block) for block in call.data["content"]]},
            user([{"type": "tool_result", "tool_use_id": tool_use.id, "content": "84"}]),
        ],
        tools=[LOOKUP, CALCULATOR],
    )
    answer = OfflineModel().send(follow_up, expected_sha256=None)
    assert answer.text == "[offline model] 12*7 = 84."
    assert answer.stop_reason == "end_turn"


def test_the_offline_model_looks_up_a_named_user_profile():
    ask = request([user("Show me the profile of user alice.")], tools=[CALCULATOR, LOOKUP])
    (tool_use,) = OfflineModel().send(ask, expected_sha256=None).tool_uses
    assert (tool_use.name, dict(tool_use.input)) == ("lookup_user", {"user_id": "alice"})


def test_the_offline_model_does_not_call_tools_that_were_not_offered():
    response = OfflineModel().send(request([user("what is 12*7?")]), expected_sha256=None)
    assert response.tool_uses == ()
    assert "offline model" in response.text


def test_the_offline_model_counts_usage_with_cl100k():
    body = request([user("Count these tokens, please.")])
    response = OfflineModel().send(body, expected_sha256=None)
    assert response.usage.input_tokens == get_tokenizer("cl100k_base").count(body.decode())
    assert response.usage.output_tokens > 0
    assert response.usage.total_input_tokens == response.usage.input_tokens


def test_the_offline_model_refuses_bytes_that_do_not_match_the_recorded_hash():
    with pytest.raises(ReplayMismatch):
        OfflineModel().send(request([user("hi")]), expected_sha256=sha(b"other"))


@settings(max_examples=50, deadline=None)
@given(text=st.text(st.characters(exclude_categories=("Cs",)), max_size=300))
def test_the_offline_model_is_deterministic_and_labelled_for_any_message(text):
    body = request([user(text)], tools=[CALCULATOR, LOOKUP])
    first = OfflineModel().send(body, expected_sha256=None)
    assert first.body == OfflineModel().send(body, expected_sha256=None).body
    assert first.model == OFFLINE_MODEL_NAME
    assert first.text.startswith("[offline model]")


# -- choosing a client -------------------------------------------------------------------------


def test_get_model_client_returns_the_offline_model_when_asked():
    assert isinstance(get_model_client(OFFLINE_MODEL_NAME), OfflineModel)
    assert isinstance(get_model_client(MODEL, offline=True), OfflineModel)


def test_get_model_client_returns_a_working_adapter_for_a_claude_profile(model_server):
    client = get_model_client(get_profile(MODEL), api_key=KEY, base_url=model_server.base_url)
    try:
        assert isinstance(client, AnthropicAdapter)
        client.send(REQUESTS["plain"], expected_sha256=None)
    finally:
        client.close()
    assert model_server.requests[0].body == REQUESTS["plain"]


@pytest.mark.parametrize("name", ["gpt-4o", "no-such-model"])
def test_get_model_client_refuses_models_it_cannot_call(name):
    with pytest.raises(UnknownModel):
        get_model_client(name)
