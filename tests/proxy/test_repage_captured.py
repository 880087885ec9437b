"""A captured Chat Completions turn re-pages for its own provider: the official openai SDK sends
a tool-using conversation through the proxy; the re-page is a Chat Completions request that keeps
the agent's settings, recorded with the hash of its exact bytes, and its replay through the
OpenAI provider's client reaches the loopback upstream as those bytes. A captured Responses turn
re-pages as a Responses API request, and replays to ``/v1/responses``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from runtime.providers import get_provider
from runtime.replay.repage import repage
from runtime.replay.resend import derived_kind, replay
from runtime.tracing.records import Provider
from tests.fakes.openai_server import chat_reply, response_reply
from tests.proxy.conftest import API_KEY, Stack

# One conversation, sent in each API's wire format: the same tool and the same two questions.
GET_USER = {"name": "get_user", "description": "Look a user up.",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}  # fmt: skip
ASK = {"role": "user", "content": "Who is mia?"}
FOLLOW_UP = {"role": "user", "content": "Thanks. Her tier?"}
TOOLS = [{"type": "function", "function": GET_USER}]
MESSAGES = [
    {"role": "system", "content": "You are an airline agent."},
    ASK,
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
     "function": {"name": "get_user", "arguments": '{"id": "mia"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"name": "Mia Li"}'},
    FOLLOW_UP,
]  # fmt: skip


def test_a_captured_chat_turn_re_pages_for_gpt_4o_and_replays_its_exact_bytes(
    stack: Stack,
) -> None:
    stack.openai(max_retries=0).chat.completions.create(  # type: ignore[call-overload]
        model="gpt-4o", messages=MESSAGES, tools=TOOLS, temperature=0.2, max_tokens=300
    )
    captured, moved, new, stored = _repaged_for_gpt_4o(stack)
    request = json.loads(stored)
    assert (request["model"], request["temperature"], request["max_tokens"]) == ("gpt-4o", 0.2, 300)
    assert request["tools"] == TOOLS
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    call = request["messages"][2]["tool_calls"][0]
    assert call["function"] == {"name": "get_user", "arguments": '{"id":"mia"}'}
    assert request["messages"][3] == {"role": "tool", "tool_call_id": call["id"],
                                      "content": '{"name": "Mia Li"}'}  # fmt: skip
    assert "through llm386 proxy" in moved.explanation
    _replays_as_stored(stack, new.call_id, stored, chat_reply("Gold."), "/v1/chat/completions")


def _repaged_for_gpt_4o(stack: Stack) -> tuple[Any, Any, Any, bytes]:
    """Re-page the one captured turn for gpt-4o, recorded: (captured, re-page, its record,
    the stored bytes), checked to be stored and hashed as sent."""
    [captured] = stack.records()
    moved = repage(stack.store, stack.traces, captured.call_id, profile="gpt-4o", record=True)
    new = moved.record
    assert new is not None and derived_kind(new) == "repage" and new.provider is Provider.OPENAI
    stored = stack.traces.request_bytes(new.prompt_hash)
    assert stored == moved.body and new.prompt_hash == hashlib.sha256(stored).hexdigest()
    return captured, moved, new, stored


def _replays_as_stored(stack: Stack, call_id: str, stored: bytes, reply: Any, path: str) -> None:
    """Replay ``call_id`` through the OpenAI provider's client: the upstream gets ``stored``."""
    stack.openai_up.enqueue(reply)
    client = get_provider("openai").client(
        api_key=API_KEY, base_url=stack.openai_up.base_url + "/v1", max_retries=0
    )
    try:
        result = replay(stack.traces, call_id, client)
    finally:
        client.close()
    assert result.ok and result.bytes_matched is True and result.new_text == "Gold."
    sent = stack.openai_up.requests[-1]
    assert sent.body == stored and sent.path == path


RESPONSES_TOOLS = [{"type": "function", **GET_USER}]
RESPONSES_INPUT = [
    ASK,
    {"type": "function_call", "call_id": "call_1", "name": "get_user", "arguments": '{"id": "mia"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": '{"name": "Mia Li"}'},
    FOLLOW_UP,
]  # fmt: skip


def test_a_captured_responses_turn_re_pages_for_gpt_4o_and_replays_to_the_responses_api(
    stack: Stack,
) -> None:
    stack.openai_up.enqueue(response_reply("Hello."))
    stack.openai(max_retries=0).responses.create(  # type: ignore[call-overload]
        model="gpt-4o", input=RESPONSES_INPUT, instructions="Brief.", tools=RESPONSES_TOOLS,
        temperature=0.2, max_output_tokens=300,
    )  # fmt: skip
    captured, moved, new, stored = _repaged_for_gpt_4o(stack)
    request = json.loads(stored)
    assert "messages" not in request and request["instructions"] == "Brief."
    assert (request["model"], request["temperature"], request["max_output_tokens"]) == (
        "gpt-4o", 0.2, 300)  # fmt: skip
    assert request["tools"] == RESPONSES_TOOLS
    assert [i.get("type", i.get("role")) for i in request["input"]] == [
        "user", "function_call", "function_call_output", "user"]  # fmt: skip
    assert request["input"][1]["arguments"] == '{"id":"mia"}'
    assert request["input"][2] == {"type": "function_call_output", "call_id": "call_1",
                                   "output": '{"name": "Mia Li"}'}  # fmt: skip
    _replays_as_stored(stack, new.call_id, stored, response_reply("Gold."), "/v1/responses")
    # For a Claude model it is the packer's Messages request, as for any other turn.
    claude = repage(stack.store, stack.traces, captured.call_id, profile="claude-sonnet-4-6")
    assert json.loads(claude.body)["model"] == "claude-sonnet-4-6"
    assert claude.body == claude.packed.body


def test_each_captured_turn_re_pages_the_session_as_that_call_saw_it(stack: Stack) -> None:
    client = stack.openai(max_retries=0)
    first = [ASK]
    later = [
        *first,
        {"role": "assistant", "content": "Mia Li."},
        {"role": "user", "content": "Tier?"},
    ]
    client.chat.completions.create(model="gpt-4o", messages=first)  # type: ignore[arg-type]
    client.chat.completions.create(model="gpt-4o", messages=later)  # type: ignore[arg-type]
    one, two = stack.records()
    assert one.session == two.session and one.upto_seq is not None and two.upto_seq is not None
    assert one.upto_seq < two.upto_seq
    for record, sent in ((one, first), (two, later)):
        body = repage(stack.store, stack.traces, record.call_id, profile="gpt-4o").body
        assert [m["content"] for m in json.loads(body)["messages"]] == [m["content"] for m in sent]


def test_the_cli_re_pages_a_captured_turn_for_its_recorded_model_as_a_difference_by_design(
    stack: Stack, run: Any
) -> None:
    stack.openai(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES[1:2])
    [captured] = stack.records()
    code, out, err = run("repage", captured.call_id, "--record")  # the store of ``stack``
    assert code == 0, err
    assert "differ by design" in out and "recorded as" in out
    new = next(r for r in stack.traces.list(limit=None) if r.parent_call_id == captured.call_id)
    assert new.provider is Provider.OPENAI
