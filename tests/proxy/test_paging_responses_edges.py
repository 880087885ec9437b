"""Responses API paging at its edges: stubs never strict, a client call of another kind beside
recall (the proxy must not continue), and the reasoning item that led only to a hidden recall
call (OpenAI refuses it without its following item, so the client must not get it)."""

from __future__ import annotations

import copy
import json
from typing import Any

from runtime.paging.placeholders import RECALL_TOOL_NAME
from runtime.proxy.apis import Wire
from runtime.proxy.pager import PagedCall, PageSettings, ProxyPager
from runtime.proxy.streamfilter import sse_split, stream_filter
from tests.fakes.anthropic_server import Reply
from tests.fakes.openai_server import response_reply
from tests.proxy.conftest import Stack
from tests.proxy.test_paging_responses import (
    MODEL,
    _ask,
    _started,
    responses_history,
    responses_tools,
)

CUSTOM = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_custom",
          "name": "run_code", "input": "print(1)", "status": "completed"}  # fmt: skip
RECALL = {"type": "function_call", "id": "fc_r", "call_id": "call_r", "name": RECALL_TOOL_NAME,
          "arguments": "{}", "status": "completed"}  # fmt: skip


def test_a_stub_of_a_tool_with_no_strict_key_is_sent_not_strict():
    # Responses function tools default to strict validation when "strict" is left out; a stub's
    # schema cannot pass it (docs/proxy.md: an unused tool becomes its stub with strict false).
    tools = [{k: v for k, v in t.items() if k != "strict"} for t in responses_tools()]
    data = {"model": MODEL, "tools": tools, "input": responses_history()}
    call = ProxyPager(PageSettings("default", budget=2_000)).prepare(
        Wire.RESPONSES, json.dumps(data).encode(), None
    )
    assert isinstance(call, PagedCall)
    stubbed = [t for t in call.upstream["tools"] if "[stub of block" in t.get("description", "")]
    assert stubbed and all(t.get("strict") is False for t in stubbed)


def test_a_recall_beside_a_custom_tool_call_is_not_continued_json(paged: Stack):
    # A custom tool's call is the client's to run, as a function call is: the proxy must hand
    # the reply back (recall taken out), not answer only the recall and continue without it.
    items, block = _started(paged)
    body = json.loads(response_reply("x").body)
    body["output"] = [copy.deepcopy(CUSTOM),
                      {**RECALL, "arguments": json.dumps({"block_id": block})}]  # fmt: skip
    paged.openai_up.enqueue(
        Reply(200, json.dumps(body).encode(), (("content-type", "application/json"),)),
        response_reply("should not be asked for"),
    )
    reply = _ask(paged, items)
    assert len(paged.openai_up.requests) == 2  # no continuation
    assert [o.type for o in reply.output] == ["custom_tool_call"]


def _raw(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': n})}\n\n".encode()
        for n, e in enumerate(events)
    )


def test_a_recall_beside_a_custom_tool_call_is_not_continued_stream():
    order = [CUSTOM, RECALL]
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": "r", "output": []}}
    ]
    for index, item in enumerate(order):
        events += [{"type": "response.output_item.added", "output_index": index, "item": item},
                   {"type": "response.output_item.done", "output_index": index, "item": item}]  # fmt: skip
    events.append({"type": "response.completed", "response": {"id": "r", "output": order}})
    filt = stream_filter(Wire.RESPONSES)
    for event in sse_split(bytearray(), _raw(events)):
        filt.event(event)
    assert not filt.recalled_only


def test_a_reasoning_item_the_hidden_recall_followed_does_not_reach_the_client(paged: Stack):
    # OpenAI refuses an input whose reasoning item is not followed by the item it produced
    # ("Item 'rs_..' of type 'reasoning' was provided without its required following item"):
    # the client sends back what it got, so a reasoning item whose following item was a recall
    # call the proxy took out must not be in the reply either.
    items, block = _started(paged)
    body = json.loads(response_reply("x").body)
    body["output"] = [{"type": "reasoning", "id": "rs_1", "summary": []},
                      {**RECALL, "arguments": json.dumps({"block_id": block})}]  # fmt: skip
    paged.openai_up.enqueue(
        Reply(200, json.dumps(body).encode(), (("content-type", "application/json"),)),
        response_reply("Row 0-0."),
    )
    reply = _ask(paged, items)
    assert "rs_1" not in [getattr(o, "id", None) for o in reply.output]


def test_a_reasoning_item_that_also_led_to_a_client_call_is_kept():
    from runtime.proxy.recall import without_orphans

    rs = {"type": "reasoning", "id": "rs_1", "summary": []}
    recall = {"type": "function_call", "name": RECALL_TOOL_NAME, "call_id": "r", "arguments": "{}"}
    mine = {"type": "function_call", "name": "lookup", "call_id": "c", "arguments": "{}"}
    assert without_orphans([rs, recall, mine]) == [rs, recall, mine]
    assert without_orphans([rs, recall]) == [recall]  # the recall call goes next, in without_recall
    assert without_orphans([rs, recall, {**rs, "id": "rs_2"}, mine]) == [
        recall,
        {**rs, "id": "rs_2"},
        mine,
    ]
    assert without_orphans([rs]) == [rs]  # nothing after it: not the proxy's to judge


def test_a_streams_closing_response_leaves_out_the_reasoning_a_hidden_recall_followed():
    rs = {"type": "reasoning", "id": "rs_1", "summary": []}
    recall = {"type": "function_call", "id": "fc_r", "call_id": "r", "name": RECALL_TOOL_NAME,
              "arguments": "{}", "status": "completed"}  # fmt: skip
    events = [{"type": "response.created", "response": {"id": "r1", "output": []}}]
    for index, item in enumerate([rs, recall]):
        events += [{"type": "response.output_item.added", "output_index": index, "item": item},
                   {"type": "response.output_item.done", "output_index": index, "item": item}]  # fmt: skip
    events.append({"type": "response.completed", "response": {"id": "r1", "output": [rs, recall]}})
    raw = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    first = stream_filter(Wire.RESPONSES)
    for event in sse_split(bytearray(), raw):
        first.event(event)
    assert first.recalled_only
    second = first.next_round()
    message = {"type": "message", "id": "m", "role": "assistant",
               "content": [{"type": "output_text", "text": "Row 0-0.", "annotations": []}]}  # fmt: skip
    done = {"type": "response.completed", "response": {"id": "r2", "output": [message]}}
    for event in sse_split(bytearray(), f"data: {json.dumps(done)}\n\n".encode()):
        second.event(event)
    [closing] = second.tail()
    assert json.loads(closing.split(b"data: ", 1)[1])["response"]["output"] == [message]
