"""Faults on either side of the proxy: each is recorded, and the client gets what the upstream
sent or a clear error in its provider's own format."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from runtime.proxy import Family
from runtime.tracing.records import TraceStatus
from tests.fakes.anthropic_server import SlowReply, error_reply, stream_reply, text_reply
from tests.fakes.openai_server import chat_stream, openai_error
from tests.proxy.conftest import Stack, start_stack

MESSAGES = [{"role": "user", "content": "hello"}]


def _ask(stack: Stack, **options: object) -> anthropic.types.Message:
    client = stack.anthropic(max_retries=0, **options)
    return client.messages.create(model="claude-sonnet-4-6", max_tokens=16, messages=MESSAGES)


@pytest.mark.parametrize("status", [401, 429, 500, 529])
def test_an_upstream_error_reaches_the_client_unchanged_and_is_recorded(
    stack: Stack, status: int
) -> None:
    reply = error_reply(status, "scripted failure", retry_after=7 if status == 429 else None)
    stack.anthropic_up.enqueue(reply)
    with pytest.raises(anthropic.APIStatusError) as caught:
        _ask(stack)
    response = caught.value.response
    assert response.status_code == status and response.content == reply.body
    assert response.headers["request-id"].startswith("req_fake_")
    if status == 429:
        assert response.headers["retry-after"] == "7"
    [record] = stack.records()
    assert record.status is TraceStatus.ERROR and record.error is not None
    assert record.error.status == status and record.error.message == "scripted failure"
    assert stack.traces.response_bytes(record.call_id) == reply.body


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unreachable(tmp_path: Path) -> Iterator[Stack]:
    dead = f"http://127.0.0.1:{_closed_port()}"
    yield from start_stack(
        tmp_path / "store", upstreams={Family.ANTHROPIC: dead, Family.OPENAI: dead + "/v1"}
    )


def test_a_refused_upstream_is_a_502_in_each_providers_format(unreachable: Stack) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        _ask(unreachable)
    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "could not be reached" in caught.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as oai:
        unreachable.openai(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert oai.value.status_code == 502 and "could not be reached" in oai.value.message
    records = unreachable.records()
    assert [r.error.type for r in records if r.error] == ["upstream-unreachable"] * 2
    assert all(r.config["proxy"]["status"] is None for r in records)


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[Stack]:
    yield from start_stack(tmp_path / "store", read_timeout=0.3)


def test_an_upstream_timeout_is_a_504_and_recorded(impatient: Stack) -> None:
    impatient.anthropic_up.enqueue(SlowReply(3.0, text_reply("too late")))
    with pytest.raises(anthropic.APIStatusError) as caught:
        _ask(impatient)
    assert caught.value.status_code == 504
    assert caught.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
    [record] = impatient.records()
    assert record.error is not None and record.error.type == "upstream-timeout"


def test_an_upstream_dying_mid_stream_ends_the_stream_with_an_error_event(stack: Stack) -> None:
    reply = stream_reply("a long answer in pieces", pieces=5, die_after=4)
    stack.anthropic_up.enqueue(reply)
    client = stack.anthropic(max_retries=0)
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:  # noqa: SIM117
        with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=16, messages=MESSAGES
        ) as s:
            seen.extend(s.text_stream)
    assert "broke off" in str(caught.value)
    assert "".join(seen) == "a long answer in pieces"[: len("".join(seen))] and seen
    [record] = stack.records()
    assert record.error is not None and record.error.type == "upstream-died"
    stored = stack.traces.response_bytes(record.call_id)
    assert stored is not None and stored.startswith(b"".join(reply.events[:4]))
    assert stored.endswith(b"\n\n") and b"event: error" in stored  # what the client was sent


def test_an_openai_stream_that_dies_raises_in_the_openai_sdk(stack: Stack) -> None:
    stack.openai_up.enqueue(chat_stream("half an answer", die_after=2))
    client = stack.openai(max_retries=0)
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="broke off"):
        list(stream)
    [record] = stack.records()
    assert record.error is not None and record.error.type == "upstream-died"


def test_an_openai_error_reaches_the_client_unchanged(stack: Stack) -> None:
    reply = openai_error(429, "slow down")
    stack.openai_up.enqueue(reply)
    with pytest.raises(openai.RateLimitError) as caught:
        stack.openai(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.response.content == reply.body
    [record] = stack.records()
    assert record.error is not None and (record.error.status, record.error.message) == (
        429,
        "slow down",
    )


def test_a_client_hanging_up_mid_stream_is_recorded(stack: Stack) -> None:
    stack.anthropic_up.enqueue(stream_reply("x" * 40, pieces=40, pause=0.05))
    body = (b'{"model":"claude-sonnet-4-6","max_tokens":16,"stream":true,'
            b'"messages":[{"role":"user","content":"hello"}]}')  # fmt: skip
    with httpx2.Client(base_url=stack.url) as client:  # noqa: SIM117
        with client.stream("POST", "/v1/messages", content=body,
                           headers={"content-type": "application/json"}) as response:  # fmt: skip
            assert response.status_code == 200
            next(response.iter_raw())
    deadline = time.monotonic() + 10
    while not stack.traces.list(limit=None) and time.monotonic() < deadline:
        time.sleep(0.05)
    [record] = stack.records()
    assert record.error is not None and record.error.type == "client-disconnected"
    assert record.config["proxy"]["status"] == 200
    assert stack.traces.request_bytes(record.prompt_hash) == body
