"""The adapter's total timeout bounds all attempts and retries of one call together."""

from __future__ import annotations

import json

from runtime.errors import ModelCallFailed
from runtime.providers import AnthropicAdapter
from tests.fakes.anthropic_server import AnthropicServer, SlowReply, error_reply, text_reply

REQUEST = json.dumps(
    {
        "model": "claude-sonnet-4-6",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
).encode()


def _send(adapter: AnthropicAdapter) -> ModelCallFailed:
    try:
        adapter.send(REQUEST, expected_sha256=None)
    except ModelCallFailed as exc:
        return exc
    raise AssertionError("the call was expected to fail")


def test_a_silent_server_gets_one_attempt_cut_to_the_total_timeout(
    model_server: AnthropicServer,
) -> None:
    model_server.enqueue(SlowReply(60), SlowReply(60), SlowReply(60))
    adapter = AnthropicAdapter(
        api_key="k" * 20, base_url=model_server.base_url, timeout=30, total_timeout=0.3
    )
    with adapter:
        failure = _send(adapter)
    assert failure.error_type == "timeout"
    assert len(failure.attempts) == 1 and model_server.request_count == 1
    assert "after 0.3s" in failure.attempts[0].message


def test_retries_still_happen_within_the_total_timeout(model_server: AnthropicServer) -> None:
    model_server.enqueue(error_reply(529), text_reply("fine"))
    adapter = AnthropicAdapter(
        api_key="k" * 20,
        base_url=model_server.base_url,
        timeout=30,
        total_timeout=30,
        backoff_seconds=0.01,
    )
    with adapter:
        response = adapter.send(REQUEST, expected_sha256=None)
    assert [a.status for a in response.attempts] == [529, 200]


def test_no_retry_starts_when_its_wait_would_use_up_the_total(
    model_server: AnthropicServer,
) -> None:
    model_server.enqueue(error_reply(429, retry_after=5), text_reply("too late"))
    adapter = AnthropicAdapter(
        api_key="k" * 20, base_url=model_server.base_url, timeout=30, total_timeout=2
    )
    with adapter:
        failure = _send(adapter)
    assert failure.status == 429 and len(failure.attempts) == 1
    assert model_server.request_count == 1
