"""``llm386 proxy --page``: a call that took recall rounds, answered whole and failing cleanly.

The official SDKs talk to the proxy over real HTTP; loopback fake upstreams script the rounds.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from runtime.blocks import ToolCall
from runtime.proxy.apis import Wire
from runtime.proxy.pager import PagedCall, PageSettings, ProxyPager
from runtime.proxy.recall import summed
from runtime.tracing.records import TraceStatus
from tests.fakes.anthropic_server import (
    DropConnection,
    Reply,
    error_reply,
    stream_reply,
    text_reply,
)
from tests.fakes.openai_server import chat_reply, chat_stream
from tests.proxy.conftest import Stack
from tests.proxy.longsession import MODEL, anthropic_history, tool_output, tools
from tests.proxy.test_paging import _ask, _chat_tools, _placeholder_id, chat_started


def _recall_round(content: list[dict[str, Any]]) -> Reply:
    body = {"id": "msg_round", "type": "message", "role": "assistant", "model": MODEL,
            "content": content, "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 5}}  # fmt: skip
    return Reply(200, json.dumps(body).encode(), ())


def _second_call(paged: Stack, *rounds: Any) -> tuple[list[dict[str, Any]], str]:
    """Send the long session once, script ``rounds`` for the next call; return its history."""
    history = anthropic_history()
    _ask(paged.anthropic(), history)
    block = _placeholder_id(paged.anthropic_up.requests[0].body)
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "Row 0?"}]
    return history, block


def test_a_non_streamed_reply_keeps_the_thinking_and_text_of_every_round(paged: Stack):
    history, block = _second_call(paged)
    thinking = {"type": "thinking", "thinking": "Row 0 was paged out.", "signature": "sig-1"}
    recall = {"type": "tool_use", "id": "toolu_r", "name": "recall", "input": {"block_id": block}}
    paged.anthropic_up.enqueue(
        _recall_round([thinking, {"type": "text", "text": "Let me look."}, recall]),
        text_reply("Row 0-0 says 0."),
    )
    reply = _ask(paged.anthropic(), history)
    # As a stream gives it: the first round's thinking and text, then the last round's answer.
    assert [c.type for c in reply.content] == ["thinking", "text", "text"]
    assert reply.content[0].signature == "sig-1"  # type: ignore[union-attr]
    assert [c.text for c in reply.content[1:]] == ["Let me look.", "Row 0-0 says 0."]  # type: ignore[union-attr]
    assert reply.stop_reason == "end_turn"
    continued = json.loads(paged.anthropic_up.requests[-1].body)["messages"]
    assert continued[-2]["content"][0] == thinking  # the model got its own thinking back
    record = paged.records()[-1]
    assert record.response is not None
    assert [c["type"] for c in record.response["content"]] == ["thinking", "text", "text"]
    # The call cost both rounds: the client is told their sum, the record keeps each round's.
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (5 + 25, 5 + 7)
    rounds = record.paging["proxy"]["usage"]
    assert [(u["input_tokens"], u["output_tokens"]) for u in rounds] == [(5, 5), (25, 7)]


def test_a_non_streamed_chat_reply_keeps_the_text_said_before_a_recall(paged: Stack):
    client, history, block = chat_started(paged)
    said = json.loads(chat_reply(tool=("call_r", "recall", {"block_id": block})).body)
    said["choices"][0]["message"]["content"] = "Checking. "
    paged.openai_up.enqueue(Reply(200, json.dumps(said).encode(), ()), chat_reply("Row 0-0."))
    history += [{"role": "assistant", "content": "first"}, {"role": "user", "content": "Row 0?"}]
    reply = client.chat.completions.create(model="gpt-4o", messages=history,  # type: ignore[arg-type]
                                           tools=_chat_tools())  # type: ignore[arg-type]  # fmt: skip
    assert reply.choices[0].message.content == "Checking. Row 0-0."
    assert reply.choices[0].message.tool_calls is None
    assert reply.usage is not None and reply.usage.total_tokens == 2 * (30 + 8)


def test_a_502_from_the_upstream_mid_continuation_reaches_the_client_and_the_record(paged: Stack):
    history, block = _second_call(paged)
    recall = {"type": "tool_use", "id": "toolu_r", "name": "recall", "input": {"block_id": block}}
    paged.anthropic_up.enqueue(_recall_round([recall]), error_reply(502, "fake bad gateway"))
    with pytest.raises(anthropic.APIStatusError) as caught:
        _ask(paged.anthropic(max_retries=0), history)
    assert caught.value.status_code == 502 and "fake bad gateway" in str(caught.value)
    assert len(paged.anthropic_up.requests) == 3  # the first call, the round, the continuation
    record = paged.records()[-1]
    assert record.status is TraceStatus.ERROR and record.error is not None
    assert record.error.status == 502
    # The recall the proxy answered before the failure is in the record, and what was sent last.
    assert [r["block_id"] for r in record.paging["proxy"]["recalls"]] == [block]
    assert record.prompt_hash == paged.anthropic_up.requests[-1].sha256


def test_an_upstream_that_drops_mid_continuation_is_a_502_in_the_apis_error_format(paged: Stack):
    history, block = _second_call(paged)
    recall = {"type": "tool_use", "id": "toolu_r", "name": "recall", "input": {"block_id": block}}
    paged.anthropic_up.enqueue(_recall_round([recall]), DropConnection())
    with pytest.raises(anthropic.APIStatusError) as caught:
        _ask(paged.anthropic(max_retries=0), history)
    assert caught.value.status_code == 502
    body = caught.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    record = paged.records()[-1]
    assert record.status is TraceStatus.ERROR
    assert paged.proxy.server.status()["paging"]["recalls"] == 1
    # The client's next call goes through: the proxy did not keep a half-answered round.
    paged.anthropic_up.enqueue(text_reply("Row 0-0."))
    assert _ask(paged.anthropic(), history).content[0].text == "Row 0-0."  # type: ignore[union-attr]


def test_usage_is_summed_field_by_field_nested_objects_too():
    first = {"input_tokens": 5, "cache_creation": {"ephemeral_5m_input_tokens": 3},
             "service_tier": "standard"}  # fmt: skip
    last = {"input_tokens": 7, "output_tokens": 2, "service_tier": "priority",
            "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 1}}  # fmt: skip
    assert summed([first, last]) == {
        "input_tokens": 12, "output_tokens": 2, "service_tier": "priority",
        "cache_creation": {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 1},
    }  # fmt: skip
    assert summed([{"prompt_tokens_details": None}, {"prompt_tokens_details": {"cached_tokens": 2}}]) == {
        "prompt_tokens_details": {"cached_tokens": 2}
    }  # fmt: skip


def _body(messages: list[dict[str, Any]]) -> bytes:
    return json.dumps({"model": MODEL, "max_tokens": 8, "tools": tools(),
                       "messages": messages}).encode()  # fmt: skip


@pytest.mark.parametrize("header", [" agent-7", "agent-7\t", "\n agent-7 \r\n"])
def test_a_session_header_with_whitespace_is_the_same_session_to_the_pager(header: str):
    pager = ProxyPager(PageSettings("default"))
    history = anthropic_history()
    first = pager.prepare(Wire.MESSAGES, _body(history), "agent-7")
    assert isinstance(first, PagedCall)
    block = _placeholder_id(first.body)
    first.calls = [ToolCall("toolu_r", "recall", {"block_id": block})]
    pager.finish(first)  # the fault pins the block for the session
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "Row 0?"}]
    again = pager.prepare(Wire.MESSAGES, _body(history), header)
    assert isinstance(again, PagedCall) and again.paged.turn == 2
    assert json.dumps(tool_output(0)).encode() in again.body  # pinned: sent in full


def test_a_session_header_that_is_not_an_id_follows_the_conversation_instead():
    pager = ProxyPager(PageSettings("default"))
    history = anthropic_history()
    first = pager.prepare(Wire.MESSAGES, _body(history), "not a session id!")
    assert isinstance(first, PagedCall) and first.key != "session:not a session id!"
    pager.finish(first)
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "Row 0?"}]
    again = pager.prepare(Wire.MESSAGES, _body(history), None)
    assert isinstance(again, PagedCall) and again.paged.turn == 2  # found by prefix keys


def test_a_streamed_reply_after_recall_rounds_reports_their_usage_summed(paged: Stack):
    history, block = _second_call(paged)
    recall = ("toolu_r", "recall", {"block_id": block})
    paged.anthropic_up.enqueue(stream_reply("Let me look.", tool=recall, usage=(40, 9, 3, 2)),
                               stream_reply("Row 0-0 says 0.", usage=(60, 11, 5, 0)))  # fmt: skip
    with paged.anthropic().messages.stream(model=MODEL, max_tokens=64, tools=tools(),  # type: ignore[arg-type]
                                           messages=history) as stream:  # type: ignore[arg-type]  # fmt: skip
        final = stream.get_final_message()
    # The call cost both rounds: the client's usage is their sum, as for a JSON reply.
    usage = final.usage
    assert (usage.input_tokens, usage.output_tokens) == (40 + 60, 9 + 11)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (3 + 5, 2 + 0)
    rounds = paged.records()[-1].paging["proxy"]["usage"]
    assert [(u["input_tokens"], u["output_tokens"]) for u in rounds] == [(40, 9), (60, 11)]


def test_a_streamed_chat_reply_after_recall_rounds_reports_their_usage_summed(paged: Stack):
    client, history, block = chat_started(paged)
    paged.openai_up.enqueue(
        chat_stream(tool=("call_r", "recall", {"block_id": block}), usage=(30, 8, 4)),
        chat_stream("Row 0-0.", usage=(50, 6, 10)),
    )
    history += [{"role": "assistant", "content": "first"}, {"role": "user", "content": "Row 0?"}]
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=history,  # type: ignore[arg-type]
                                                 tools=_chat_tools(), stream=True,  # type: ignore[arg-type]
                                                 stream_options={"include_usage": True}))  # fmt: skip
    [usage] = [c.usage for c in chunks if c.usage is not None]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (80, 14, 94)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 14


def test_a_stream_without_recall_keeps_its_usage_event_bytes(paged: Stack):
    paged.anthropic_up.enqueue(stream_reply("plain", usage=(12, 3, 0, 0)))
    with paged.anthropic().messages.stream(model=MODEL, max_tokens=64,
                                           messages=anthropic_history()) as stream:  # type: ignore[arg-type]  # fmt: skip
        final = stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 3)
    [record] = paged.records()
    expected = b"".join(stream_reply("plain", usage=(12, 3, 0, 0)).events)
    assert paged.traces.response_bytes(record.call_id) == expected


def test_a_null_in_a_later_round_leaves_the_usage_sum_as_it_was():
    rounds = [{"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 5}},
              {"prompt_tokens": None, "prompt_tokens_details": None}]  # fmt: skip
    assert summed(rounds) == {"prompt_tokens": 3, "prompt_tokens_details": {"cached_tokens": 5}}
    assert summed([{"a": None}, {"a": 2}]) == {"a": 2}
