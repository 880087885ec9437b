"""A captured turn is badged "captured" and replays its captured bytes, unchanged, to the same
provider through the runtime's own client, with the byte-identity verdict.

Each test drives the official SDK through the proxy to a loopback upstream, then replays the
record with the provider's runtime client against the same upstream: the bytes the client sent,
the bytes stored and the bytes the upstream received on replay are equal.
"""

from __future__ import annotations

import asyncio

import pytest

from runtime.providers import get_provider
from runtime.replay.fidelity import Fidelity, replay_capability
from runtime.replay.resend import replay
from runtime.tracing.records import TraceRecord, TraceStatus
from tests.fakes.anthropic_server import stream_reply
from tests.fakes.openai_server import chat_reply, chat_stream, response_reply, response_stream
from tests.proxy.conftest import API_KEY, Stack

MESSAGES = [{"role": "user", "content": "hi"}]


def _replay_through_provider(stack: Stack, record: TraceRecord, base_url: str):  # type: ignore[no-untyped-def]
    client = get_provider(record.provider).client(api_key=API_KEY, base_url=base_url, max_retries=0)
    try:
        return replay(stack.traces, record.call_id, client)
    finally:
        client.close()


def _openai_call(stack: Stack, mode: str, stream: bool) -> None:
    kwargs: dict[str, object] = {"model": "gpt-4o", "messages": MESSAGES}
    if stream:
        kwargs |= {"stream": True, "stream_options": {"include_usage": True}}
    if mode == "sync":
        result = stack.openai(max_retries=0).chat.completions.create(**kwargs)  # type: ignore[call-overload]
        _ = list(result) if stream else result
        return

    async def call() -> None:
        async with stack.async_openai(max_retries=0) as client:
            result = await client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
            _ = [chunk async for chunk in result] if stream else result

    asyncio.run(call())


def test_a_captured_anthropic_turn_replays_byte_for_byte(stack: Stack) -> None:
    stack.anthropic(max_retries=0).messages.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=MESSAGES
    )
    [record] = stack.records()
    capability = replay_capability(record)
    assert capability.fidelity is Fidelity.CAPTURED and capability.can_replay
    assert "exactly what the agent sent" in capability.title
    result = _replay_through_provider(stack, record, stack.anthropic_up.base_url)
    assert result.bytes_matched is True and result.ok
    captured, replayed = stack.anthropic_up.requests
    assert replayed.body == captured.body == stack.sent.bodies[0]


def test_a_captured_anthropic_stream_replays_and_reads_its_events(stack: Stack) -> None:
    stack.anthropic_up.enqueue(stream_reply("Hello there"), stream_reply("Hello there"))
    with stack.anthropic(max_retries=0).messages.stream(
        model="claude-sonnet-4-6", max_tokens=8, messages=MESSAGES
    ) as events:
        events.get_final_message()
    [record] = stack.records()
    result = _replay_through_provider(stack, record, stack.anthropic_up.base_url)
    assert result.bytes_matched is True and result.ok, result.record.error
    assert result.new_text == result.original_text == "Hello there"
    assert result.response_identical  # the same scripted events, byte for byte
    captured, replayed = stack.anthropic_up.requests
    assert replayed.body == captured.body == stack.sent.bodies[0]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_captured_openai_turn_replays_byte_for_byte_to_openai(
    stack: Stack, mode: str, stream: bool
) -> None:
    reply = chat_stream("Hi! How can I help?") if stream else chat_reply("Hi! How can I help?")
    stack.openai_up.enqueue(reply, reply)
    _openai_call(stack, mode, stream)
    [record] = stack.records()
    capability = replay_capability(record)
    assert capability.fidelity is Fidelity.CAPTURED and capability.can_replay
    assert capability.can_repage  # and it can be re-paged for an Anthropic model
    assert "(the OpenAI API)" in capability.title
    result = _replay_through_provider(stack, record, stack.openai_up.base_url + "/v1")
    assert result.bytes_matched is True and result.ok, result.record.error
    assert result.record.status is TraceStatus.OK and result.record.provider is record.provider
    assert result.new_text == result.original_text == "Hi! How can I help?"
    assert result.response_identical
    assert result.usage is not None and result.usage.output_tokens == 8
    captured, replayed = stack.openai_up.requests
    assert replayed.body == captured.body == stack.sent.bodies[0]
    assert replayed.path == captured.path == "/v1/chat/completions"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_captured_responses_turn_replays_byte_for_byte_to_its_own_route(
    stack: Stack, stream: bool
) -> None:
    call = ("call_9", "lookup", {"q": "x"})
    reply = (response_stream("Found it.", tool=call, usage=(50, 6, 20)) if stream
             else response_reply("Found it.", tool=call, usage=(50, 6, 20)))  # fmt: skip
    stack.openai_up.enqueue(reply, reply)
    result = stack.openai(max_retries=0).responses.create(model="gpt-4o", input="find x",
                                                          stream=stream)  # fmt: skip
    _ = list(result) if stream else result
    [record] = stack.records()
    replayed_result = _replay_through_provider(stack, record, stack.openai_up.base_url + "/v1")
    assert replayed_result.bytes_matched is True and replayed_result.ok, (
        replayed_result.record.error
    )
    expected = 'Found it.\n[tool_use lookup] {"q":"x"}'
    assert replayed_result.new_text == replayed_result.original_text == expected
    assert replayed_result.response_identical
    usage = replayed_result.usage
    assert usage is not None and (usage.input_tokens, usage.cache_read_input_tokens) == (30, 20)
    captured, replayed = stack.openai_up.requests
    assert replayed.body == captured.body == stack.sent.bodies[0]
    assert replayed.path == captured.path == "/v1/responses"
    assert replayed_result.record.stop_reason == "completed"


def test_a_replayed_paged_turn_leaves_a_store_that_verifies(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The child took the original's paging whole, with paging.proxy.client_request naming the
    # client's own bytes, which are kept under the original's call id only: `llm386 verify`
    # then reported every replay (and sample) of a paged turn as client-request-damaged, not
    # repairable, on a store with nothing wrong in it.
    from runtime.proxy.pager import PageSettings
    from runtime.storage.tracestore import KvTraceStore
    from tests.proxy.conftest import start_stack
    from tests.proxy.longsession import MODEL, anthropic_history, tools

    for stack in start_stack(tmp_path / "store", page=PageSettings("default")):
        stack.anthropic(max_retries=0).messages.create(
            model=MODEL, max_tokens=64, tools=tools(), messages=anthropic_history()
        )
        [record] = stack.records()
        assert record.paging["proxy"]["client_request"]
        result = _replay_through_provider(stack, record, stack.anthropic_up.base_url)
        assert result.ok and result.bytes_matched is True
        assert KvTraceStore(stack.store).verify().problems == ()
        assert "proxy" not in result.record.paging  # the plan it sent is the original's
        assert result.record.paging["plan"] == record.paging["plan"]
