"""The page model of experiments: the tree, both outputs side by side, the playground round trip."""

from __future__ import annotations

import json

from runtime.agent.core import Agent
from runtime.blocks import canonical_json
from runtime.inspect.experiments import experiment_tree, outcome_view, playground_json
from runtime.providers import OfflineModel
from runtime.replay.edits import Change, ChangeKind
from runtime.replay.experiment import run_experiment
from runtime.replay.experimentlog import ExperimentLog


def test_the_playground_json_round_trips_to_the_recorded_bytes_and_sends_them(stores):
    store, traces = stores
    reply = Agent(store, traces, OfflineModel(), session="pg").say("What is 6 * 7?")
    rec = traces.get(reply.call_ids[-1])
    raw = traces.request_bytes(rec.prompt_hash)
    shown = playground_json(raw)
    assert canonical_json(json.loads(shown)) == raw
    assert '"cache_control"' in shown and '"tool_use_id"' in shown and '"input_schema"' in shown
    result = run_experiment(store, traces, rec.call_id, Change(ChangeKind.REQUEST, "", shown),
                            OfflineModel(), who="ana")  # fmt: skip
    assert result.record.prompt_hash == rec.prompt_hash and result.prepared.diff.identical


def test_outcomes_are_shown_side_by_side_with_tool_calls_and_usage(stores):
    store, traces = stores
    reply = Agent(store, traces, OfflineModel(), session="pg").say("What is 6 * 7?")
    first = traces.get(reply.call_ids[0])  # the call that chose the calculator
    result = run_experiment(store, traces, first.call_id,
                            Change(ChangeKind.EDIT, "messages[0].content[0]", "Say hello."),
                            OfflineModel(), who="ana")  # fmt: skip
    view = outcome_view(first, result.record, result.prepared.diff)
    assert [t.original for t in view.tool_calls] == ['calculator {"expression":"6*7"}']
    assert [t.child for t in view.tool_calls] == [None] and not view.same_tools
    assert not view.same_text and view.rows
    assert [u.label for u in view.usage][:4] == ["Input tokens", "Cache read", "Cache write",
                                                 "Output tokens"]  # fmt: skip
    tree = experiment_tree(ExperimentLog(traces), first)
    assert [(n.depth, n.row.child, n.row.who) for n in tree] == [(1, result.record.call_id, "ana")]


def test_a_playground_edit_is_proved_when_it_keeps_every_unit_in_place(stores):
    from runtime.replay.isolation import edit_diff

    store, traces = stores
    reply = Agent(store, traces, OfflineModel(), session="pg").say("What is 6 * 7?")
    data = json.loads(traces.request_bytes(traces.get(reply.call_ids[-1]).prompt_hash))
    edited = json.loads(json.dumps(data))
    edited["messages"][0]["content"][0]["text"] = "What is 6 * 8?"
    edited["temperature"] = 0.5
    data["temperature"] = 0
    proved = edit_diff(data, edited)
    assert proved.isolated is True
    assert set(proved.changed_units) == {"messages[0].content[0]", "temperature"}
    grown = json.loads(json.dumps(data))
    grown["messages"].append({"role": "user", "content": [{"type": "text", "text": "more"}]})
    assert edit_diff(data, grown).isolated is None  # a unit added: measured, not proved
    moved = json.loads(json.dumps(data))
    moved["messages"][0]["role"] = "assistant"  # outside every unit: not proved, not refuted
    assert edit_diff(data, moved).isolated is None
