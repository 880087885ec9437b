"""Counterfactual replay: one change per child, over real HTTP to the loopback Messages API."""

from __future__ import annotations

import json

import pytest

from runtime.agent.core import Agent
from runtime.errors import InvalidInput
from runtime.providers import OfflineModel
from runtime.replay.edits import Change, ChangeKind
from runtime.replay.experiment import prepare, run_experiment
from runtime.replay.experimentlog import ExperimentLog
from runtime.tracing.records import TraceOrigin, prompt_hash
from tests.fakes.anthropic_server import error_reply, text_reply
from tests.runtime.pager_support import profile

SESSION = "experimented"
TOOL_USE = "messages[1].content[1]"
TOOL_RESULT = "messages[2].content[0]"

pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def original(agent_turn):
    """A turn the sample agent made over HTTP: a tool call, then the answer (the second call)."""
    return agent_turn(SESSION)


def _sent(stores, original, model_server, make_adapter, change):
    store, traces = stores
    model_server.enqueue(text_reply("changed answer", usage=(100, 3, 0, 0)))
    result = run_experiment(store, traces, original.call_id, change, make_adapter(), who="ana")
    received = model_server.requests[-1].body
    assert (
        received == result.prepared.request and prompt_hash(received) == result.record.prompt_hash
    )
    return result, traces.request_bytes(original.prompt_hash), received


def _outside(raw: bytes, start: int, end: int) -> bytes:
    return raw[:start] + raw[end:]


def test_editing_a_block_changes_only_its_bytes_and_records_a_child(
    stores, original, model_server, make_adapter
):
    change = Change(ChangeKind.EDIT, "messages[0].content[0]", "What is 6 * 8?")
    result, before, after = _sent(stores, original, model_server, make_adapter, change)
    diff = result.prepared.diff
    assert diff.isolated and diff.prefix_kept and diff.changed_units == ("messages[0].content[0]",)
    start = diff.first_divergent_byte
    assert before[:start] == after[:start]
    assert before[diff.original_end :] == after[diff.child_end :]
    assert after[start : diff.child_end] == b"8"  # only the one character of the change
    child = result.record
    assert (child.parent_call_id, child.session, child.turn) == (
        original.call_id,
        SESSION,
        original.turn,
    )
    assert child.origin is TraceOrigin.REPLAY and child.replay_complete
    assert child.config["experiment"]["change"]["kind"] == "edit"
    row = ExperimentLog(stores[1]).children(original.call_id)[0]
    assert (row.child, row.who, row.description, row.input_tokens) == (
        child.call_id,
        "ana",
        "edit messages[0].content[0]",
        100,
    )


def test_the_cache_prefix_before_an_edit_in_the_messages_is_byte_identical(
    stores, original, model_server, make_adapter
):
    change = Change(ChangeKind.EDIT, TOOL_RESULT, "41")
    result, before, after = _sent(stores, original, model_server, make_adapter, change)
    data_a, data_b = json.loads(before), json.loads(after)
    assert data_a["tools"] == data_b["tools"] and data_a["system"] == data_b["system"]
    assert data_b["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert result.prepared.diff.prefix_kept and result.prepared.diff.breakpoint_unit == "system[0]"


def test_dropping_a_tool_use_drops_its_result_and_says_so(
    stores, original, model_server, make_adapter
):
    change = Change(ChangeKind.DROP, TOOL_USE)
    result, before, after = _sent(stores, original, model_server, make_adapter, change)
    data = json.loads(after)
    kinds = [b["type"] for m in data["messages"] for b in m["content"]]
    assert "tool_use" not in kinds and "tool_result" not in kinds
    assert len(data["messages"]) == 2  # the result's message held only the result
    assert result.prepared.notes == ("also dropped messages[2], the result of tool_use toolu_1",)
    assert result.prepared.diff.isolated and len(after) < len(before)


def test_dropping_a_tool_result_alone_is_refused_and_nothing_is_sent(
    stores, original, model_server
):
    store, traces = stores
    sent, recorded = model_server.request_count, traces.count(session=SESSION)
    with pytest.raises(InvalidInput, match="Drop the tool_use toolu_1 instead"):
        prepare(store, traces, original.call_id, Change(ChangeKind.DROP, TOOL_RESULT))
    assert model_server.request_count == sent and traces.count(session=SESSION) == recorded


def test_an_edit_that_renames_a_tool_call_id_is_refused(stores, original):
    store, traces = stores
    unit = {"type": "tool_use", "id": "toolu_2", "name": "calculator", "input": {"expression": "1"}}
    with pytest.raises(InvalidInput, match="without its pair"):
        prepare(store, traces, original.call_id, Change(ChangeKind.EDIT, TOOL_USE, unit))


def test_inserting_a_block_adds_only_its_bytes(stores, original, model_server, make_adapter):
    change = Change(ChangeKind.INSERT, "messages[0].content[0]", "Answer in French.")
    result, before, after = _sent(stores, original, model_server, make_adapter, change)
    diff = result.prepared.diff
    inserted = after[diff.first_divergent_byte : diff.child_end]
    assert b"Answer in French." in inserted and diff.original_end == diff.first_divergent_byte
    assert _outside(after, diff.first_divergent_byte, diff.child_end) == before
    assert json.loads(after)["messages"][0]["content"][1] == {
        "type": "text",
        "text": "Answer in French.",
    }


def test_a_block_id_of_the_plan_names_its_unit(stores, original, model_server, make_adapter):
    store, traces = stores
    call_block = next(s["block_id"] for s in original.plan["selected"] if s["kind"] == "tool-call")
    prepared = prepare(store, traces, original.call_id, Change(ChangeKind.DROP, call_block[:10]))
    assert prepared.change.target == TOOL_USE and prepared.diff.isolated


@pytest.mark.parametrize(
    ("change", "key", "value"),
    [
        (Change(ChangeKind.PARAM, "temperature", 0), "temperature", 0),
        (Change(ChangeKind.MODEL, "", "claude-haiku-4-5"), "model", "claude-haiku-4-5"),
    ],
)
def test_a_parameter_or_the_model_changes_one_member_only(
    change, key, value, stores, original, model_server, make_adapter
):
    result, before, after = _sent(stores, original, model_server, make_adapter, change)
    data_a, data_b = json.loads(before), json.loads(after)
    assert data_b.pop(key) == value
    data_a.pop(key, None)
    assert data_a == data_b and result.prepared.diff.isolated
    assert result.record.model == (value if key == "model" else original.model)


@pytest.fixture
def paged(stores):
    """A five-turn session paged for a 900-token budget: the pager had to leave blocks out."""
    store, traces = stores
    agent = Agent(store, traces, OfflineModel(), session="paged", profile=profile(900))
    for question in ("What is 6 * 7?", "Tell me about user u-1001", "What is 2 + 2?",
                     "hello there", "What is 9 * 9?"):  # fmt: skip
        reply = agent.say(question)
    record = traces.get(reply.call_ids[-1])
    assert record.plan["omitted"]
    return record


def test_a_same_budget_change_that_re_pages_to_the_same_bytes_is_refused(stores, paged):
    store, traces = stores
    with pytest.raises(InvalidInput, match="same bytes"):
        prepare(store, traces, paged.call_id, Change(ChangeKind.WEIGHT, "bm25", 5.0))


def test_a_retriever_weight_change_re_pages_and_keeps_the_cached_prefix(
    stores, paged, model_server, make_adapter
):
    change = Change(ChangeKind.WEIGHT, "recency", 0.0)
    result, before, after = _sent(stores, paged, model_server, make_adapter, change)
    data_a, data_b = json.loads(before), json.loads(after)
    assert data_a["system"] == data_b["system"] and data_a["tools"] == data_b["tools"]
    assert data_a["messages"] != data_b["messages"]
    diff = result.prepared.diff
    assert diff.isolated is None and diff.prefix_kept
    assert diff.first_changed_unit.startswith("messages[")
    assert result.record.plan != paged.plan and result.record.plan["settings"]["retrievers"][0] == {
        **paged.plan["settings"]["retrievers"][0],
        "weight": 0.0,
    }


def test_a_section_budget_change_re_pages_under_the_new_budget(
    stores, paged, model_server, make_adapter
):
    change = Change(ChangeKind.BUDGET, "recent", 0.6)
    result, before, after = _sent(stores, paged, model_server, make_adapter, change)
    assert before != after
    assert result.record.plan["settings"]["budgets"]["recent"] == 0.6


def test_an_unknown_section_or_retriever_is_refused_with_the_names(stores, paged):
    store, traces = stores
    with pytest.raises(InvalidInput, match="--budget takes state, plan, recent"):
        prepare(store, traces, paged.call_id, Change(ChangeKind.BUDGET, "nope", 0.1))
    with pytest.raises(InvalidInput, match="--weight takes recency, bm25"):
        prepare(store, traces, paged.call_id, Change(ChangeKind.WEIGHT, "nope", 0.1))


def test_experiments_are_recorded_and_searchable_on_every_backend(backend_store):
    from runtime.storage.tracestore import KvTraceStore

    traces = KvTraceStore(backend_store)
    reply = Agent(backend_store, traces, OfflineModel(), session="both").say("What is 6 * 7?")
    first = run_experiment(backend_store, traces, reply.call_ids[-1],
                           Change(ChangeKind.PARAM, "temperature", 0), OfflineModel(), who="ana")  # fmt: skip
    second = run_experiment(backend_store, traces, first.record.call_id,
                            Change(ChangeKind.DROP, TOOL_USE), OfflineModel(), who="bo")  # fmt: skip
    log = ExperimentLog(traces)
    tree = log.tree(reply.call_ids[-1])
    assert [(d, r.child) for d, r in tree] == [
        (1, first.record.call_id),
        (2, second.record.call_id),
    ]
    assert tree[1][1].root == reply.call_ids[-1] and tree[1][1].parent == first.record.call_id
    assert [r.child for r in log.search("drop bo")] == [second.record.call_id]
    assert [r.child for r in log.search("temperature")] == [first.record.call_id]
    assert (
        log.row_of(second.record.call_id) == tree[1][1] and log.row_of(reply.call_ids[-1]) is None
    )


def test_the_same_bytes_can_go_to_another_provider_of_their_format(stores, original):
    store, traces = stores
    result = run_experiment(store, traces, original.call_id,
                            Change(ChangeKind.PROVIDER, "", "offline"), OfflineModel(), who="ana")  # fmt: skip
    assert result.record.prompt_hash == original.prompt_hash
    assert result.record.provider.value == "offline" and result.prepared.diff.identical
    assert result.row.description == "provider -> offline"


def test_a_model_error_is_recorded_on_the_child(stores, original, model_server, make_adapter):
    store, traces = stores
    model_server.enqueue(error_reply(400, "temperature out of range"))
    result = run_experiment(store, traces, original.call_id, Change(ChangeKind.PARAM, "temperature", 9),
                            make_adapter(max_retries=0), who="ana")  # fmt: skip
    assert (
        result.record.error is not None
        and "temperature out of range" in result.record.error.message
    )
    assert ExperimentLog(traces).children(original.call_id)[0].status == "error"


def test_an_openai_client_is_refused_for_a_messages_request_before_anything_is_recorded(
    stores, original
):
    from runtime.providers import get_provider
    from runtime.replay.resend import NotReplayable

    store, traces = stores
    client = get_provider("openai").client(api_key="sk-test", base_url="http://127.0.0.1:9")
    with pytest.raises(NotReplayable):
        run_experiment(store, traces, original.call_id, Change(ChangeKind.NONE), client, who="ana")
    assert ExperimentLog(traces).count() == 0
