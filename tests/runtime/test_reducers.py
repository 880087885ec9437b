"""Reducers: append-output, tool-use and JSON events, pure and storable in a real store."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.blocks import BlockKind, EdgeKind, ToolCall, ToolResult, content_hash
from runtime.errors import ReducerError
from runtime.reducers import (
    REDUCERS,
    AppendOutputReducer,
    JsonEventsReducer,
    ToolUseReducer,
    block_id,
    state_id,
)


def test_append_output_turns_the_reply_into_one_assistant_message():
    reduction = AppendOutputReducer().reduce(None, "Your flight is booked.")
    (block,) = reduction.blocks
    assert block.kind is BlockKind.ASSISTANT_MESSAGE and block.body == "Your flight is booked."
    assert block.provenance.source == "model-output" and reduction.edges == ()


def test_append_output_of_an_empty_reply_is_an_empty_reduction():
    assert AppendOutputReducer().reduce("state", "  \n").empty


def test_append_output_links_the_reply_to_the_state_it_was_made_from():
    reduction = AppendOutputReducer().reduce("user wants JFK-SEA", "Which date?")
    (edge,) = reduction.edges
    assert edge.kind is EdgeKind.PARENT and edge.dst == content_hash(
        BlockKind.STATE, "user wants JFK-SEA"
    )
    assert reduction.blocks[0].provenance.parents == (edge.dst,)
    assert AppendOutputReducer(link_to_state=False).reduce("s", "x").edges == ()


def test_append_output_refuses_output_that_is_not_text():
    with pytest.raises(ReducerError, match="must be text"):
        AppendOutputReducer().reduce(None, {"content": []})


RESPONSE = {
    "type": "message",
    "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_user", "input": {"id": "mia"}},
        {"type": "tool_use", "id": "toolu_2", "name": "calc", "input": {"expr": "2+2"}},
    ],
}


def test_tool_use_makes_the_text_and_one_tool_call_block_per_tool_use():
    reduction = ToolUseReducer().reduce(None, RESPONSE)
    kinds = [b.kind for b in reduction.blocks]
    assert kinds == [BlockKind.ASSISTANT_MESSAGE, BlockKind.TOOL_CALL, BlockKind.TOOL_CALL]
    assert reduction.blocks[1].body == ToolCall("toolu_1", "get_user", {"id": "mia"}).body()
    text_id = block_id(reduction.blocks[0])
    assert [(e.src, e.kind, e.dst) for e in reduction.edges] == [
        (block_id(b), EdgeKind.PARENT, text_id) for b in reduction.blocks[1:]]  # fmt: skip


def test_tool_use_without_text_has_no_parent_edges_and_reads_raw_bytes():
    raw = json.dumps({"content": RESPONSE["content"][1:]}).encode()
    reduction = ToolUseReducer().reduce(None, raw)
    assert [b.kind for b in reduction.blocks] == [BlockKind.TOOL_CALL] * 2 and reduction.edges == ()


def test_tool_results_become_blocks_linked_from_their_calls():
    reducer = ToolUseReducer()
    calls = reducer.calls(RESPONSE)
    reduction = reducer.results(
        calls, [ToolResult("toolu_2", "4"), ToolResult("toolu_1", "none", True)]
    )
    assert [b.body for b in reduction.blocks] == [ToolResult("toolu_2", "4").body(),
                                                   ToolResult("toolu_1", "none", True).body()]  # fmt: skip
    assert reduction.edges[0].src == content_hash(BlockKind.TOOL_CALL, calls[1].body())
    assert all(e.kind is EdgeKind.TOOL_INVOCATION for e in reduction.edges)


def test_a_result_for_a_call_the_turn_did_not_make_is_refused():
    reducer = ToolUseReducer()
    with pytest.raises(ReducerError, match="toolu_9.*toolu_1, toolu_2"):
        reducer.results(reducer.calls(RESPONSE), [ToolResult("toolu_9", "x")])


@pytest.mark.parametrize(
    "output, message",
    [
        (b'{"content": [', "not valid JSON: .* line 1 column 14 \\(character 13\\)"),
        ({"content": "text"}, "content list"),
        ({"content": [{"text": "no type"}]}, "content\\[0\\] is not a block"),
        (
            {"content": [{"type": "tool_use", "name": "x"}]},
            "content\\[0\\] is a tool_use without id",
        ),
    ],
)
def test_tool_use_refuses_output_it_cannot_read(output, message):
    with pytest.raises(ReducerError, match=message):
        ToolUseReducer().reduce(None, output)


ENVELOPE = {
    "state": "booking: JFK-SEA on May 20",
    "events": [{"kind": "fact", "body": "user id is mia_li_3668"},
               {"kind": "plan", "body": "1. search flights 2. book"}],
    "edges": [{"from": 1, "kind": "supports", "to": 0}, {"from": "state", "kind": "derived-from", "to": 0}],
}  # fmt: skip


def test_json_events_become_blocks_edges_and_the_next_state():
    reduction = JsonEventsReducer().reduce("old state", json.dumps(ENVELOPE))
    assert [(b.kind, b.body) for b in reduction.blocks] == [
        (BlockKind.FACT, "user id is mia_li_3668"), (BlockKind.PLAN, "1. search flights 2. book")]  # fmt: skip
    assert reduction.next_state.body == ENVELOPE["state"]
    fact, plan = (block_id(b) for b in reduction.blocks)
    assert [(e.src, e.kind, e.dst) for e in reduction.edges] == [
        (plan, EdgeKind.SUPPORTS, fact), (block_id(reduction.next_state), EdgeKind.DERIVED_FROM, fact)]  # fmt: skip
    assert all(b.provenance.parents == (state_id("old state"),) for b in reduction.all_blocks)


def test_json_events_may_point_at_a_stored_block_by_id():
    stored = "ab" * 32
    envelope = {"events": [{"kind": "summary", "body": "so far"}],
                "edges": [{"from": 0, "kind": "derived-from", "to": stored}]}  # fmt: skip
    (edge,) = JsonEventsReducer().reduce(None, json.dumps(envelope).encode()).edges
    assert edge.dst == stored


@pytest.mark.parametrize(
    "output, message",
    [
        ('{"events": [}', "not valid JSON: Expecting value at line 1 column 13 \\(character 12\\)"),
        ('{\n  "events": [\n    {"kind": "fact" "body": "x"}]}', "line 3 column 21"),
        ("[]", 'an object with an "events" list'),
        ('{"state": "s"}', '"events" list'),
        ('{"events": [3]}', "events\\[0\\] is not an object"),
        ('{"events": [{"kind": "tool-call", "body": "x"}]}', "events\\[0\\].kind is 'tool-call'; use one of: fact"),
        ('{"events": [{"kind": "fact", "body": " "}]}', "events\\[0\\].body must be non-empty"),
        ('{"events": [], "state": 5}', '"state" must be non-empty text'),
        ('{"events": [], "edges": {}}', '"edges" must be a list'),
        ('{"events": [{"kind": "fact", "body": "x"}], "edges": [{"from": 0, "kind": "likes", "to": 0}]}', "edges\\[0\\]: unknown edge kind 'likes'"),
        ('{"events": [{"kind": "fact", "body": "x"}], "edges": [{"from": 0, "kind": "supports", "to": 5}]}', "edges\\[0\\].to is 5"),
        ('{"events": [{"kind": "fact", "body": "x"}], "edges": [{"from": 0, "kind": "supports", "to": 0}]}', "from a block to itself"),
        ('{"events": [], "edges": [{"from": "state", "kind": "supports", "to": "state"}]}', "edges\\[0\\].from is 'state'"),
        (42, "must be JSON text"),
    ],
)  # fmt: skip
def test_json_events_report_invalid_output_with_its_position_and_never_guess(output, message):
    with pytest.raises(ReducerError, match=message):
        JsonEventsReducer().reduce(None, output)


@given(state=st.none() | st.text(min_size=1, max_size=30), text=st.text(max_size=60))
def test_reducers_are_pure(state, text):
    for reducer in (AppendOutputReducer(),):
        assert reducer.reduce(state, text) == reducer.reduce(state, text)
    envelope = json.dumps({"events": [{"kind": "fact", "body": text + "x"}], "state": "s"})
    assert JsonEventsReducer().reduce(state, envelope) == JsonEventsReducer().reduce(
        state, envelope
    )


def test_reductions_store_with_their_edges_in_a_real_store(store):
    events = JsonEventsReducer().reduce(None, json.dumps(ENVELOPE))
    entries = store.put_many("s", events.all_blocks, events.edges)
    assert [e.id for e in entries] == [block_id(b) for b in events.all_blocks]
    reducer = ToolUseReducer()
    turn = reducer.reduce(events.next_state.body, RESPONSE)
    store.put_many("s", turn.blocks, turn.edges)
    results = reducer.results(reducer.calls(RESPONSE), [ToolResult("toolu_1", "found")])
    store.put_many("s", results.blocks, results.edges)
    call = content_hash(BlockKind.TOOL_CALL, ToolCall("toolu_1", "get_user", {"id": "mia"}).body())
    (edge,) = store.edges_from(call, EdgeKind.TOOL_INVOCATION)
    assert store.get(edge.dst).body == ToolResult("toolu_1", "found").body()
    (parent,) = store.edges_from(call, EdgeKind.PARENT)
    assert store.get(parent.dst).body == "Let me check."


def test_the_registry_names_the_three_reducers():
    assert sorted(REDUCERS) == ["append-output", "json-events", "tool-use"]
