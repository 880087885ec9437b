"""The offline model behind HTTP (what the demo's capture proxy forwards to), and the headers a
provider client sends with every request (how the demo names its captured sessions)."""

from __future__ import annotations

import json

import pytest

from runtime.blocks import canonical_json
from runtime.errors import ModelCallFailed
from runtime.providers import AnthropicAdapter, OfflineModel
from runtime.providers.offline.upstream import OfflineUpstream, chat_completion
from runtime.providers.openai.client import OpenAIClient
from runtime.proxy.apis import SESSION_HEADER
from tests.fakes.anthropic_server import AnthropicServer

pytestmark = pytest.mark.usefixtures("no_anthropic_env")

KEY = "sk-offline-upstream-test-0123456789"
MESSAGES = canonical_json({"max_tokens": 64, "model": "claude-sonnet-4-6",
                           "messages": [{"role": "user", "content": "Hello there"}]})  # fmt: skip
CHAT = canonical_json({"model": "gpt-4o", "messages": [{"role": "system", "content": "Be terse."},
                                                       {"role": "user", "content": "Hi!"}]})  # fmt: skip


def test_messages_are_answered_as_the_offline_model_with_the_requested_model() -> None:
    with OfflineUpstream() as upstream, AnthropicAdapter(api_key=KEY, base_url=upstream.base_url,
                                                         max_retries=0) as client:  # fmt: skip
        first = client.send(MESSAGES, expected_sha256=None)
        second = client.send(MESSAGES, expected_sha256=None)
    offline = OfflineModel().send(MESSAGES, expected_sha256=None)
    assert first.text == second.text == offline.text
    assert first.text.startswith("[offline model]")
    assert first.data["model"] == "claude-sonnet-4-6"


def test_chat_completions_are_answered_deterministically() -> None:
    with OfflineUpstream() as upstream, OpenAIClient(api_key=KEY, max_retries=0,
                                                     base_url=upstream.base_url + "/v1") as client:  # fmt: skip
        reply = client.send(CHAT, expected_sha256=None)
    assert reply.text == chat_completion(CHAT)["choices"][0]["message"]["content"]
    assert reply.text.startswith("[offline model]")
    assert reply.usage is not None and reply.usage.output_tokens > 0
    assert chat_completion(CHAT) == chat_completion(CHAT)


def test_a_scripted_failure_answers_the_next_call_only_in_the_apis_error_format() -> None:
    with OfflineUpstream() as upstream, AnthropicAdapter(api_key=KEY, base_url=upstream.base_url,
                                                         max_retries=0) as client:  # fmt: skip
        upstream.fail_next(529, "Overloaded for the test")
        with pytest.raises(ModelCallFailed) as failed:
            client.send(MESSAGES, expected_sha256=None)
        assert (failed.value.status, failed.value.error_type) == (529, "overloaded_error")
        assert client.send(MESSAGES, expected_sha256=None).text.startswith("[offline model]")
        status, body = upstream.answer("/v1/other", b"{}")
    assert status == 404 and "no route" in body["error"]["message"]


def test_a_body_that_is_not_json_gets_a_400_that_says_so() -> None:
    with OfflineUpstream() as upstream:
        status, body = upstream.answer("/v1/messages", b"not json")
        chat_status, chat_body = upstream.answer("/v1/chat/completions", b"[]")
    assert status == 400 and "not a request the offline model can read" in body["error"]["message"]
    assert chat_status == 400 and chat_body["error"]["type"] == "invalid_request_error"


def test_client_headers_go_with_every_request_and_leave_the_body_alone(
    model_server: AnthropicServer,
) -> None:
    with AnthropicAdapter(api_key=KEY, base_url=model_server.base_url, max_retries=0,
                          headers={SESSION_HEADER: "my-session"}) as client:  # fmt: skip
        client.send(MESSAGES, expected_sha256=None)
    (request,) = model_server.requests
    assert request.header(SESSION_HEADER) == "my-session"
    assert request.body == MESSAGES
    assert json.loads(request.body)["model"] == "claude-sonnet-4-6"
