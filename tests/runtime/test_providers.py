"""The provider interface: the registry, raw sends over real HTTP, usage and pricing per provider."""

from __future__ import annotations

import hashlib
import json

import pytest

from runtime.blocks import canonical_json
from runtime.errors import InvalidInput, ModelCallFailed
from runtime.providers import (
    AnthropicAdapter,
    OfflineModel,
    Usage,
    find_provider,
    get_provider,
    provider_names,
    sending_providers,
)
from runtime.providers.pricing import PRICES, Price, call_cost, get_price, input_cost
from runtime.providers.response import RawResponse
from runtime.tracing.records import Provider as TraceProvider
from tests.fakes.anthropic_server import AnthropicServer, error_reply, text_reply

KEY = "sk-provider-test-key-0123456789"
REQUEST = canonical_json(
    {"max_tokens": 16, "messages": [{"content": "hi", "role": "user"}], "model": "claude-haiku-4-5"}
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_provider_a_trace_can_name_is_registered_under_that_name():
    assert sorted(provider_names()) == sorted(p.value for p in TraceProvider)
    for name in TraceProvider:
        assert get_provider(name).name == name.value


def test_an_unknown_provider_is_refused_by_name():
    with pytest.raises(InvalidInput, match="no provider called 'mistral'"):
        get_provider("mistral")
    assert find_provider("mistral") is None


def test_replays_go_to_the_providers_whose_clients_resend_stored_bytes():
    assert [p.name for p in sending_providers()] == ["anthropic", "openai", "offline"]
    messages = get_provider("anthropic").request_format
    chat = get_provider("openai").request_format
    assert [p.name for p in sending_providers(messages)] == ["anthropic", "offline"]
    assert [p.name for p in sending_providers(chat)] == ["openai"]


def test_render_is_the_canonical_json_the_prompt_hash_is_taken_over():
    request = json.loads(REQUEST)
    assert get_provider("anthropic").render(request) == REQUEST


def test_send_raw_returns_an_error_status_as_it_arrived_without_retrying(no_anthropic_env):
    with AnthropicServer(max_lifetime=30.0) as server:
        server.enqueue(error_reply(429, "slow down", retry_after=0.01))
        with AnthropicAdapter(api_key=KEY, base_url=server.base_url, max_retries=3) as client:
            raw = client.send_raw(REQUEST, expected_sha256=_sha(REQUEST))
        assert server.request_count == 1 and server.requests[0].body == REQUEST
    assert (raw.status, raw.ok, raw.header("Retry-After")) == (429, False, "0.01")
    assert json.loads(raw.body)["error"]["type"] == "rate_limit_error"
    assert raw.sent_sha256 == _sha(REQUEST)


def test_parse_of_a_raw_answer_is_what_send_returns(no_anthropic_env):
    with AnthropicServer(max_lifetime=30.0) as server:
        server.enqueue(
            text_reply("hello", usage=(10, 2, 30, 4)), text_reply("hello", usage=(10, 2, 30, 4))
        )
        with AnthropicAdapter(api_key=KEY, base_url=server.base_url) as client:
            raw = client.send_raw(REQUEST, expected_sha256=None)
            sent = client.send(REQUEST, expected_sha256=None)
    parsed = get_provider("anthropic").parse(raw)
    assert (parsed.text, parsed.usage, parsed.body) == (sent.text, sent.usage, sent.body)
    assert parsed.usage == Usage(10, 2, 30, 4) == get_provider("anthropic").usage(parsed.data)


def test_send_raw_says_what_to_do_when_nothing_answers(no_anthropic_env):
    client = AnthropicAdapter(api_key=KEY, base_url="http://127.0.0.1:9", timeout=2.0)
    with client, pytest.raises(ModelCallFailed) as failed:
        client.send_raw(REQUEST, expected_sha256=None)
    assert failed.value.error_type == "connection" and "could not reach" in str(failed.value)
    assert KEY not in str(failed.value)


def test_the_offline_model_answers_raw_and_parsed_alike():
    raw = OfflineModel().send_raw(REQUEST, expected_sha256=_sha(REQUEST))
    assert (raw.status, raw.header("content-type")) == (200, "application/json")
    offline = get_provider("offline")
    assert offline.parse(raw).body == OfflineModel().send(REQUEST, expected_sha256=None).body
    assert offline.model_of(REQUEST) == "llm386-offline"
    assert offline.price(Usage(1_000, 10), "claude-haiku-4-5") is None


def test_openai_usage_splits_cached_tokens_out_of_the_prompt_count():
    completion = {"usage": {"prompt_tokens": 1_000, "completion_tokens": 50,
                            "prompt_tokens_details": {"cached_tokens": 400}}}  # fmt: skip
    usage = get_provider("openai").usage(completion)
    assert usage == Usage(600, 50, 400, 0) and usage.total_input_tokens == 1_000
    assert get_provider("openai").price(usage, "gpt-4o") == pytest.approx(
        (600 + 400 * 0.5) * 2.50 / 1e6
    )


def test_openai_parse_reads_a_chat_completion_with_a_tool_call():
    body = canonical_json({
        "id": "chatcmpl-1", "model": "gpt-4o", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Looking.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {
                "name": "get_user", "arguments": "{\"user_id\": \"u1\"}"}}]}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5},
    })  # fmt: skip
    parsed = get_provider("openai").parse(RawResponse(200, (), body, _sha(b"x"), 1.5))
    assert (parsed.id, parsed.model, parsed.stop_reason, parsed.text) == (
        "chatcmpl-1",
        "gpt-4o",
        "tool_calls",
        "Looking.",
    )
    [call] = parsed.tool_uses
    assert (call.id, call.name, dict(call.input)) == ("call_1", "get_user", {"user_id": "u1"})
    assert parsed.usage == Usage(20, 5)


def test_openai_parse_refuses_a_body_that_is_not_a_chat_completion():
    with pytest.raises(ModelCallFailed) as failed:
        get_provider("openai").parse(RawResponse(200, (), b'{"type":"message"}', "", 0.0))
    assert failed.value.error_type == "malformed-response"


def test_each_provider_prices_only_its_own_models():
    usage = Usage(1_000_000, 0, 1_000_000, 1_000_000)
    assert get_provider("anthropic").price(usage, "gpt-4o") is None
    assert get_provider("anthropic").price(usage, "claude-sonnet-4-6") == pytest.approx(
        3.00 * (1 + 0.10 + 1.25)
    )
    assert input_cost(usage, get_price("gpt-4o")) == pytest.approx(2.50 * (1 + 0.50 + 1.00))
    assert {p.provider for p in PRICES} == {"anthropic", "openai"}


def test_a_call_costs_its_input_and_its_output_when_both_are_priced():
    usage = Usage(1_000_000, 2_000_000, 1_000_000, 0)
    sonnet = get_price("claude-sonnet-4-6")
    assert call_cost(usage, sonnet) == pytest.approx(3.00 * (1 + 0.10) + 2 * 15.00)
    assert get_provider("anthropic").call_price(usage, "claude-sonnet-4-6") == call_cost(
        usage, sonnet
    )
    assert call_cost(usage, get_price("gpt-4o")) == pytest.approx(2.50 * 1.5 + 2 * 10.00)
    assert all(p.output_usd_per_mtok for p in PRICES)  # every listed model has both prices
    no_output = Price("m", 1.0, 0.1, 1.25, "test", "2026-01")
    assert call_cost(usage, no_output) is None and input_cost(usage, no_output) is not None
    assert call_cost(None, sonnet) is None


@pytest.mark.parametrize(
    "raw",
    [b'{"model":"m","messages":[{"role":"user","content":"\\ud800"}]}',
     b'{"model":"m","max_tokens":1e400,"messages":[]}',
     b'{"model":"m","messages":' + b"[" * 5000 + b"]" * 5000 + b"}",
     b'{"model":"m"}', b"not json"],
    ids=["lone-surrogate", "1e400", "deep", "no-messages", "not-json"],
)  # fmt: skip
def test_a_request_that_cannot_be_read_says_it_cannot_be_sent_and_where_to_look(raw: bytes) -> None:
    from runtime.providers.response import parse_request

    with pytest.raises(InvalidInput) as caught:
        parse_request(raw)
    message = str(caught.value)
    assert "cannot be sent, replayed or edited" in message and "llm386 trace" in message
    assert "packer" not in message  # a captured request never came from the packer
