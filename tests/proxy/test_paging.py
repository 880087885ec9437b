"""``llm386 proxy --page``: any agent's calls demand-paged on the way upstream, over real HTTP.

The official SDKs talk to the proxy; loopback fake upstreams record the raw bytes they get.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from runtime.blocks import BlockKind, ToolResult, content_hash
from runtime.paging.accounting import TokenCounter
from runtime.paging.faults import PagingState
from runtime.paging.presets import preset
from runtime.paging.turn import page_turn
from runtime.providers.streams import stream_payloads
from runtime.proxy.apis import Wire
from runtime.proxy.originals import client_request
from runtime.proxy.pager import PagedCall, PageSettings, ProxyPager
from runtime.proxy.rewrite import entries_of, paged_request, read_sites
from runtime.proxy.streamfilter import sse_split, stream_filter
from runtime.tokenizers import get_tokenizer
from runtime.tracing.records import TraceStatus
from tests.fakes.anthropic_server import (
    Reply,
    StreamReply,
    error_reply,
    sse,
    stream_reply,
    text_reply,
    tool_use_reply,
)
from tests.fakes.openai_server import chat_reply, chat_stream
from tests.proxy.conftest import Stack, start_stack
from tests.proxy.longsession import MODEL, TURNS, anthropic_history, tool_output, tools


def _ask(client: anthropic.Anthropic, messages: list[dict[str, Any]]) -> anthropic.types.Message:
    return client.messages.create(model=MODEL, max_tokens=64, system="You answer from data.",
                                  tools=tools(), messages=messages)  # type: ignore[arg-type]  # fmt: skip


def _tokens(body: bytes) -> int:
    return get_tokenizer("o200k_base").count(body.decode())


def _placeholder_id(body: bytes) -> str:
    text = body.decode()
    start = text.index("[Paged out: block ") + len("[Paged out: block ")
    return text[start : text.index(",", start)]


def test_a_long_session_sends_fewer_tokens_upstream_with_placeholders_and_recall(paged: Stack):
    client = paged.anthropic()
    reply = _ask(client, anthropic_history())
    [sent] = paged.sent.bodies
    [got] = paged.anthropic_up.requests
    assert _tokens(got.body) < 0.6 * _tokens(sent)  # stale results and tool schemas paged out
    upstream = json.loads(got.body)
    assert b"[Paged out: block " in got.body
    assert [t["name"] for t in upstream["tools"]] == ["lookup_orders", "lookup_users", "recall"]
    assert "[stub of block" in upstream["tools"][0]["description"]
    # Recent results and the latest user message stay; old results are placeholders.
    assert upstream["messages"][-1] == {"role": "user", "content": "Now summarise everything."}
    results = [m["content"][0]["content"] for m in upstream["messages"][2::4][:TURNS]]
    assert results[-1] == tool_output(TURNS - 1)
    assert results[0].startswith("[Paged out: block ") and "recall(block_id=" in results[0]
    # The client got the upstream's answer to the paged bytes.
    assert reply.content[0].text.endswith(got.sha256)  # type: ignore[union-attr]


def test_both_versions_are_recorded_and_the_record_hashes_what_the_model_saw(paged: Stack):
    _ask(paged.anthropic(), anthropic_history())
    [sent], [got] = paged.sent.bodies, paged.anthropic_up.requests
    [record] = paged.records()
    assert record.prompt_hash == hashlib.sha256(got.body).hexdigest() == got.sha256
    assert paged.traces.request_bytes(record.prompt_hash) == got.body
    original = record.paging["proxy"]["client_request"]
    assert original == {"sha256": hashlib.sha256(sent).hexdigest(), "bytes": len(sent)}
    assert client_request(paged.store.kv, record.call_id, original["sha256"]) == sent
    assert record.replay_complete and record.status is TraceStatus.OK
    accounting = record.paging["accounting"]
    assert accounting["packed_tokens"] < accounting["full_tokens"]
    reasons = {e["reason"] for e in record.paging["plan"]["evictions"]}
    assert {"stale", "unused-schema"} <= reasons
    # The session's blocks are the client's own: a tool result's block is the full output.
    full = ToolResult("toolu_00", tool_output(0)).body()
    assert paged.store.get(content_hash(BlockKind.TOOL_RESULT, full)).body == full


def test_a_recall_is_answered_by_the_proxy_and_hidden_from_the_client(paged: Stack):
    client = paged.anthropic()
    history = anthropic_history()
    _ask(client, history)
    block = _placeholder_id(paged.anthropic_up.requests[0].body)
    paged.anthropic_up.enqueue(
        tool_use_reply("toolu_recall", "recall", {"block_id": block}, text="Let me look."),
        text_reply("Row 0-0 says 0."),
    )
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "And row 0?"}]
    reply = _ask(client, history)
    assert [c.type for c in reply.content] == ["text", "text"] and reply.stop_reason == "end_turn"
    assert [c.text for c in reply.content] == ["Let me look.", "Row 0-0 says 0."]  # type: ignore[union-attr]
    first, continued = paged.anthropic_up.requests[1:]
    tail = json.loads(continued.body)["messages"][-2:]
    assert tail[0]["content"][-1]["name"] == "recall"
    assert tail[1]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_recall",
                                   "content": tool_output(0)}]  # fmt: skip
    assert continued.body.startswith(first.body[: first.body.index(b'"messages"')])
    record = paged.records()[-1]
    assert record.prompt_hash == continued.sha256  # the bytes the model answered last
    assert record.paging["turn"] == 2 and record.paging["accounting"]["cached_packed"] > 0
    assert record.paging["proxy"]["recalls"][0]["found"] is True
    assert [f["kind"] for f in record.paging["faults"]] == ["recall"]
    assert paged.proxy.server.status()["paging"]["recalls"] == 1
    # The next call sends the recalled block in full: the fault pinned it.
    history += [{"role": "assistant", "content": "Row 0-0 says 0."},
                {"role": "user", "content": "Thanks."}]  # fmt: skip
    _ask(client, history)
    assert json.dumps(tool_output(0)).encode() in paged.anthropic_up.requests[-1].body


def test_a_recall_beside_a_client_tool_call_is_taken_out_of_the_reply(paged: Stack):
    client = paged.anthropic()
    history = anthropic_history()
    _ask(client, history)
    block = _placeholder_id(paged.anthropic_up.requests[0].body)
    content = [{"type": "tool_use", "id": "toolu_r", "name": "recall", "input": {"block_id": block}},
               {"type": "tool_use", "id": "toolu_c", "name": "lookup_users", "input": {}}]  # fmt: skip
    body = {"id": "msg_mixed", "type": "message", "role": "assistant", "model": MODEL,
            "content": content, "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 5}}  # fmt: skip
    paged.anthropic_up.enqueue(Reply(200, json.dumps(body).encode(), ()))
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "Users?"}]
    reply = _ask(client, history)
    assert [(c.type, c.name) for c in reply.content] == [("tool_use", "lookup_users")]  # type: ignore[union-attr]
    assert reply.stop_reason == "tool_use" and len(paged.anthropic_up.requests) == 2


def test_an_upstream_error_in_a_recall_continuation_reaches_the_client_as_its_api_error(
    paged: Stack,
):
    client = paged.anthropic(max_retries=0)
    history = anthropic_history()
    _ask(client, history)
    block = _placeholder_id(paged.anthropic_up.requests[0].body)
    paged.anthropic_up.enqueue(tool_use_reply("toolu_recall", "recall", {"block_id": block}),
                               error_reply(529, "fake overload"))  # fmt: skip
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "Row 0?"}]
    with pytest.raises(anthropic.APIStatusError) as caught:
        _ask(client, history)
    assert caught.value.status_code == 529 and "fake overload" in str(caught.value)
    record = paged.records()[-1]
    assert record.status is TraceStatus.ERROR and record.error is not None
    assert record.error.status == 529


def _chat_history() -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You answer from data."}]
    for n in range(TURNS):
        messages.append({"role": "user", "content": f"Question {n}?"})
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{n}", "type": "function",
             "function": {"name": "lookup_orders", "arguments": json.dumps({"field_0": n})}}]})  # fmt: skip
        messages.append({"role": "tool", "tool_call_id": f"call_{n}", "content": tool_output(n)})
        messages.append({"role": "assistant", "content": f"Answer {n}."})
    messages.append({"role": "user", "content": "Summarise."})
    return messages


def _chat_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t["name"], "description": t["description"],
             "parameters": t["input_schema"]}} for t in tools()]  # fmt: skip


def test_openai_chat_calls_are_paged_and_recall_is_answered(paged: Stack):
    client = paged.openai()

    def ask(messages: list[dict[str, Any]]) -> Any:
        return client.chat.completions.create(model="gpt-4o", messages=messages,  # type: ignore[arg-type]
                                              tools=_chat_tools())  # type: ignore[arg-type]  # fmt: skip

    history = _chat_history()
    paged.openai_up.enqueue(chat_reply("first"))
    ask(history)
    [got] = paged.openai_up.requests
    assert _tokens(got.body) < 0.6 * _tokens(paged.sent.bodies[0])
    assert json.loads(got.body)["tools"][-1]["function"]["name"] == "recall"
    block = _placeholder_id(got.body)
    paged.openai_up.enqueue(chat_reply(tool=("call_recall", "recall", {"block_id": block})),
                            chat_reply("Row 0-0."))  # fmt: skip
    history += [{"role": "assistant", "content": "first"}, {"role": "user", "content": "Row 0?"}]
    reply = ask(history)
    assert reply.choices[0].message.content == "Row 0-0."
    assert reply.choices[0].message.tool_calls is None
    tail = json.loads(paged.openai_up.requests[-1].body)["messages"][-1]
    assert tail == {"role": "tool", "tool_call_id": "call_recall", "content": tool_output(0)}
    record = paged.records()[-1]
    assert record.prompt_hash == paged.openai_up.requests[-1].sha256


def test_a_stream_is_paged_and_a_recall_in_it_is_answered_and_hidden(paged: Stack):
    client = paged.anthropic()
    history = anthropic_history()
    _ask(client, history)
    block = _placeholder_id(paged.anthropic_up.requests[0].body)
    recall_call = ("toolu_recall", "recall", {"block_id": block})
    paged.anthropic_up.enqueue(stream_reply("Let me look.", tool=recall_call),
                               stream_reply("Row 0-0 says 0."))  # fmt: skip
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "Row 0?"}]
    with client.messages.stream(model=MODEL, max_tokens=64, tools=tools(),  # type: ignore[arg-type]
                                messages=history) as stream:  # type: ignore[arg-type]  # fmt: skip
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert [(c.type, c.text) for c in final.content] == [  # type: ignore[union-attr]
        ("text", "Let me look."), ("text", "Row 0-0 says 0.")]  # fmt: skip
    assert final.stop_reason == "end_turn" and "message_stop" in events
    first, continued = paged.anthropic_up.requests[1:]
    assert b"[Paged out: block " in first.body and json.loads(first.body)["stream"] is True
    results = json.loads(continued.body)["messages"][-1]["content"]
    assert results == [{"type": "tool_result", "tool_use_id": "toolu_recall",
                        "content": tool_output(0)}]  # fmt: skip
    record = paged.records()[-1]
    assert record.prompt_hash == continued.sha256 and record.config["proxy"]["stream"] is True
    assert record.response is not None and b"recall" not in paged.traces.response_bytes(
        record.call_id
    )
    assert [c["text"] for c in record.response["content"]] == ["Let me look.", "Row 0-0 says 0."]
    assert len(record.paging["proxy"]["usage"]) == 2  # each round's usage, as it streamed
    assert all(u["output_tokens"] > 0 for u in record.paging["proxy"]["usage"])


def test_a_stream_without_recall_passes_its_events_through_unchanged(paged: Stack):
    paged.anthropic_up.enqueue(stream_reply("plain", tool=("toolu_c", "lookup_users", {})))
    client = paged.anthropic()
    with client.messages.stream(model=MODEL, max_tokens=64, tools=tools(),  # type: ignore[arg-type]
                                messages=anthropic_history()) as stream:  # type: ignore[arg-type]  # fmt: skip
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[1].name == "lookup_users"  # type: ignore[union-attr]
    [record] = paged.records()
    expected = stream_reply("plain", tool=("toolu_c", "lookup_users", {})).events
    assert paged.traces.response_bytes(record.call_id) == b"".join(expected)


def test_a_stream_event_nested_deeper_than_json_parses_passes_through(paged: Stack):
    # The stream filter parsed each event with json.loads and caught only ValueError: an event
    # nested too deep raised RecursionError, paging failed mid-call and the client's stream was
    # cut off with no end (an incomplete chunked body), where an unpaged stream passes it on.
    events = stream_reply("plain").events
    deep = b"event: ping\ndata: " + b"[" * 5000 + b"]" * 5000 + b"\n\n"
    sent = (events[0], deep, *events[1:])
    paged.anthropic_up.enqueue(StreamReply(sent))
    body = json.dumps({"model": MODEL, "max_tokens": 64, "stream": True, "tools": tools(),
                       "messages": anthropic_history()})  # fmt: skip
    reply = httpx2.post(paged.url + "/v1/messages", content=body, headers=HEADERS, timeout=30)
    assert reply.status_code == 200 and reply.content == b"".join(sent)
    [record] = paged.records()
    assert paged.traces.response_bytes(record.call_id) == b"".join(sent)


def test_paging_that_fails_mid_stream_ends_the_stream_with_an_error_event_and_records_it(
    paged: Stack,
):
    # A recall call whose input holds 1e400: json reads it, but the continuation that repeats
    # it cannot be written as JSON, so paging fails after the stream began. The relay tried to
    # answer a 502 on a response already under way, which h11 refused: the client's stream was
    # cut off with no end (an incomplete chunked body) and the record kept no response bytes.
    _ask(paged.anthropic(), anthropic_history())
    block = _placeholder_id(paged.anthropic_up.requests[0].body)
    recall_call = ("toolu_recall", "recall", {"block_id": block, "x": "HUGE"})
    events = tuple(e.replace(b'\\"HUGE\\"', b"1e400") for e in
                   stream_reply("Let me look.", tool=recall_call).events)  # fmt: skip
    assert any(b"1e400" in e for e in events)
    paged.anthropic_up.enqueue(StreamReply(events))
    history = [*anthropic_history(), {"role": "assistant", "content": "ok"},
               {"role": "user", "content": "Row 0?"}]  # fmt: skip
    body = json.dumps({"model": MODEL, "max_tokens": 64, "stream": True, "tools": tools(),
                       "messages": history})  # fmt: skip
    reply = httpx2.post(paged.url + "/v1/messages", content=body, headers=HEADERS, timeout=30)
    assert reply.status_code == 200  # the body is complete: reading it raised before
    last = list(sse_split(bytearray(), reply.content))[-1]
    assert last.startswith(b"event: error") and b"paging failed mid-call" in last
    record = paged.records()[-1]
    assert paged.traces.response_bytes(record.call_id) == reply.content
    assert record.status is TraceStatus.ERROR


def chat_started(paged: Stack) -> tuple[Any, list[dict[str, Any]], str]:
    """Send the long chat session once; return the client, the history and a paged-out block."""
    client = paged.openai()
    history = _chat_history()
    paged.openai_up.enqueue(chat_reply("first"))
    client.chat.completions.create(model="gpt-4o", messages=history, tools=_chat_tools())  # type: ignore[arg-type]
    return client, history, _placeholder_id(paged.openai_up.requests[0].body)


def test_an_openai_stream_hides_recall_and_continues(paged: Stack):
    client, history, block = chat_started(paged)
    paged.openai_up.enqueue(chat_stream(tool=("call_recall", "recall", {"block_id": block})),
                            chat_stream("Row 0-0."))  # fmt: skip
    history += [{"role": "assistant", "content": "first"}, {"role": "user", "content": "Row 0?"}]
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=history,  # type: ignore[arg-type]
                                                 tools=_chat_tools(), stream=True))  # type: ignore[arg-type]  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Row 0-0."
    assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and
            c.choices[0].finish_reason] == ["stop"]  # fmt: skip
    tail = json.loads(paged.openai_up.requests[-1].body)["messages"][-1]
    assert tail == {"role": "tool", "tool_call_id": "call_recall", "content": tool_output(0)}


def test_an_upstream_error_in_a_streamed_continuation_is_an_error_event(paged: Stack):
    client = paged.anthropic(max_retries=0)
    history = anthropic_history()
    _ask(client, history)
    block = _placeholder_id(paged.anthropic_up.requests[0].body)
    paged.anthropic_up.enqueue(stream_reply(tool=("toolu_r", "recall", {"block_id": block})),
                               error_reply(500, "fake failure"))  # fmt: skip
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "Row 0?"}]
    request = {"model": MODEL, "max_tokens": 64, "tools": tools(), "messages": history}
    with (
        pytest.raises(anthropic.APIError, match="fake failure"),
        client.messages.stream(**request) as stream,  # type: ignore[arg-type]
    ):
        stream.get_final_message()
    record = paged.records()[-1]
    assert record.status is TraceStatus.ERROR


def test_a_client_tool_named_recall_turns_paging_off_for_that_call(paged: Stack):
    own = [
        *tools(),
        {"name": "recall", "description": "mine", "input_schema": {"type": "object"}},
    ]
    paged.anthropic().messages.create(model=MODEL, max_tokens=8, tools=own,  # type: ignore[arg-type]
                                      messages=anthropic_history())  # type: ignore[arg-type]  # fmt: skip
    assert paged.anthropic_up.requests[0].body == paged.sent.bodies[0]
    assert "recall" in paged.records()[0].paging["proxy"]["skipped"]


def _events(pieces: list[bytes]) -> list[Any]:
    return [data for _, data in stream_payloads(b"".join(pieces))]


def test_a_recall_between_a_streams_blocks_is_dropped_and_later_blocks_renumbered():

    def block(i: int, content: dict[str, Any]) -> list[bytes]:
        return [sse("content_block_start", {"type": "content_block_start", "index": i,
                                            "content_block": content}),
                sse("content_block_stop", {"type": "content_block_stop", "index": i})]  # fmt: skip

    raw = b"".join([
        sse("message_start", {"type": "message_start", "message": {"content": []}}),
        *block(0, {"type": "text", "text": "a"}),
        *block(1, {"type": "tool_use", "id": "r", "name": "recall", "input": {}}),
        *block(2, {"type": "tool_use", "id": "c", "name": "lookup_users", "input": {}}),
        sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}}),
        sse("message_stop", {"type": "message_stop"}),
    ])  # fmt: skip
    filt, out, buffer = stream_filter(Wire.MESSAGES), [], bytearray()
    for i in range(0, len(raw), 7):  # chunks that split events anywhere
        for event in sse_split(buffer, raw[i : i + 7]):
            out += filt.event(event)
    assert not filt.recalled_only
    events = _events(out + filt.tail())
    starts = [(e["index"], e["content_block"].get("name")) for e in events
              if e["type"] == "content_block_start"]  # fmt: skip
    assert starts == [(0, None), (1, "lookup_users")]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_a_recall_first_in_a_chat_stream_leaves_the_clients_call_at_index_0():
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        data = {"id": "x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    call = lambda i, name: {"index": i, "id": f"c{i}", "type": "function",  # noqa: E731
                            "function": {"name": name, "arguments": "{}"}}  # fmt: skip
    raw = [chunk({"tool_calls": [call(0, "recall"), call(1, "lookup_users")]}),
           chunk({"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]}),
           chunk({}, "tool_calls"), b"data: [DONE]\n\n"]  # fmt: skip
    filt, out, buffer = stream_filter(Wire.CHAT), [], bytearray()
    for piece in raw:
        for event in sse_split(buffer, piece):
            out += filt.event(event)
    events = _events(out + filt.tail())
    assert [c["function"]["name"] for c in events[0]["choices"][0]["delta"]["tool_calls"]] == [
        "lookup_users"
    ]
    assert events[0]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert len(events) == 2 and events[1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_named_sessions_faults_are_saved_and_pin_after_a_restart(paged: Stack):
    client = paged.anthropic(default_headers={"x-llm386-session": "agent-7"})
    history = anthropic_history()
    _ask(client, history)
    block = _placeholder_id(paged.anthropic_up.requests[0].body)
    paged.anthropic_up.enqueue(tool_use_reply("toolu_r", "recall", {"block_id": block}),
                               text_reply("Row 0-0."))  # fmt: skip
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "Row 0?"}]
    _ask(client, history)
    paged.records()  # written, with the session's paging state
    faults = paged.store.session_info("agent-7").meta["paging"]["faults"]
    assert [(f["kind"], f["block_id"][:12]) for f in faults] == [("recall", block)]
    # A proxy started afresh on the same store reads the state back: the block stays in full.
    history += [{"role": "assistant", "content": "Row 0-0."}, {"role": "user", "content": "Ok."}]
    body = json.dumps({"model": MODEL, "max_tokens": 8, "tools": tools(), "messages": history})
    fresh = ProxyPager(PageSettings("default"), paged.store)
    call = fresh.prepare(Wire.MESSAGES, body.encode(), "agent-7")
    assert isinstance(call, PagedCall) and block not in call.body.decode()
    assert json.dumps(tool_output(0)).encode() in call.body
    forgetful = ProxyPager(PageSettings("default"), None).prepare(
        Wire.MESSAGES, body.encode(), None
    )
    assert isinstance(forgetful, PagedCall) and block in forgetful.body.decode()


def test_paging_a_request_never_writes_to_the_clients_json():
    data = {"model": MODEL, "tools": tools(), "messages": anthropic_history()}
    before = copy.deepcopy(data)
    sites = read_sites(Wire.MESSAGES, data)
    count = TokenCounter(get_tokenizer("o200k_base"))
    paged = page_turn(entries_of(sites), preset("default"), PagingState(), count, turn=1)
    out = paged_request(Wire.MESSAGES, data, sites, paged.plan)
    assert data == before and out != data
    assert len(out["messages"]) == len(data["messages"]) and out["tools"][-1]["name"] == "recall"


def test_a_malformed_tool_call_is_paged_and_recorded_without_failing(paged: Stack):
    body = {"model": "gpt-4o", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": "bad"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
        {"role": "user", "content": "again"}]}  # fmt: skip
    reply = httpx2.post(paged.url + "/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200
    [record] = paged.records()
    assert paged.recorder.status()["lost"] == 0 and "skipped" not in record.paging["proxy"]


NAN_TOOL = (b'{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":"user","content":"hi"}],'
            b'"tools":[{"name":"t","input_schema":{"type":"object","default":NaN}}]}')  # fmt: skip
HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01"}


def test_a_request_paging_cannot_read_is_forwarded_unpaged_when_failing_open(paged: Stack):
    reply = httpx2.post(paged.url + "/v1/messages", content=NAN_TOOL, headers=HEADERS, timeout=30)
    assert reply.status_code == 200
    assert paged.anthropic_up.requests[0].body == NAN_TOOL
    assert paged.proxy.server.status()["paging"]["unpaged"] == 1


_HI = b'"messages":[{"role":"user","content":"hi"}]'
UNREADABLE = {
    "nan-in-a-tool-schema": NAN_TOOL,
    "lone-surrogate": b'{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":"user",'
                      b'"content":"\\ud800"}]}',
    "1e400-in-a-tool-input": b'{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":'
                             b'"assistant","content":[{"type":"tool_use","id":"t1","name":"c",'
                             b'"input":{"x":1e400}}]},{"role":"user","content":"go"}]}',
    "deep-nesting": b'{"model":"claude-sonnet-4-6","max_tokens":8,"system":[{"type":"text",'
                    b'"text":"s","x":' + b"[" * 5000 + b"]" * 5000 + b"}]," + _HI + b"}",
}  # fmt: skip


@pytest.mark.parametrize("body", list(UNREADABLE.values()), ids=list(UNREADABLE))
def test_a_request_paging_cannot_read_is_refused_when_failing_closed(tmp_path: Path, body: bytes):
    for stack in start_stack(tmp_path / "store", page=PageSettings(), fail_closed=True):
        reply = httpx2.post(stack.url + "/v1/messages", content=body, headers=HEADERS,
                            timeout=30)  # fmt: skip
        assert reply.status_code == 502 and reply.json()["type"] == "error"
        message = reply.json()["error"]["message"]
        # What was wrong with the request, not a call to report a bug in the proxy.
        assert "paging failed" in message and "cannot be paged" in message, message
        assert "no canonical JSON" in message and "report it as a bug" not in message
        assert stack.anthropic_up.requests == []


def test_a_page_budget_pages_out_under_pressure_to_fit(tmp_path: Path):
    for stack in start_stack(tmp_path / "store", page=PageSettings("default", 1200)):
        _ask(stack.anthropic(), anthropic_history())
        [record] = stack.records()
        accounting = record.paging["accounting"]
        reasons = [e["reason"] for e in record.paging["plan"]["evictions"]]
        assert "pressure" in reasons and accounting["packed_tokens"] <= 1200
        assert json.loads(stack.anthropic_up.requests[0].body)["messages"][-1]["content"] == (
            "Now summarise everything."
        )


def test_a_budget_nothing_fits_sends_the_smallest_request_flagged_not_an_unpaged_one(
    tmp_path: Path,
):
    for stack in start_stack(tmp_path / "store", page=PageSettings("default", 300)):
        _ask(stack.anthropic(), anthropic_history())
        [record] = stack.records()
        sent = stack.anthropic_up.requests[0].body
    assert record.paging["proxy"]["note"].startswith("over budget even with everything")
    # Every evictable block went out as its tight line (the smallest plan), not the request
    # as it would be with no budget at all.
    assert b'; recall(block_id=\\"' in sent and b"if you need it." not in sent
    assert record.paging["accounting"]["packed_tokens"] > 300
    reasons = {e["reason"] for e in record.paging["plan"]["evictions"]}
    assert "pressure" in reasons


def test_the_cache_aware_preset_keeps_the_prefix_byte_stable_under_a_budget(tmp_path: Path):
    # An agent that resends its growing history each call, with prompt caching in mind: the
    # system and tools must reach the upstream as the same bytes every call, every request
    # must fit the budget, and a call only rewrites what came before when a batch is evicted.
    for stack in start_stack(tmp_path / "store", page=PageSettings("cache-aware", budget=3000)):
        client = stack.anthropic()
        for turns in range(2, TURNS + 1):
            _ask(client, anthropic_history(turns))
        bodies = [json.loads(r.body) for r in stack.anthropic_up.requests]
        records = stack.records()
    assert len(bodies) == TURNS - 1
    assert len({json.dumps([b["system"], b["tools"]]) for b in bodies}) == 1
    assert all(r.paging["accounting"]["packed_tokens"] <= 3000 for r in records)
    kept = sum(1 for a, b in zip(bodies, bodies[1:], strict=False)
               if b["messages"][: len(a["messages"]) - 1] == a["messages"][:-1])  # fmt: skip
    assert kept >= len(bodies) // 2  # most calls extend the previous one's cached messages
    assert any(b"[Paged out: block " in r.body for r in stack.anthropic_up.requests)


@pytest.mark.parametrize("odd", [rb'"metadata":{"user_id":"\ud800"},', b'"temperature":1e999,'],
                         ids=["lone-surrogate", "huge-number"])  # fmt: skip
def test_a_request_json_cannot_carry_again_is_forwarded_unpaged_and_recorded(paged: Stack, odd):
    # json.loads reads both; neither can be written back as JSON, so the client's own bytes go.
    body = b'{"model":"claude-sonnet-4-6","max_tokens":8,' + odd + b'"messages":[{"role":"user","content":"hi"}]}'  # fmt: skip
    reply = httpx2.post(paged.url + "/v1/messages", content=body, headers=HEADERS, timeout=30)
    assert reply.status_code == 200
    assert paged.anthropic_up.requests[0].body == body
    [record] = paged.records()
    assert "cannot be written back as JSON" in record.paging["proxy"]["skipped"]


def test_a_chat_call_asking_for_several_choices_is_forwarded_unpaged(paged: Stack):
    paged.openai_up.enqueue(chat_reply())
    messages = [{"role": "user", "content": "hi"}]
    paged.openai(max_retries=0).chat.completions.create(model="gpt-4o", messages=messages, n=2)  # type: ignore[arg-type]
    assert paged.openai_up.requests[0].body == paged.sent.bodies[0]
    assert "n=2" in paged.records()[0].paging["proxy"]["skipped"]


def test_events_split_anywhere_with_crlf_come_out_whole_and_unchanged():
    events = [
        b'event: message_start\r\ndata: {"type":"message_start"}\r\n\r\n',
        b'event: ping\r\ndata: {"type":"ping"}\r\n\r\n',
        b'data: {"a":1}\n\n',
        b'data: {"b":2}\r\r',
    ]
    raw = b"".join(events)
    for cut in range(1, len(raw)):  # every two-chunk split, the \r\n\r | \n split included
        buffer, out = bytearray(), []
        for piece in (raw[:cut], raw[cut:]):
            out += list(sse_split(buffer, piece))
        out += [bytes(buffer)] if buffer else []  # the relay flushes what is left at the end
        assert out == events, cut


def test_a_model_that_only_ever_recalls_gets_a_said_answer_not_an_empty_block():
    from runtime.proxy.recall import NO_ANSWER, without_recall

    reply = {"role": "assistant", "stop_reason": "tool_use", "content": [
        {"type": "tool_use", "id": "r1", "name": "recall", "input": {"block_id": "x"}}]}  # fmt: skip
    out = without_recall(Wire.MESSAGES, reply)
    assert (
        out["content"] == [{"type": "text", "text": NO_ANSWER}] and out["stop_reason"] == "end_turn"
    )
    chat = {"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
            "tool_calls": [{"id": "r", "type": "function", "function": {"name": "recall", "arguments": "{}"}}]}}]}  # fmt: skip
    message = without_recall(Wire.CHAT, chat)["choices"][0]
    assert message["message"]["content"] == NO_ANSWER and message["finish_reason"] == "stop"


def test_a_recall_of_a_lone_surrogate_id_is_recorded_and_fail_closed_keeps_serving(
    tmp_path: Path,
):
    # The recall's block id went into the record's paging.proxy.recalls as the model gave it;
    # a lone surrogate there has no canonical JSON, so the store refused the record: lost,
    # recording down, and a --fail-closed proxy refused every later call with 503 for good.
    for stack in start_stack(tmp_path / "store", page=PageSettings(), fail_closed=True):
        _ask(stack.anthropic(), anthropic_history())
        odd = tool_use_reply("toolu_recall", "recall", {"block_id": "ODD"})
        stack.anthropic_up.enqueue(Reply(odd.status, odd.body.replace(b'"ODD"', b'"\\ud800"')))
        history = [*anthropic_history(), {"role": "assistant", "content": "ok"},
                   {"role": "user", "content": "Row 0?"}]  # fmt: skip
        body = json.dumps({"model": MODEL, "max_tokens": 64, "tools": tools(), "messages": history})
        reply = httpx2.post(stack.url + "/v1/messages", content=body, headers=HEADERS, timeout=30)
        # The continuation repeats the call, which JSON cannot write: the call fails, said so.
        assert reply.status_code == 502 and "paging failed" in reply.json()["error"]["message"]
        assert stack.recorder.flush(10)
        _ask(stack.anthropic(max_retries=0), anthropic_history())  # not refused: recording is up
        records = stack.records()
        assert len(records) == 3 and stack.recorder.lost == 0
        assert records[1].paging["proxy"]["recalls"][0]["block_id"] == "\\ud800"
