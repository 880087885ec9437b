"""Demand paging in the sample agent, over real HTTP to the loopback Messages API.

A tool result goes stale, is sent as a placeholder, the model calls ``recall`` for it: the block
is paged back in (at its own place; the recall's result then points to it, so the content is
sent once), the fault is recorded on the trace and in the session, and the block stays
pinned (sent in full) for the rest of the session. Every record re-pages to its own hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from runtime.agent.core import Agent
from runtime.agent.tools import ToolRunner
from runtime.blocks import BlockKind, Entry, ToolResult, parse_tool_result
from runtime.paging.eviction import EvictionConfig
from runtime.paging.faults import load_state
from runtime.paging.placeholders import RECALL_TOOL_NAME, StubStyle
from runtime.providers import AnthropicAdapter, OfflineModel
from runtime.replay.repage import repage
from tests.fakes.anthropic_server import text_reply, tool_use_reply

KEY = "sk-ant-test-agent-paging-0123456789"
# Small thresholds so the sample tools' short results go stale within a few messages.
CONFIG = EvictionConfig(max_age=1, min_bytes=10, stub_style=StubStyle.SIGNATURE)


pytestmark = pytest.mark.usefixtures("no_anthropic_env")


class LongProfiles(ToolRunner):
    """The sample tools, with each profile carrying a long booking history (as real tools do)."""

    def run(self, call_id: str, name: str, arguments: object) -> ToolResult:
        result = super().run(call_id, name, arguments)
        if name != "lookup_user_profile" or result.is_error:
            return result
        profile = json.loads(result.content)
        profile["bookings"] = [{"flight": f"HAT{n:03d}", "seat": f"{n}A"} for n in range(30)]
        return ToolResult(call_id, json.dumps(profile, sort_keys=True), False)


def results_of(body: bytes) -> dict[str, str]:
    request = json.loads(body)
    return {
        b["tool_use_id"]: b["content"] for m in request["messages"] for b in m["content"]
        if b["type"] == "tool_result"
    }  # fmt: skip


def profile_result(store, session):
    entry = next(e for e in store.entries(session) if e.kind is BlockKind.TOOL_RESULT)
    return entry, parse_tool_result(entry.body).content


@contextmanager
def agent_about_to_recall(
    stores: Any, model_server: Any, session: str, *later: Any
) -> Iterator[tuple[Agent, Entry, str]]:
    """Yield an agent that looked a profile up two messages ago, that result's entry and content.

    The model server answers the next message with a recall of the profile's block and the
    airport, then with ``later``.
    """
    store, traces = stores
    model_server.enqueue(
        tool_use_reply("toolu_1", "lookup_user_profile", {"user_id": "u-1002"}),
        text_reply("Alan Turing is a silver member."),
        text_reply("You are welcome."),
    )
    with AnthropicAdapter(api_key=KEY, base_url=model_server.base_url) as client:
        agent = Agent(store, traces, client, session=session, profile="claude-haiku-4-5",
                      paging=CONFIG, runner=LongProfiles())  # fmt: skip
        agent.say("Who is user u-1002?")
        agent.say("Thanks!")
        entry, content = profile_result(store, session)
        model_server.enqueue(
            tool_use_reply("toolu_2", RECALL_TOOL_NAME, {"block_id": entry.block.short_id}),
            text_reply("The home airport is MAN."),
            *later,
        )
        yield agent, entry, content


def test_a_recall_pages_the_block_back_in_records_the_fault_and_pins_it(stores, model_server):
    store, traces = stores
    recall = agent_about_to_recall(stores, model_server, "p", text_reply("Bye."))
    with recall as (agent, entry, content):
        reply = agent.say("What was the home airport again?")
        last = agent.say("Bye!")
    sent = [r.body for r in model_server.requests]
    paged_out = results_of(sent[3])["toolu_1"]
    assert paged_out.startswith(f"[Paged out: block {entry.block.short_id}")
    assert RECALL_TOOL_NAME in [t["name"] for t in json.loads(sent[3])["tools"]]
    assert reply.tools[0].result.content == content and not reply.tools[0].result.is_error
    served_request = results_of(sent[4])
    assert served_request["toolu_1"] == content  # paged back in, at its own place
    assert served_request["toolu_2"].startswith("[Duplicate:")  # the recall's copy: a pointer
    served = traces.get(reply.call_ids[1]).paging
    assert [(f["kind"], f["block_id"]) for f in served["faults"]] == [("recall", entry.id)]
    assert served["accounting"]["faults"] == 1 and served["accounting"]["refaults"] == 0
    state = load_state(store, "p")
    assert state.pinned(99) == (entry.id,)
    assert results_of(sent[5])["toolu_1"] == content  # pinned: in full from then on
    assert traces.get(last.call_ids[0]).paging["pinned"] == [entry.id]


def test_every_record_has_its_accounting_and_repages_to_its_hash(stores, model_server):
    store, traces = stores
    model_server.enqueue(
        tool_use_reply("toolu_1", "lookup_user_profile", {"user_id": "u-1002"}),
        text_reply("Alan Turing."), text_reply("Sure."), text_reply("Done."),
    )  # fmt: skip
    with AnthropicAdapter(api_key=KEY, base_url=model_server.base_url) as client:
        agent = Agent(store, traces, client, session="r", paging=CONFIG, runner=LongProfiles())
        for message in ("Who is user u-1002?", "Thanks!", "One more thing."):
            agent.say(message)
    records = traces.list(session="r")
    assert len(records) == 4
    for record in records:
        accounting = record.paging["accounting"]
        assert accounting["full_tokens"] >= accounting["packed_tokens"] > 0
        assert record.config["pager"]["paging"]["config"]["max_age"] == 1
        assert repage(store, traces, record.call_id).hash_matches
    last = max(records, key=lambda r: r.turn)
    assert last.paging["accounting"]["evictions"] >= 1  # the stale profile result


def test_a_repeated_call_of_a_paged_out_result_is_a_fault(stores):
    store, traces = stores
    agent = Agent(store, traces, OfflineModel(), session="o", paging=CONFIG, runner=LongProfiles())
    agent.say("Who is user u-1001?")
    agent.say("Hello there")
    reply = agent.say("Who is user u-1001?")  # the offline model looks the profile up again
    assert reply.tools and reply.tools[0].call.name == "lookup_user_profile"
    state = load_state(store, "o")
    assert [f.kind.value for f in state.faults] == ["repeat"]
    assert traces.get(reply.call_ids[1]).paging["faults"][0]["kind"] == "repeat"


def test_without_paging_the_agent_packs_nothing_out(stores):
    store, traces = stores
    agent = Agent(store, traces, OfflineModel(), session="n", paging=None)
    for message in ("Who is user u-1001?", "Hello there", "What is 2 + 2?"):
        reply = agent.say(message)
    record = traces.get(reply.call_ids[0])
    assert record.paging == {} and "paging" not in record.plan["settings"]
    assert repage(store, traces, record.call_id).hash_matches


def test_after_a_recall_the_recalled_content_is_sent_once_in_every_later_request(
    stores, model_server
):
    later = [text_reply(f"Reply {n}.") for n in range(4)]
    with agent_about_to_recall(stores, model_server, "once", *later) as (agent, _, content):
        agent.say("What was the home airport again?")
        for message in ("Which seat on HAT007?", "And on HAT012?", "Fine.", "Bye!"):
            agent.say(message)
    sent = [r.body for r in model_server.requests]
    assert results_of(sent[3])["toolu_1"].startswith("[Paged out:")  # the request that faulted
    encoded = json.dumps(content)[1:-1].encode()  # as it sits inside the JSON request
    assert len(sent) == 9
    for n, body in enumerate(sent[4:], start=4):  # the one serving the recall, and every later
        assert body.count(encoded) == 1, (
            f"request {n} holds the recalled content {body.count(encoded)} times"
        )
