"""The OpenAI client over real HTTP: the official openai SDK -> a loopback Chat Completions server
that records the raw bytes it received."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from runtime.blocks import canonical_json
from runtime.config import Config, load_config
from runtime.errors import ModelCallFailed, ReplayMismatch
from runtime.providers import get_provider
from runtime.providers.openai.client import OpenAIClient
from tests.fakes.anthropic_server import DropConnection, RawReply, SlowReply
from tests.fakes.openai_server import OpenAIServer, chat_reply, chat_stream, openai_error

KEY = "sk-proj-test-Q7vN-never-print-me-2931"
# What an agent might really send: its own serializer's spacing, key order and escaping.
CAPTURED = (
    b'{"model": "gpt-4o", "messages": [{"role": "system", "content": "Be brief."}, '
    b'{"role": "user", "content": "caf\\u00e9 \\u2014 what is 2+2?"}], "temperature": 0}'
)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as fake:
        yield fake


@pytest.fixture
def client(server: OpenAIServer) -> Iterator[OpenAIClient]:
    made = OpenAIClient(api_key=KEY, base_url=server.base_url + "/v1", timeout=5.0,
                        max_retries=2, backoff_seconds=0.01)  # fmt: skip
    yield made
    made.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_sdk_create_call_does_not_send_a_captured_request_as_it_was(
    server: OpenAIServer,
) -> None:
    # Why the client posts raw bytes: create() re-serialises the same request differently.
    sdk = openai.OpenAI(api_key=KEY, base_url=server.base_url + "/v1", max_retries=0)
    sdk.chat.completions.create(**json.loads(CAPTURED))
    sdk.close()
    [received] = server.requests
    assert json.loads(received.body) == json.loads(CAPTURED)
    assert received.body != CAPTURED


def test_send_delivers_the_stored_bytes_unchanged_and_parses_the_reply(
    server: OpenAIServer, client: OpenAIClient
) -> None:
    server.enqueue(chat_reply("4", usage=(40, 1, 32)))
    response = client.send(CAPTURED, expected_sha256=_sha(CAPTURED))
    [received] = server.requests
    assert received.body == CAPTURED and received.path == "/v1/chat/completions"
    assert received.header("authorization") == f"Bearer {KEY}"
    assert response.sent_sha256 == _sha(CAPTURED)
    assert response.text == "4" and response.stop_reason == "stop"
    assert (response.usage.input_tokens, response.usage.cache_read_input_tokens) == (8, 32)
    assert [a.status for a in response.attempts] == [200]


def test_a_streamed_request_is_sent_as_is_and_its_chunks_assembled(
    server: OpenAIServer, client: OpenAIClient
) -> None:
    request = canonical_json({"model": "gpt-4o", "stream": True,
                              "stream_options": {"include_usage": True},
                              "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    reply = chat_stream(tool=("call_1", "get_weather", {"city": "Oslo"}))
    server.enqueue(reply)
    response = client.send(request, expected_sha256=_sha(request))
    assert server.requests[0].body == request
    assert response.body == b"".join(reply.events)  # the raw SSE bytes are kept
    assert response.stop_reason == "tool_calls"
    [call] = response.tool_uses
    assert (call.id, call.name, dict(call.input)) == ("call_1", "get_weather", {"city": "Oslo"})
    assert response.usage.output_tokens == 8


def test_bytes_that_do_not_hash_to_the_recorded_hash_are_never_sent(
    server: OpenAIServer, client: OpenAIClient
) -> None:
    with pytest.raises(ReplayMismatch):
        client.send(CAPTURED, expected_sha256=_sha(CAPTURED + b" "))
    assert server.requests == []


def test_rate_limits_and_server_errors_are_retried_then_succeed(
    server: OpenAIServer, client: OpenAIClient
) -> None:
    server.enqueue(openai_error(429), openai_error(500), chat_reply("ok"))
    response = client.send(CAPTURED, expected_sha256=None)
    assert [a.status for a in response.attempts] == [429, 500, 200]
    assert response.attempts[0].wait_ms > 0
    assert [r.body for r in server.requests] == [CAPTURED] * 3


def test_a_client_error_is_not_retried_and_says_what_to_do(
    server: OpenAIServer, client: OpenAIClient
) -> None:
    server.enqueue(openai_error(401, f"Incorrect API key provided: {KEY[:20]}..."))
    with pytest.raises(ModelCallFailed) as caught:
        client.send(CAPTURED, expected_sha256=None)
    error = caught.value
    assert error.status == 401 and len(error.attempts) == 1 and len(server.requests) == 1
    assert "OPENAI_API_KEY" in str(error)
    assert KEY[:20] not in str(error) and KEY[:8] not in repr(error.attempts)


def test_retries_stop_after_max_retries(server: OpenAIServer, client: OpenAIClient) -> None:
    server.enqueue(*[openai_error(503)] * 3)
    with pytest.raises(ModelCallFailed, match="failed with 503 after 3 attempts"):
        client.send(CAPTURED, expected_sha256=None)
    assert len(server.requests) == 3


def test_send_raw_returns_any_status_once(server: OpenAIServer, client: OpenAIClient) -> None:
    server.enqueue(openai_error(500))
    raw = client.send_raw(CAPTURED, expected_sha256=_sha(CAPTURED))
    assert raw.status == 500 and b"server_error" in raw.body and len(server.requests) == 1


def test_timeouts_and_dropped_connections_are_retried_and_reported(server: OpenAIServer) -> None:
    client = OpenAIClient(api_key=KEY, base_url=server.base_url + "/v1", timeout=0.3,
                          max_retries=1, backoff_seconds=0.01)  # fmt: skip
    server.enqueue(SlowReply(1.0), DropConnection())
    with pytest.raises(ModelCallFailed) as caught:
        client.send(CAPTURED, expected_sha256=None)
    client.close()
    assert [a.error_type for a in caught.value.attempts] == ["timeout", "connection"]


def test_a_refused_connection_names_the_base_url_without_credentials() -> None:
    client = OpenAIClient(api_key=KEY, base_url="http://user:pw-secret-value@127.0.0.1:9/v1",
                          max_retries=0, timeout=2.0)  # fmt: skip
    with pytest.raises(ModelCallFailed) as caught:
        client.send(CAPTURED, expected_sha256=None)
    assert caught.value.error_type == "connection"
    assert "127.0.0.1:9" in str(caught.value) and "pw-secret-value" not in str(caught.value)
    assert "pw-secret" not in repr(client) and KEY not in repr(client)


def test_a_malformed_answer_is_a_malformed_response(
    server: OpenAIServer, client: OpenAIClient
) -> None:
    server.enqueue(RawReply(200, b"<html>gateway</html>", "text/html"))
    with pytest.raises(ModelCallFailed) as caught:
        client.send(CAPTURED, expected_sha256=None)
    assert caught.value.error_type == "malformed-response"


def test_without_a_key_nothing_is_sent(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client = OpenAIClient(base_url=server.base_url + "/v1")
    with pytest.raises(ModelCallFailed, match="OPENAI_API_KEY") as caught:
        client.send(CAPTURED, expected_sha256=None)
    assert caught.value.error_type == "missing-key" and server.requests == []


def test_the_provider_makes_the_client_from_config_and_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = get_provider("openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert not provider.available()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert provider.available() and provider.sends_stored_requests
    options: dict[str, Any] = provider.client_options(Config.default(), {})
    assert options == {"base_url": "https://api.openai.com/v1", "timeout": 60.0, "max_retries": 2}
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}
    assert provider.client_options(Config.default(), env)["base_url"] == env["OPENAI_BASE_URL"]
    client = provider.client(**options)
    assert isinstance(client, OpenAIClient) and KEY not in repr(client)


def test_the_openai_table_of_llm386_toml_sets_the_client(tmp_path: Any) -> None:
    path = tmp_path / "llm386.toml"
    path.write_text('[openai]\nbase_url = "http://127.0.0.1:8000/v1"\nmax_retries = 0\n')
    config = load_config(path)
    assert config.warnings == ()
    options = get_provider("openai").client_options(config, {})
    assert options["base_url"] == "http://127.0.0.1:8000/v1" and options["max_retries"] == 0
