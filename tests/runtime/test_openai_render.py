"""The Chat Completions render of a re-page: the OpenAI provider writes the packer's Messages
request as an OpenAI request, tool pairs whole, the same canonical bytes in any process; and an
imported tau-bench GPT-4o turn re-pages for gpt-4o and replays over real HTTP to the OpenAI fake
through the provider's own client (the official openai SDK)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.blocks import canonical_json
from runtime.errors import InvalidInput
from runtime.profiles.catalog import get_profile
from runtime.providers import get_provider
from runtime.providers.base import PackedTurn
from runtime.providers.openai.render import chat_request, responses_request
from runtime.replay.fidelity import replay_capability
from runtime.replay.repage import repage
from runtime.replay.resend import derived_kind, replay
from runtime.tracing.records import Provider
from tests.fakes.openai_server import OpenAIServer, chat_reply

ROOT = Path(__file__).parents[2]
TOOL = {"description": "Look a user up.", "input_schema": {"properties": {"id": {"type": "string"}},
        "type": "object"}, "name": "get_user", "cache_control": {"type": "ephemeral"}}  # fmt: skip
PACKED = {
    "max_tokens": 512,
    "model": "gpt-4o",
    "system": [{"text": "You are an airline agent.", "type": "text",
                "cache_control": {"type": "ephemeral"}},
               {"text": "## Facts\n\nfact: gold member\n\n", "type": "text"}],  # fmt: skip
    "tools": [TOOL],
    "messages": [
        {"role": "user", "content": [{"text": "Who is mia?", "type": "text"}]},
        {"role": "assistant", "content": [
            {"text": "Looking.", "type": "text"},
            {"id": "call_1", "input": {"id": "mia", "ä": 1}, "name": "get_user", "type": "tool_use"},
            {"id": "call_2", "input": {"id": "lost"}, "name": "get_user", "type": "tool_use"},
        ]},
        {"role": "user", "content": [
            {"content": '{"name": "Mia Li"}', "tool_use_id": "call_1", "type": "tool_result"},
            {"text": "And her flights?", "type": "text"},
        ]},
        {"role": "assistant", "content": [
            {"id": "call_3", "input": {"id": "x"}, "name": "get_user", "type": "tool_use"},
        ]},
        {"role": "user", "content": [{"text": "Answer the user.", "type": "text"}]},
    ],
}  # fmt: skip


def test_the_render_writes_system_tools_tool_calls_and_tool_messages_in_chat_form() -> None:
    request = chat_request(PACKED)
    assert request["model"] == "gpt-4o" and request["max_completion_tokens"] == 512
    assert request["tools"] == [{"type": "function", "function": {
        "name": "get_user", "description": "Look a user up.", "parameters": TOOL["input_schema"]}}]  # fmt: skip
    system, user, assistant, tool, user2, task = request["messages"]
    assert system == {"role": "system", "content": [
        {"type": "text", "text": "You are an airline agent."},
        {"type": "text", "text": "## Facts\n\nfact: gold member\n\n"}]}  # fmt: skip
    assert user == {"role": "user", "content": "Who is mia?"}
    assert assistant == {"role": "assistant", "content": "Looking.", "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_user", "arguments": '{"id":"mia","ä":1}'}}]}  # fmt: skip
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": '{"name": "Mia Li"}'}
    assert user2 == {"role": "user", "content": "And her flights?"}
    assert task == {"role": "user", "content": "Answer the user."}
    assert b"cache_control" not in canonical_json(request)


def test_a_call_whose_result_is_not_in_the_request_is_dropped_with_it() -> None:
    messages = chat_request(PACKED)["messages"]
    calls = [c["id"] for m in messages for c in m.get("tool_calls", ())]
    answers = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert calls == answers == ["call_1"]  # call_2 and call_3 had no result: not sent
    for n, message in enumerate(messages):  # each call's tool message follows its assistant
        for call in message.get("tool_calls", ()):
            following = messages[n + 1]
            assert (following["role"], following["tool_call_id"]) == ("tool", call["id"])


def test_a_result_with_no_call_before_it_is_sent_as_user_text() -> None:
    packed = {"max_tokens": 8, "model": "gpt-4o", "messages": [{"role": "user", "content": [
        {"content": "orphan", "tool_use_id": "call_9", "type": "tool_result"}]}]}  # fmt: skip
    assert chat_request(packed)["messages"] == [{"role": "user", "content": "orphan"}]


def test_recorded_settings_are_kept_and_only_what_the_re_page_writes_is_replaced() -> None:
    recorded = {"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "old"}],
                "temperature": 0.0, "max_tokens": 1000, "tool_choice": "auto", "stream": True,
                "functions": [{"name": "legacy"}]}  # fmt: skip
    request = chat_request(PACKED, recorded=recorded)
    kept = (request["temperature"], request["max_tokens"], request["tool_choice"])
    assert kept == (0.0, 1000, "auto")
    assert request["stream"] is True and "max_completion_tokens" not in request
    assert "functions" not in request and request["model"] == "gpt-4o"
    no_tools = chat_request({**PACKED, "tools": []}, recorded=recorded)
    assert "tool_choice" not in no_tools and "tools" not in no_tools


def test_a_model_without_a_system_role_gets_a_developer_message() -> None:
    profile = get_profile("o1")
    body = get_provider("openai").repage_body(PackedTurn(PACKED, b"", None, "t"), profile)
    assert json.loads(body)["messages"][0]["role"] == "developer"


def test_the_bytes_are_canonical_json_and_the_same_in_another_process() -> None:
    provider = get_provider("openai")
    profile = get_profile("gpt-4o")
    body = provider.repage_body(PackedTurn(PACKED, b"", None, "t"), profile)
    assert body == canonical_json(json.loads(body))
    script = (
        "import json, sys; from runtime.profiles.catalog import get_profile; "
        "from runtime.providers import get_provider; from runtime.providers.base import PackedTurn; "
        "packed = json.loads(sys.stdin.read()); "
        "sys.stdout.buffer.write(get_provider('openai').repage_body("
        "PackedTurn(packed, b'', None, 't'), get_profile('gpt-4o')))"
    )
    for seed in ("1", "2"):
        # Another process, another hash seed, and the packed dict's keys in another order.
        shuffled = json.dumps(dict(reversed(list(PACKED.items()))))
        other = subprocess.run(
            [sys.executable, "-c", script], input=shuffled.encode(), capture_output=True,
            cwd=ROOT, env={"PYTHONHASHSEED": seed, "PATH": ""}, check=True,
        ).stdout  # fmt: skip
        assert other == body


def test_a_responses_turn_re_pages_as_a_responses_request_keeping_its_settings() -> None:
    recorded = canonical_json({
        "model": "gpt-4o-mini", "input": "hi", "instructions": "Be brief.", "temperature": 0.3,
        "previous_response_id": "resp_1", "conversation": "conv_1", "store": False,
        "tool_choice": "auto", "max_output_tokens": 99,
    })  # fmt: skip
    body = get_provider("openai").repage_body(
        PackedTurn(PACKED, b"", recorded, "t"), get_profile("gpt-4o")
    )
    assert body == canonical_json(json.loads(body))  # canonical bytes, as every re-page
    request = json.loads(body)
    assert "messages" not in request and "previous_response_id" not in request
    assert "conversation" not in request  # the re-page carries the whole history itself
    assert (request["model"], request["temperature"], request["store"]) == ("gpt-4o", 0.3, False)
    assert request["max_output_tokens"] == 99 and request["tool_choice"] == "auto"
    assert (
        request["instructions"] == "You are an airline agent.\n\n## Facts\n\nfact: gold member\n\n"
    )
    assert request["tools"] == [{"type": "function", "name": "get_user",
                                 "description": "Look a user up.",
                                 "parameters": TOOL["input_schema"]}]  # fmt: skip
    assert request["input"] == [
        {"role": "user", "content": "Who is mia?"},
        {"role": "assistant", "content": "Looking."},
        {"type": "function_call", "call_id": "call_1", "name": "get_user",
         "arguments": canonical_json({"id": "mia", "ä": 1}).decode()},
        # call_2 has no result in the request and call_3 none after it: both dropped whole.
        {"type": "function_call_output", "call_id": "call_1", "output": '{"name": "Mia Li"}'},
        {"role": "user", "content": "And her flights?"},
        {"role": "user", "content": "Answer the user."},
    ]  # fmt: skip
    plain = responses_request({**PACKED, "tools": []})
    assert "tools" not in plain and "max_output_tokens" in plain
    several = responses_request({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]})  # fmt: skip
    assert several["input"] == [{"role": "user", "content": [
        {"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]}]  # fmt: skip
    with pytest.raises(InvalidInput, match="re-page for an Anthropic model"):
        responses_request({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image", "source": {}}]}]})  # fmt: skip


def test_an_imported_tau_bench_turn_re_pages_for_gpt_4o_and_replays_to_openai(
    stores, imported
) -> None:
    store, traces = stores
    moved = repage(store, traces, imported.call_id, profile="gpt-4o", record=True)
    new = moved.record
    assert new is not None and derived_kind(new) == "repage"
    assert (new.provider, new.parent_call_id) == (Provider.OPENAI, imported.call_id)
    stored = traces.request_bytes(new.prompt_hash)
    assert stored == moved.body and new.prompt_hash == hashlib.sha256(stored).hexdigest()
    request = json.loads(stored)
    assert request["model"] == "gpt-4o" and "system" not in request
    assert request["messages"][0]["role"] == "system"
    assert all(t["type"] == "function" for t in request["tools"])
    assert "differ by design" in moved.explanation and "the OpenAI API" in moved.explanation
    assert replay_capability(new).can_replay
    assert repage(store, traces, new.call_id).hash_matches  # re-paged records re-page too
    with OpenAIServer() as server:
        server.enqueue(chat_reply("Your reservation is booked."))
        client = get_provider("openai").client(
            api_key="sk-test-repage", base_url=server.base_url + "/v1", max_retries=0
        )
        try:
            result = replay(traces, new.call_id, client)
        finally:
            client.close()
    assert [r.body for r in server.requests] == [stored]
    assert server.requests[0].path == "/v1/chat/completions"
    assert result.ok and result.bytes_matched is True
    assert result.new_text == "Your reservation is booked."
