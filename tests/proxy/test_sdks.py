"""The official SDKs through the proxy: bytes unchanged end to end, results as a direct call's.

For each client (anthropic and openai, sync and async, streaming and not, with tool use) the
same scripted reply is answered once directly and once through the proxy, and:
- the body the client sent == the body the upstream received == the stored request bytes, and
  the record's prompt hash is their SHA-256;
- the client's parsed result through the proxy equals the direct one;
- the stored response bytes are what the upstream sent, and a stream's assembled message
  matches what the SDK assembled.
"""

from __future__ import annotations

import asyncio

import pytest

from runtime.tracing.records import Provider
from tests.fakes.anthropic_server import stream_reply, tool_use_reply
from tests.fakes.openai_server import chat_reply, chat_stream
from tests.proxy.conftest import Stack, check_bytes, dump

TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]  # fmt: skip
OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip
MESSAGES = [{"role": "user", "content": "What is the weather in Oslo?"}]
TOOL_CALL = ("toolu_01", "get_weather", {"city": "Oslo"})


def _anthropic_call(client, stream: bool):  # type: ignore[no-untyped-def]
    kwargs = {"model": "claude-sonnet-4-6", "max_tokens": 64, "system": "Be brief.",
              "tools": TOOLS, "messages": MESSAGES}  # fmt: skip
    if not stream:
        return client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as s:
        return s.get_final_message()


async def _anthropic_call_async(client, stream: bool):  # type: ignore[no-untyped-def]
    kwargs = {"model": "claude-sonnet-4-6", "max_tokens": 64, "system": "Be brief.",
              "tools": TOOLS, "messages": MESSAGES}  # fmt: skip
    async with client:
        if not stream:
            return await client.messages.create(**kwargs)
        async with client.messages.stream(**kwargs) as s:
            return await s.get_final_message()


def _openai_kwargs(stream: bool) -> dict[str, object]:
    kwargs: dict[str, object] = {"model": "gpt-4o", "tools": OPENAI_TOOLS,
                                 "messages": [{"role": "system", "content": "Be brief."}, *MESSAGES]}  # fmt: skip
    if stream:
        kwargs |= {"stream": True, "stream_options": {"include_usage": True}}
    return kwargs


def _openai_call(client, stream: bool):  # type: ignore[no-untyped-def]
    result = client.chat.completions.create(**_openai_kwargs(stream))
    return list(result) if stream else result


async def _openai_call_async(client, stream: bool):  # type: ignore[no-untyped-def]
    async with client:
        result = await client.chat.completions.create(**_openai_kwargs(stream))
        return [chunk async for chunk in result] if stream else result


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_anthropic_sdk_through_the_proxy_sends_and_stores_the_same_bytes(
    stack: Stack, mode: str, stream: bool
) -> None:
    reply = (
        stream_reply("Let me check.", tool=TOOL_CALL)
        if stream
        else tool_use_reply(*TOOL_CALL, text="Let me check.")
    )
    stack.anthropic_up.enqueue(reply, reply)
    results = []
    for base in (stack.anthropic_up.base_url, stack.url):
        if mode == "sync":
            results.append(_anthropic_call(stack.anthropic(base, max_retries=0), stream))
        else:
            results.append(
                asyncio.run(
                    _anthropic_call_async(stack.async_anthropic(base, max_retries=0), stream)
                )
            )
    direct, proxied = results
    assert dump(proxied) == dump(direct)
    assert proxied.content[-1].type == "tool_use" and proxied.content[-1].input == {"city": "Oslo"}
    check_bytes(stack, stack.anthropic_up.requests, stream)
    [record] = stack.records()
    assert record.provider is Provider.ANTHROPIC and record.stop_reason == "tool_use"
    assert record.usage is not None and record.usage.output_tokens == proxied.usage.output_tokens
    # The assembled message is what the SDK assembled from the same events.
    assert record.response is not None
    assert record.response["content"] == [
        b.model_dump(exclude_none=True) for b in proxied.content
    ] or (
        [{k: v for k, v in b.items() if v is not None} for b in record.response["content"]]
        == [b.model_dump(exclude_none=True) for b in proxied.content]
    )
    stored_response = stack.traces.response_bytes(record.call_id)
    assert stored_response == (reply.body if not stream else b"".join(reply.events))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_openai_sdk_through_the_proxy_sends_and_stores_the_same_bytes(
    stack: Stack, mode: str, stream: bool
) -> None:
    reply = chat_stream(tool=TOOL_CALL) if stream else chat_reply(tool=TOOL_CALL)
    stack.openai_up.enqueue(reply, reply)
    results = []
    for base in (stack.openai_up.base_url + "/v1", stack.url + "/v1"):
        if mode == "sync":
            results.append(_openai_call(stack.openai(base, max_retries=0), stream))
        else:
            results.append(
                asyncio.run(_openai_call_async(stack.async_openai(base, max_retries=0), stream))
            )
    direct, proxied = results
    assert dump(proxied) == dump(direct)
    check_bytes(stack, stack.openai_up.requests, stream)
    [record] = stack.records()
    assert record.provider is Provider.OPENAI and record.stop_reason == "tool_calls"
    assert record.usage is not None and record.usage.input_tokens == 30
    message = record.response["choices"][0]["message"]  # type: ignore[index]
    assert message["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Oslo"}',
    }
    stored_response = stack.traces.response_bytes(record.call_id)
    assert stored_response == (reply.body if not stream else b"".join(reply.events))


def test_count_tokens_is_forwarded_but_not_a_turn(stack: Stack) -> None:
    client = stack.anthropic(max_retries=0)
    count = client.messages.count_tokens(model="claude-sonnet-4-6", messages=MESSAGES)
    assert count.input_tokens > 0
    assert stack.anthropic_up.requests[0].path == "/v1/messages/count_tokens"
    assert stack.anthropic_up.requests[0].body == stack.sent.bodies[0]
    assert stack.records() == []


def test_a_captured_turn_holds_the_request_as_blocks(stack: Stack) -> None:
    stack.anthropic_up.enqueue(tool_use_reply(*TOOL_CALL))
    _anthropic_call(stack.anthropic(max_retries=0), stream=False)
    [record] = stack.records()
    entries = stack.store.entries(record.session)
    kinds = [e.kind.value for e in entries]
    assert kinds == ["system", "tool-schema", "user-message"]
    selected = [item["block_id"] for item in record.plan["selected"]]
    assert selected == [e.id for e in entries]
    info = stack.store.session_info(record.session)
    assert info.meta["source"] == "proxy" and info.meta["title"] == "What is the weather in Oslo?"
