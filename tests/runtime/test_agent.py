"""The sample agent: the store is its only memory; offline and over HTTP to the loopback API."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import open_store
from runtime.agent.core import (
    DEMO_CONVERSATIONS,
    SYSTEM_PROMPT,
    Agent,
    create_demo_conversations,
    load_demo_conversations,
)
from runtime.blocks import BlockKind, EdgeKind, parse_tool_call, parse_tool_result
from runtime.cli import main
from runtime.providers import AnthropicAdapter, OfflineModel
from runtime.replay.repage import repage
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.tracing.records import Provider, TraceStatus, prompt_hash
from tests.fakes.anthropic_server import error_reply, text_reply, tool_use_reply
from tests.properties import WITH_FIXTURES

KEY = "sk-ant-test-agent-0123456789"
REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("no_anthropic_env")


def _kinds(store, session):
    return [e.kind for e in store.entries(session)]


def _request(traces, call_id) -> dict:
    return json.loads(traces.request_bytes(traces.get(call_id).prompt_hash))


def test_an_offline_arithmetic_question_runs_the_calculator_and_answers(stores):
    store, traces = stores
    seen = []
    agent = Agent(store, traces, OfflineModel(), session="s",
                  on_tool=lambda call, result: seen.append((call.name, result.content)))  # fmt: skip
    reply = agent.say("What is 12 * 7?")
    assert reply.ok and reply.text == "[offline model] 12*7 = 84." and reply.stop == "end_turn"
    assert seen == [("calculator", "84")] and len(reply.call_ids) == 2
    assert _kinds(store, "s") == [
        BlockKind.SYSTEM, BlockKind.TOOL_SCHEMA, BlockKind.TOOL_SCHEMA, BlockKind.USER_MESSAGE,
        BlockKind.ASSISTANT_MESSAGE, BlockKind.TOOL_CALL, BlockKind.TOOL_RESULT,
        BlockKind.ASSISTANT_MESSAGE,
    ]  # fmt: skip
    entries = store.entries("s")
    call, result, said = entries[5], entries[6], entries[4]
    assert store.edges_from(call.id, EdgeKind.TOOL_INVOCATION)[0].dst == result.id
    assert store.edges_from(call.id, EdgeKind.PARENT)[0].dst == said.id
    assert parse_tool_result(result.body).call_id == parse_tool_call(call.body).call_id
    first, second = (traces.get(c) for c in reply.call_ids)
    assert (first.turn, second.turn) == (1, 2) and first.provider is Provider.OFFLINE
    assert first.task == "What is 12 * 7?" and first.upto_seq == 3  # the message is the task
    assert second.task == "" and second.upto_seq == 7  # the tool round sees the results
    assert second.plan["settings"]["required"] == [entries[3].id]
    last = _request(traces, second.call_id)["messages"][-1]
    assert [b["type"] for b in last["content"]] == ["tool_result"]


def test_over_http_the_agent_sends_the_traced_bytes_and_loops_on_tool_use(stores, model_server):
    store, traces = stores
    model_server.enqueue(
        tool_use_reply("toolu_a", "lookup_user_profile", {"user_id": "u-1002"}, text="Checking."),
        text_reply("Alan Turing is a silver member.", usage=(300, 12, 250, 0)),
    )
    with AnthropicAdapter(api_key=KEY, base_url=model_server.base_url) as client:
        reply = Agent(store, traces, client, session="http", profile="claude-haiku-4-5").say(
            "Who is user u-1002?"
        )
    assert reply.text == "Alan Turing is a silver member."
    assert [t.result.content for t in reply.tools][0].startswith('{"home_airport":"MAN"')
    sent = [r.body for r in model_server.requests]
    records = [traces.get(c) for c in reply.call_ids]
    assert [prompt_hash(body) for body in sent] == [r.prompt_hash for r in records]
    assert [traces.request_bytes(r.prompt_hash) for r in records] == sent
    second = json.loads(sent[1])
    assert second["model"] == "claude-haiku-4-5"
    assert second["messages"][-2]["content"][-1] == {
        "id": "toolu_a", "input": {"user_id": "u-1002"}, "name": "lookup_user_profile",
        "type": "tool_use",
    }  # fmt: skip
    result = second["messages"][-1]["content"][0]
    assert result["tool_use_id"] == "toolu_a" and "Alan Turing" in result["content"]
    assert records[1].usage.cache_read_input_tokens == 250
    assert all(r.provider is Provider.ANTHROPIC and r.model == "claude-haiku-4-5" for r in records)
    every_row = store.kv.read(
        lambda t: b"".join(k + v for name in t.table_names() for k, v in t.scan(name))
    )
    assert every_row and KEY.encode() not in every_row
    if hasattr(store, "env"):  # LMDB: nor anywhere in its files (free pages included)
        assert KEY.encode() not in b"".join(p.read_bytes() for p in Path(store.env.path).iterdir())


def test_a_failed_call_is_traced_and_the_next_message_still_sees_the_first(stores, model_server):
    store, traces = stores
    model_server.enqueue(error_reply(401), text_reply("Hello again."))
    with AnthropicAdapter(api_key=KEY, base_url=model_server.base_url) as client:
        agent = Agent(store, traces, client, session="err")
        failed = agent.say("first question")
        assert not failed.ok and failed.stop == "error" and failed.error.status == 401
        record = traces.get(failed.call_ids[0])
        assert record.status is TraceStatus.ERROR and "ANTHROPIC_API_KEY" in record.error.message
        assert agent.say("second question").text == "Hello again."
    texts = [b["text"] for m in json.loads(model_server.requests[1].body)["messages"]
             for b in m["content"]]  # fmt: skip
    assert texts == ["first question", "second question"]


def test_the_tool_round_limit_stops_the_loop_with_every_call_answered(stores, model_server):
    store, traces = stores
    model_server.enqueue(*[tool_use_reply(f"toolu_{n}", "calculator", {"expression": f"{n}+1"})
                           for n in range(5)])  # fmt: skip
    with AnthropicAdapter(api_key=KEY, base_url=model_server.base_url) as client:
        reply = Agent(store, traces, client, session="loop", max_tool_rounds=3).say("count up")
    assert reply.stop == "tool-round-limit" and "3 tool rounds" in reply.text
    assert len(reply.call_ids) == 3 and model_server.request_count == 3
    kinds = _kinds(store, "loop")
    assert kinds.count(BlockKind.TOOL_CALL) == kinds.count(BlockKind.TOOL_RESULT) == 3


def test_an_unknown_tool_gets_an_error_result_the_model_sees(stores, model_server):
    store, traces = stores
    model_server.enqueue(tool_use_reply("toolu_x", "delete_everything", {}), text_reply("Sorry."))
    with AnthropicAdapter(api_key=KEY, base_url=model_server.base_url) as client:
        reply = Agent(store, traces, client, session="x").say("do it")
    assert reply.tools[0].result.is_error and "unknown tool" in reply.tools[0].result.content
    result = json.loads(model_server.requests[1].body)["messages"][-1]["content"][0]
    assert result["is_error"] is True


def test_setup_blocks_are_put_once_per_session(stores):
    store, traces = stores
    for _ in range(2):
        Agent(store, traces, OfflineModel(), session="once").say("hi")
    kinds = _kinds(store, "once")
    assert kinds.count(BlockKind.SYSTEM) == 1 and kinds.count(BlockKind.TOOL_SCHEMA) == 2
    assert store.entries("once")[0].body == SYSTEM_PROMPT
    meta = store.session_info("once").meta
    assert meta["source"] == "sample-agent" and meta["model"] == "llm386-offline"


def test_a_conversation_resumes_after_reopening_the_store(tmp_path):
    path = tmp_path / "store"
    store = open_store(path)
    Agent(store, LmdbTraceStore(store), OfflineModel(), session="r").say("What is 9 * 9?")
    lmdbenv.close_env(path)
    store = open_store(path)
    traces = LmdbTraceStore(store)
    reply = Agent(store, traces, OfflineModel(), session="r").say("And who is user u-1001?")
    body = traces.request_bytes(traces.get(reply.call_ids[0]).prompt_hash).decode()
    assert "What is 9 * 9?" in body and "9*9 = 81." in body
    assert traces.get(reply.call_ids[0]).turn == 3


def _chat_process(store: Path, text: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-c", "from runtime.cli import main; raise SystemExit(main())",
         "--store", str(store), "chat", "--session", "restart"],
        input=text, capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


def test_chat_in_a_new_process_continues_the_conversation(tmp_path):
    first = _chat_process(tmp_path / "store", "What is 21 + 21?\n")
    assert first.returncode == 0, first.stderr
    assert "offline model llm386-offline (ANTHROPIC_API_KEY is not set)" in first.stdout
    assert "  [tool] calculator" in first.stdout and "21+21 = 42." in first.stdout
    second = _chat_process(tmp_path / "store", "What did I ask before?\n")
    assert second.returncode == 0, second.stderr
    # user, assistant (text + tool_use), user (tool_result), assistant, and the new question
    assert "I saw 5 message(s)" in second.stdout
    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)
    last = traces.list(session="restart", limit=1)[0]
    first_message = _request(traces, last.call_id)["messages"][0]["content"][0]["text"]
    assert last.turn == 3 and first_message == "What is 21 + 21?"


def test_the_same_store_contents_and_messages_give_the_same_request_bytes(tmp_path):
    hashes = []
    for name in ("a", "b"):
        store = open_store(tmp_path / name)
        traces = LmdbTraceStore(store)
        agent = Agent(store, traces, OfflineModel(), session="same")
        for message in ("Hello", "What is 2 * 21?", "Profile of user u-1001"):
            agent.say(message)
        hashes.append([r.prompt_hash for r in traces.list(session="same", limit=None)])
    assert hashes[0] == hashes[1] and len(set(hashes[0])) == len(hashes[0]) == 5


MESSAGES = st.one_of(
    st.builds(lambda a, b: f"what is {a} * {b}?", st.integers(0, 999), st.integers(0, 999)),
    st.sampled_from(["profile of user u-1001", "who is user u-1003?", "profile of user nobody"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
            max_size=40).filter(str.strip),
)  # fmt: skip


@settings(WITH_FIXTURES, max_examples=15)
@given(messages=st.lists(MESSAGES, min_size=1, max_size=3), tag=st.uuids())
def test_agent_turns_are_a_function_of_the_session_and_repage_exactly(stores, messages, tag):
    store, traces = stores
    sessions = [f"p-{tag.hex}-{n}" for n in (1, 2)]
    for session in sessions:
        agent = Agent(store, traces, OfflineModel(), session=session)
        for message in messages:
            agent.say(message)
    one, two = (traces.list(session=s, limit=None, newest_first=False) for s in sessions)
    assert [r.prompt_hash for r in one] == [r.prompt_hash for r in two]
    for record in one:
        assert repage(store, traces, record.call_id).hash_matches


def test_demo_conversations_are_created_once_and_repage_exactly(stores):
    store, traces = stores
    report = create_demo_conversations(store, traces)
    assert report.created == report.sessions == tuple(c[0] for c in DEMO_CONVERSATIONS)
    assert "3 demo conversation(s) created" in report.summary()
    calls = traces.count()
    assert load_demo_conversations(store, traces).startswith("sample agent: all 3")
    assert traces.count() == calls == report.model_calls
    titles = {s.session: s.meta.get("title") for s in store.sessions()}
    assert titles["demo-agent-profile"] == "Sample agent: a user-profile lookup"
    profile_turns = traces.list(session="demo-agent-profile", limit=None)
    assert any("Ada Lovelace" in json.dumps(r.response) for r in profile_turns)
    for record in traces.list(limit=None):
        assert repage(store, traces, record.call_id).hash_matches


def test_chat_cli_reads_stdin_until_quit_and_prints_tool_calls(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is 5 * 5?\n\n/quit\nnot read\n"))
    code = main(["--store", str(tmp_path / "store"), "chat", "--session", "cli"])
    out = capsys.readouterr().out
    assert code == 0 and "offline model" in out
    assert '  [tool] calculator {"expression":"5*5"} -> ok: 25' in out
    assert "assistant: [offline model] 5*5 = 25." in out and "(1 message(s)" in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello"))
    main(["--store", str(tmp_path / "store"), "chat", "--session", "cli", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert [r["stop"] for r in data["replies"]] == ["end_turn"] and data["session"] == "cli"


def test_chat_cli_uses_anthropic_when_a_key_is_set(tmp_path, capsys, monkeypatch, model_server):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model_server.base_url)
    model_server.enqueue(text_reply("Hi from the API."), error_reply(400, "bad"))
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\nagain\n"))
    code = main(["--store", str(tmp_path / "store"), "chat", "--model", "claude-opus-4-6"])
    out = capsys.readouterr().out
    assert code == 0 and f"Anthropic API at {model_server.base_url}" in out
    assert "assistant: Hi from the API." in out and "error: the API rejected" in out
    assert json.loads(model_server.requests[0].body)["model"] == "claude-opus-4-6"
    assert KEY not in out


def test_chat_cli_refuses_a_non_anthropic_model_for_the_real_api(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    code = main(["--store", str(tmp_path / "store"), "chat", "--model", "gpt-4o"])
    assert code == 2 and "--offline" in capsys.readouterr().err
