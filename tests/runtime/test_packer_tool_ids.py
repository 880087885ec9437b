"""Tool-use ids reused by a model: each result is sent with its own call, and ids stay unique.

GPT-4o reused tool_use ids for different calls in 36 of the 120 tau-bench sessions. A result
answers the latest earlier call with its id (CONVENTIONS.md order); the Messages API rejects a
request in which two tool_use blocks share an id, so repeats are renamed ``<id>~2``, ``~3``...
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from runtime import open_store
from runtime.blocks import BlockKind, parse_tool_call, parse_tool_result
from runtime.indexes.snapshot import index_for
from runtime.packer.core import pack
from runtime.pager.core import PageRequest, page
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.transfer.importer import load_demo_sessions
from tests.runtime.pager_support import Session, assert_valid_anthropic_conversation, profile


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("demo") / "store")
    index_for(store)
    load_demo_sessions(store, LmdbTraceStore(store))
    yield store
    store.close()


def reused_id_session(store, name="reuse"):
    """A session where a second, different call reuses the first call's id (as GPT-4o did)."""
    session = Session(store, name)
    session.system("You are an airline agent.")
    session.tool_schema()
    session.user("Who is mia_li_3668?")
    session.tool_turn("get_user", {"user_id": "mia_li_3668"}, '{"name": "Mia Li"}')
    session.calls = 0  # the next call gets the same id, toolu_reuse_0001
    session.user("What is 152 + 103?")
    session.tool_turn("calculate", {"expression": "152 + 103"}, "255")
    return session


def tool_pairs(request) -> list[tuple[str, str, str, str]]:
    """Return (id, tool name, input JSON, result content) for each tool_use and its answer."""
    messages, out = request["messages"], []
    for n, message in enumerate(messages):
        for block in message["content"]:
            if block["type"] != "tool_use":
                continue
            answers = [
                b for b in messages[n + 1]["content"]
                if b["type"] == "tool_result" and b["tool_use_id"] == block["id"]
            ]  # fmt: skip
            assert len(answers) == 1, f"tool_use {block['id']} has {len(answers)} results"
            args = json.dumps(block["input"], sort_keys=True)
            out.append((block["id"], block["name"], args, answers[0]["content"]))
    return out


def expected_pairs(store, session) -> Counter:
    """Return (tool name, input JSON, content) of each call and the next result with its id."""
    open_calls: dict[str, tuple[str, str]] = {}
    pairs: Counter = Counter()
    for entry in store.entries(session):
        if entry.kind is BlockKind.TOOL_CALL:
            call = parse_tool_call(entry.body)
            open_calls[call.call_id] = (call.name, json.dumps(call.input, sort_keys=True))
        elif entry.kind is BlockKind.TOOL_RESULT:
            result = parse_tool_result(entry.body)
            call = open_calls.pop(result.call_id, None)
            if call is not None:
                pairs[(*call, result.content)] += 1
    return pairs


def test_a_reused_tool_use_id_gets_the_result_of_its_own_call(store):
    reused_id_session(store)
    plan = page(store, PageRequest("reuse", "", profile(20_000)))
    request = pack(store, plan).request
    pairs = tool_pairs(request)
    assert [(name, content) for _, name, _, content in pairs] == [
        ("get_user", '{"name": "Mia Li"}'),
        ("calculate", "255"),
    ]


def test_a_reused_tool_use_id_is_renamed_in_the_call_and_its_result(store):
    reused_id_session(store)
    request = pack(store, page(store, PageRequest("reuse", "", profile(20_000)))).request
    ids = [pair[0] for pair in tool_pairs(request)]
    assert ids == ["toolu_reuse_0001", "toolu_reuse_0001~2"]
    assert_valid_anthropic_conversation(request)


def test_the_renamed_request_is_the_same_bytes_in_every_pack(store):
    reused_id_session(store)
    plan = page(store, PageRequest("reuse", "", profile(20_000)))
    assert pack(store, plan).body == pack(store, plan).body


@pytest.mark.parametrize("budget", [200_000, 6_000])
def test_every_tau_bench_request_has_unique_tool_ids_and_each_result_follows_its_own_call(
    demo, budget
):
    sessions = [s.session for s in demo.sessions() if s.session.startswith("tau-airline-")]
    assert len(sessions) == 120
    for session in sessions:
        plan = page(demo, PageRequest(session, "", profile(budget, tokenizer="o200k_base")))
        request = pack(demo, plan).request
        pairs = tool_pairs(request)
        ids = [pair[0] for pair in pairs]
        assert len(ids) == len(set(ids)), session
        expected = expected_pairs(demo, session)
        sent = Counter((name, args, content) for _, name, args, content in pairs)
        assert not sent - expected, session  # nothing paired with another call's result
        assert_valid_anthropic_conversation(request)
