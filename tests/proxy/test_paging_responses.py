"""``llm386 proxy --page`` on the OpenAI Responses API, through the official SDK over real HTTP.

A long Responses conversation (messages, function calls and their outputs in ``input``) is paged
as the Messages and Chat ones are: stale outputs become placeholders, unused tools stubs, and
the ``recall`` function tool is added; the model's recall calls are answered by the proxy and
taken out of what the client gets, JSON or streamed.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import openai
import pytest

from runtime.paging.placeholders import RECALL_TOOL_NAME
from runtime.proxy.apis import Wire
from runtime.proxy.pager import PagedCall, PageSettings, ProxyPager
from runtime.proxy.recall import continued, tool_calls, without_recall
from runtime.proxy.rewrite import Slot, read_sites
from runtime.proxy.streamfilter import sse_split, stream_filter
from runtime.tracing.records import TraceStatus
from tests.fakes.anthropic_server import Reply
from tests.fakes.openai_server import response_reply, response_stream
from tests.proxy.conftest import Stack
from tests.proxy.longsession import TURNS, tool_output, tools
from tests.proxy.test_paging import _placeholder_id, _tokens

MODEL = "gpt-4o"


def responses_tools(strict: bool = False) -> list[dict[str, Any]]:
    return [{"type": "function", "name": t["name"], "description": t["description"],
             "parameters": t["input_schema"], "strict": strict} for t in tools()]  # fmt: skip


def responses_history() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for n in range(TURNS):
        items.append({"role": "user", "content": f"Question {n}?"})
        items.append({"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}",
                      "name": "lookup_orders", "arguments": json.dumps({"field_0": n})})  # fmt: skip
        items.append({"type": "function_call_output", "call_id": f"call_{n}",
                      "output": tool_output(n)})  # fmt: skip
        items.append({"type": "message", "id": f"msg_{n}", "status": "completed",
                      "role": "assistant",
                      "content": [{"type": "output_text", "text": f"Answer {n}.",
                                   "annotations": []}]})  # fmt: skip
    items.append({"role": "user", "content": "Summarise."})
    return items


def _ask(paged: Stack, items: list[dict[str, Any]], **more: Any) -> Any:
    client = paged.openai(max_retries=0)
    return client.responses.create(model=MODEL, instructions="You answer from data.",
                                   tools=responses_tools(), input=items, **more)  # type: ignore[arg-type]  # fmt: skip


def _started(paged: Stack) -> tuple[list[dict[str, Any]], str]:
    """Send the long conversation once; return it with a next question, and a paged-out id."""
    items = responses_history()
    paged.openai_up.enqueue(response_reply("first"))
    _ask(paged, items)
    block = _placeholder_id(paged.openai_up.requests[0].body)
    items += [{"role": "assistant", "content": "first"}, {"role": "user", "content": "Row 0?"}]
    return items, block


def test_a_long_responses_call_goes_upstream_paged_with_the_recall_tool(paged: Stack):
    items = responses_history()
    paged.openai_up.enqueue(response_reply("first"))
    _ask(paged, items)
    [got] = paged.openai_up.requests
    assert _tokens(got.body) < 0.6 * _tokens(paged.sent.bodies[0])
    sent = json.loads(got.body)
    assert sent["tools"][-1] == {
        "type": "function", "name": RECALL_TOOL_NAME, "description": sent["tools"][-1]["description"],
        "parameters": sent["tools"][-1]["parameters"], "strict": False,
    }  # fmt: skip
    outputs = [i for i in sent["input"] if i.get("type") == "function_call_output"]
    assert any(o["output"].startswith("[Paged out: block ") for o in outputs)
    assert all(set(o) == {"type", "call_id", "output"} for o in outputs)  # only the output changed
    # The client's own items keep their ids and order; the function calls are sent as they were.
    assert [i.get("call_id") or i.get("id") for i in sent["input"]] == [
        i.get("call_id") or i.get("id") for i in items
    ]
    assert [i for i in sent["input"] if i.get("type") == "function_call"] == [
        i for i in items if i.get("type") == "function_call"
    ]
    record = paged.records()[-1]
    assert record.prompt_hash == got.sha256
    # A placeholder names the block the recorder stored for that output: its page opens.
    block = paged.store.get(paged.store.resolve(_placeholder_id(got.body)))
    assert block.body == json.dumps(
        {"content": tool_output(0), "is_error": False, "tool_use_id": "call_0"},
        ensure_ascii=False, separators=(",", ":"), sort_keys=True,
    )  # fmt: skip
    assert record.paging["proxy"]["client_request"]["bytes"] == len(paged.sent.bodies[0])


def test_a_recall_in_a_responses_reply_is_answered_and_hidden(paged: Stack):
    items, block = _started(paged)
    paged.openai_up.enqueue(
        response_reply("Checking.", tool=("call_recall", RECALL_TOOL_NAME, {"block_id": block})),
        response_reply("Row 0-0."),
    )
    reply = _ask(paged, items)
    assert [o.type for o in reply.output] == ["message", "message"]
    assert reply.output_text == "Checking.Row 0-0."
    assert reply.usage is not None and reply.usage.total_tokens == 2 * (30 + 8)
    tail = json.loads(paged.openai_up.requests[-1].body)["input"][-2:]
    assert tail[0]["type"] == "function_call" and tail[0]["call_id"] == "call_recall"
    assert tail[1] == {"type": "function_call_output", "call_id": "call_recall",
                       "output": tool_output(0)}  # fmt: skip
    record = paged.records()[-1]
    assert record.prompt_hash == paged.openai_up.requests[-1].sha256
    assert [r["block_id"] for r in record.paging["proxy"]["recalls"]] == [block]
    assert record.response is not None and RECALL_TOOL_NAME not in json.dumps(record.response)


def test_a_streamed_responses_call_hides_recall_and_continues_in_the_same_stream(paged: Stack):
    items, block = _started(paged)
    paged.openai_up.enqueue(
        response_stream(
            "Let me look.", tool=("call_recall", RECALL_TOOL_NAME, {"block_id": block})
        ),
        response_stream("Row 0-0 says 0.", usage=(50, 6, 0)),
    )
    events = list(_ask(paged, items, stream=True))
    kinds = [e.type for e in events]
    assert kinds.count("response.created") == 1 and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert [i.type for i in added] == ["message", "message"]
    assert [e.output_index for e in events if e.type == "response.output_item.added"] == [0, 1]
    assert not any("recall" in json.dumps(e.model_dump(mode="json")) for e in events)
    final = events[-1].response
    assert [o.content[0].text for o in final.output] == ["Let me look.", "Row 0-0 says 0."]  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.input_tokens == 30 + 50
    assert final.usage.output_tokens == 8 + 6
    continued_body = json.loads(paged.openai_up.requests[-1].body)
    assert continued_body["input"][-1] == {"type": "function_call_output",
                                           "call_id": "call_recall", "output": tool_output(0)}  # fmt: skip
    record = paged.records()[-1]
    assert record.status is TraceStatus.OK
    assert record.prompt_hash == paged.openai_up.requests[-1].sha256
    assert len(record.paging["proxy"]["usage"]) == 2


def test_a_responses_stream_without_recall_passes_its_bytes_unchanged(paged: Stack):
    reply = response_stream("plain", tool=("call_c", "lookup_users", {}))
    paged.openai_up.enqueue(reply)
    events = list(_ask(paged, responses_history(), stream=True))
    assert events[-1].response.output[-1].name == "lookup_users"  # type: ignore[union-attr]
    [record] = paged.records()
    assert paged.traces.response_bytes(record.call_id) == b"".join(reply.events)


def test_a_call_continuing_a_stored_response_is_forwarded_unpaged_and_says_why(paged: Stack):
    paged.openai_up.enqueue(response_reply("ok"))
    _ask(paged, responses_history(), previous_response_id="resp_earlier")
    [got] = paged.openai_up.requests
    assert got.body == paged.sent.bodies[0]  # the client's bytes, untouched
    [record] = paged.records()
    assert "previous_response_id" in record.paging["proxy"]["skipped"]


def test_paging_a_responses_request_never_writes_to_the_clients_json():
    data = {"model": MODEL, "instructions": "Answer.", "tools": responses_tools(strict=True),
            "input": responses_history()}  # fmt: skip
    before = copy.deepcopy(data)
    call = ProxyPager(PageSettings("default", budget=2_000)).prepare(
        Wire.RESPONSES, json.dumps(data).encode(), None
    )
    assert isinstance(call, PagedCall)
    assert data == before
    stubbed = [t for t in call.upstream["tools"] if "[stub of block" in t.get("description", "")]
    assert stubbed and all(t["strict"] is False for t in stubbed)  # a stub cannot be strict
    for item in call.upstream["input"]:
        if item.get("type") == "message" and isinstance(item["content"], list):
            assert [p["type"] for p in item["content"]] == ["output_text"]


def test_responses_sites_read_as_the_recorder_reads_them():
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"},
                                     {"type": "input_image", "image_url": "data:,"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "user", "content": "Plain"},
    ]  # fmt: skip
    sites = read_sites(Wire.RESPONSES, {"instructions": "Sys", "input": items})
    assert [(s.kind.value, s.slot) for s in sites] == [
        ("system", Slot.FIXED), ("user-message", Slot.FIXED), ("assistant-message", Slot.FIXED),
        ("user-message", Slot.CONTENT),
    ]  # fmt: skip
    assert read_sites(Wire.RESPONSES, {"input": "Just text"})[0].slot is Slot.FIXED


def test_responses_recall_helpers_keep_the_clients_calls():
    reply = json.loads(
        response_reply("x", tool=("call_r", RECALL_TOOL_NAME, {"block_id": "b"})).body
    )
    [call] = tool_calls(Wire.RESPONSES, reply)
    assert (call.call_id, call.name, call.input) == ("call_r", RECALL_TOOL_NAME, {"block_id": "b"})
    assert [o["type"] for o in without_recall(Wire.RESPONSES, reply)["output"]] == ["message"]
    only = json.loads(response_reply("", tool=("call_r", RECALL_TOOL_NAME, {})).body)
    left = without_recall(Wire.RESPONSES, only)["output"]
    assert left[0]["type"] == "message" and "gave no answer" in left[0]["content"][0]["text"]
    request = {"model": MODEL, "input": "Hello"}
    grown = continued(Wire.RESPONSES, request, reply, [])
    assert grown["input"][0] == {"role": "user", "content": "Hello"} and request["input"] == "Hello"


@pytest.mark.parametrize("recall_first", [True, False])
def test_a_recall_beside_a_client_call_in_a_responses_stream_is_dropped_and_renumbered(
    recall_first: bool,
):
    recall_item = {"type": "function_call", "id": "fc_r", "call_id": "call_r",
                   "name": RECALL_TOOL_NAME, "arguments": "{}", "status": "completed"}  # fmt: skip
    mine = {**recall_item, "id": "fc_c", "call_id": "call_c", "name": "lookup_users"}
    order = [recall_item, mine] if recall_first else [mine, recall_item]
    events = [{"type": "response.created", "response": {"id": "r", "output": []}}]
    for index, item in enumerate(order):
        events += [
            {"type": "response.output_item.added", "output_index": index, "item": item},
            {"type": "response.function_call_arguments.delta", "output_index": index,
             "item_id": item["id"], "delta": "{}"},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]  # fmt: skip
    events.append({"type": "response.completed", "response": {"id": "r", "output": order}})
    raw = b"".join(
        f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': n})}\n\n".encode()
        for n, e in enumerate(events)
    )
    filt = stream_filter(Wire.RESPONSES)
    out = [piece for event in sse_split(bytearray(), raw) for piece in filt.event(event)]
    assert not filt.recalled_only  # a client call is left: the proxy does not continue
    out += filt.tail()
    got = [json.loads(piece.split(b"data: ", 1)[1]) for piece in out]
    assert [g["sequence_number"] for g in got] == list(range(len(got)))
    assert {g.get("output_index") for g in got if "output_index" in g} == {0}
    assert got[-1]["response"]["output"] == [mine]
    assert RECALL_TOOL_NAME.encode() not in b"".join(out)


def test_a_reply_that_is_not_an_object_of_outputs_has_no_calls():
    assert tool_calls(Wire.RESPONSES, {"output": "nonsense"}) == []
    assert tool_calls(Wire.RESPONSES, {"output": [1, None, {"type": "message"}]}) == []
    failed = {"status": "failed", "error": {"message": "x"}, "output": []}
    assert without_recall(Wire.RESPONSES, failed) == failed  # no recall taken out: as it came


def test_an_error_reply_in_a_responses_continuation_reaches_the_client(paged: Stack):
    items, block = _started(paged)
    failing = Reply(500, json.dumps({"error": {"message": "fake failure", "type": "server_error",
                                               "param": None, "code": None}}).encode(), ())  # fmt: skip
    paged.openai_up.enqueue(
        response_reply("", tool=("call_r", RECALL_TOOL_NAME, {"block_id": block})), failing
    )
    with pytest.raises(openai.APIStatusError) as caught:
        _ask(paged, items)
    assert caught.value.status_code == 500 and "fake failure" in str(caught.value)
    assert paged.records()[-1].status is TraceStatus.ERROR
