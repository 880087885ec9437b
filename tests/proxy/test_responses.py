"""The OpenAI Responses API (``POST /v1/responses``) through the proxy, with the official SDK's
``client.responses.create``: sync and async, streamed and not, with a function call.

As for the other two APIs: the bytes the client sent, the bytes the upstream received and the
bytes stored are equal; the client's parsed result is the one a direct call gives; the record
holds the response (assembled from the events, for a stream), its usage and its blocks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

from runtime.tracing.records import Provider, TraceStatus
from tests.fakes.openai_server import openai_error, response_reply, response_stream
from tests.proxy.conftest import Stack, check_bytes, dump

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]  # fmt: skip
CALL = ("call_01", "get_weather", {"city": "Oslo"})
INPUT = [{"role": "user", "content": "What is the weather in Oslo?"}]


def _kwargs(stream: bool, **more: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "instructions": "Be brief.", "tools": TOOLS, "input": INPUT,
            **({"stream": True} if stream else {}), **more}  # fmt: skip


def _call(stack: Stack, base: str, mode: str, stream: bool, **more: Any) -> Any:
    if mode == "sync":
        result = stack.openai(base, max_retries=0).responses.create(**_kwargs(stream, **more))
        return list(result) if stream else result

    async def call() -> Any:
        async with stack.async_openai(base, max_retries=0) as client:
            result = await client.responses.create(**_kwargs(stream, **more))
            return [event async for event in result] if stream else result

    return asyncio.run(call())


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_responses_through_the_proxy_send_and_store_the_same_bytes(
    stack: Stack, mode: str, stream: bool
) -> None:
    reply = (response_stream("Let me check.", tool=CALL, usage=(40, 9, 16)) if stream
             else response_reply("Let me check.", tool=CALL, usage=(40, 9, 16)))  # fmt: skip
    stack.openai_up.enqueue(reply, reply)
    direct, proxied = (_call(stack, base, mode, stream)
                       for base in (stack.openai_up.base_url + "/v1", stack.url + "/v1"))  # fmt: skip
    assert dump(proxied) == dump(direct)
    assert [r.path for r in stack.openai_up.requests] == ["/v1/responses"] * 2
    check_bytes(stack, stack.openai_up.requests, stream)
    [record] = stack.records()
    final = proxied[-1].response if stream else proxied
    assert (
        final.output[1].type == "function_call" and final.output[1].arguments == '{"city":"Oslo"}'
    )
    assert record.provider is Provider.OPENAI and record.stop_reason == "completed"
    assert record.config["proxy"]["api"] == "/v1/responses"
    usage = record.usage
    assert usage is not None and (usage.input_tokens, usage.cache_read_input_tokens) == (24, 16)
    assert usage.output_tokens == 9
    assert record.response == final.model_dump(mode="json", exclude_unset=True)
    stored = stack.traces.response_bytes(record.call_id)
    assert stored == (b"".join(reply.events) if stream else reply.body)


def test_a_responses_turn_holds_instructions_tools_and_items_as_blocks(stack: Stack) -> None:
    items = [*INPUT, {"type": "function_call", "call_id": "call_01", "name": "get_weather",
                      "arguments": '{"city":"Oslo"}'},
             {"type": "function_call_output", "call_id": "call_01", "output": "12 C, rain"}]  # fmt: skip
    stack.openai_up.enqueue(response_reply("It rains."))
    stack.openai(max_retries=0).responses.create(**{**_kwargs(False), "input": items})
    [record] = stack.records()
    entries = stack.store.entries(record.session)
    assert [e.kind.value for e in entries] == [
        "system", "tool-schema", "user-message", "tool-call", "tool-result"]  # fmt: skip
    assert entries[0].body == "Be brief." and '"input_schema"' in entries[1].body
    assert [i["block_id"] for i in record.plan["selected"]] == [e.id for e in entries]
    edges = stack.store.edges_from(entries[3].id)
    assert [(e.kind.value, e.dst) for e in edges] == [("tool-invocation", entries[4].id)]


def test_a_growing_input_list_continues_its_session(stack: Stack) -> None:
    client = stack.openai(max_retries=0)
    first = client.responses.create(model="gpt-4o", input="Hi there")
    client.responses.create(model="gpt-4o", input=[
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": first.output_text}, {"role": "user", "content": "More"}])  # fmt: skip
    one, two = stack.records()
    assert two.session == one.session and two.turn == 2
    assert two.config["proxy"]["session_from"] == "prefix"
    kinds = [e.kind.value for e in stack.store.entries(one.session)]
    assert kinds == ["user-message", "assistant-message", "user-message"]


def test_a_string_input_and_a_failed_stream_are_recorded(stack: Stack) -> None:
    stack.openai_up.enqueue(openai_error(429, "slow down"),
                            response_stream("partial text", die_after=4))  # fmt: skip
    client = stack.openai(max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="gpt-4o", input="hello")
    with pytest.raises(openai.APIError):
        list(client.responses.create(model="gpt-4o", input="hello", stream=True))
    limited, died = stack.records()
    assert limited.status is TraceStatus.ERROR and limited.error is not None
    assert (limited.error.status, limited.error.message) == (429, "slow down")
    assert died.status is TraceStatus.ERROR and died.error is not None
    assert died.error.type == "upstream-died"
    assert died.response is not None and died.response["object"] == "response"
    assert stack.traces.response_bytes(died.call_id).endswith(b"\n\n")


def test_an_unknown_responses_route_is_a_404_in_openai_format(stack: Stack) -> None:
    client = stack.openai(max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve("resp_123")
    assert "no route GET /v1/responses/resp_123" in str(caught.value)


def test_a_call_that_continues_a_stored_response_joins_its_session(stack: Stack) -> None:
    stack.openai_up.enqueue(response_reply("Hello!", response_id="resp_A"),
                            response_reply("Sure.", response_id="resp_B"),
                            response_reply("Other.", response_id="resp_C"),
                            response_reply("Again.", response_id="resp_D"))  # fmt: skip
    client = stack.openai(max_retries=0)
    first = client.responses.create(model="gpt-4o", input="Hi")
    client.responses.create(model="gpt-4o", input="Tell me more", previous_response_id=first.id)
    client.responses.create(model="gpt-4o", input="Unrelated")
    client.responses.create(model="gpt-4o", input="And again", previous_response_id="resp_B")
    one, two, other, three = stack.records()
    assert two.session == three.session == one.session != other.session
    assert [r.turn for r in (one, two, three)] == [1, 2, 3]
    assert two.config["proxy"]["session_from"] == "previous-response"
    texts = [e.body for e in stack.store.entries(one.session)]
    assert texts == ["Hi", "Tell me more", "And again"]  # the items the proxy saw, in order
