"""Ingesting OTLP GenAI spans: each convention generation, idempotency, refusals, atomicity."""

from __future__ import annotations

import gzip
import json

import pytest

from runtime.blocks import BlockKind
from runtime.otel.ingest import ingest, ingest_request
from runtime.otel.spans import SPANS, span_tree, trace_spans, turn_span_tree
from runtime.otel.wire import DEFAULT_OTLP_LIMITS, OtlpLimits, OtlpRejected
from runtime.replay.fidelity import Fidelity, replay_capability
from runtime.replay.resend import NotReplayable, check_replayable
from runtime.tracing.records import TraceOrigin, from_spans
from tests.fakes import otlp

PB, JS = "application/x-protobuf", "application/json"


def _turns(traces, session):
    return [traces.get(cid) for _, cid in traces.turns(session)]


def _kinds(store, session):
    return [(e.block.kind, e.block.body) for e in store.entries(session)]


@pytest.mark.parametrize("kind", ["protobuf", "json"])
def test_current_conventions_become_a_session_of_turns_with_tools_usage_and_messages(stores, kind):
    store, traces = stores
    body = otlp.body(otlp.request(*otlp.agent_tree()), kind)
    result = ingest(body, PB if kind == "protobuf" else JS, None, store, traces)
    assert (result.accepted, result.rejected, result.turns_recorded) == (4, 0, 2)
    assert result.sessions == ("conv-1",)
    kinds = [k for k, _ in _kinds(store, "conv-1")]
    assert kinds == ["tool-schema", "system", "user-message", "tool-call", "tool-result",
                     "assistant-message"]  # fmt: skip
    first, second = _turns(traces, "conv-1")
    assert first.model == "claude-sonnet-4-6" and first.origin is TraceOrigin.IMPORT
    assert from_spans(first) and first.config["otlp"]["provider"] == "anthropic"
    assert first.response["tool_calls"][0]["function"]["name"] == "get_weather"
    assert second.response["content"] == otlp.ANSWER
    # input_tokens counts cached tokens in the conventions; Usage keeps them apart.
    assert (second.usage.input_tokens, second.usage.cache_read_input_tokens) == (140, 100)
    assert (first.usage.input_tokens, first.usage.cache_creation_input_tokens) == (20, 100)
    assert [s["seq"] for s in second.plan["selected"]] == [0, 1, 2, 3, 4]
    request = json.loads(traces.request_bytes(second.prompt_hash))
    assert (
        request["max_tokens"] == 1024 and request["tools"][0]["function"]["name"] == "get_weather"
    )
    assert [m["role"] for m in request["messages"]] == ["system", "user", "assistant", "tool"]
    assert store.session_info("conv-1").meta["source"] == "otlp"


def test_indexed_prompt_attributes_become_the_same_messages(stores):
    store, traces = stores
    result = ingest_request(otlp.request(otlp.indexed_chat(5)), store, traces)
    assert result.turns_recorded == 1
    session = "11" * 16  # no conversation id: the trace id
    (turn,) = _turns(traces, session)
    assert (
        turn.model == "gpt-4o-2024-08-06"
        and turn.config["otlp"]["convention"] == "indexed-attributes"
    )
    assert turn.usage.input_tokens == 240 and turn.usage.output_tokens == 20
    kinds = [k for k, _ in _kinds(store, session)]
    assert kinds == ["tool-schema", "system", "user-message", "tool-call", "tool-result",
                     "assistant-message"]  # fmt: skip


def test_content_events_become_messages(stores):
    store, traces = stores
    ingest_request(otlp.request(otlp.events_chat(6)), store, traces)
    (turn,) = _turns(traces, "22" * 16)
    assert turn.config["otlp"]["convention"] == "content-events"
    assert _kinds(store, "22" * 16) == [("system", otlp.SYSTEM), ("user-message", otlp.QUESTION),
                                        ("assistant-message", otlp.ANSWER)]  # fmt: skip


def test_the_same_spans_sent_twice_add_no_turn_and_no_block(stores):
    store, traces = stores
    req = otlp.request(*otlp.agent_tree())
    ingest_request(req, store, traces)
    again = ingest(otlp.body(req, "json"), JS, None, store, traces)
    assert (again.turns_recorded, again.turns_skipped, again.rejected) == (0, 2, 0)
    assert len(_turns(traces, "conv-1")) == 2 and store.session_info("conv-1").count == 6


def test_spans_of_one_conversation_sent_apart_and_out_of_order_hold_each_message_once(stores):
    store, traces = stores
    tree = otlp.agent_tree()
    ingest_request(otlp.request(tree[3]), store, traces)  # the second call first
    ingest_request(otlp.request(tree[1]), store, traces)
    assert store.session_info("conv-1").count == 6
    assert [t.turn for t in _turns(traces, "conv-1")] == [1, 2]


def test_calls_that_start_in_the_same_millisecond_keep_their_conversation_order(stores):
    # Records exported from an import share a start time; span ids (here the later call's is
    # smaller) must not decide which turn came first: the shorter history did.
    store, traces = stores
    first, second = otlp.current_chat(9, turn=1), otlp.current_chat(4, turn=2)
    second.start_time_unix_nano = first.start_time_unix_nano
    ingest_request(otlp.request(second, first), store, traces)
    turns = _turns(traces, "conv-1")
    assert [t.response.get("content") for t in turns] == [None, otlp.ANSWER]
    assert [e.block.kind for e in store.entries("conv-1")][-1] == BlockKind.ASSISTANT_MESSAGE


def test_a_span_sent_again_with_other_messages_is_refused_and_nothing_changes(stores):
    store, traces = stores
    ingest_request(otlp.request(otlp.current_chat(2, turn=1)), store, traces)
    changed = otlp.current_chat(2, turn=1, **{"gen_ai.request.max_tokens": 9})
    result = ingest_request(otlp.request(changed), store, traces)
    assert result.rejected == 1 and "ingested before with different messages" in result.message


def test_spans_missing_or_conflicting_attributes_are_refused_by_name_others_accepted(stores):
    store, traces = stores
    no_messages = otlp.span(7, "chat", {"gen_ai.operation.name": "chat",
                                        "gen_ai.request.model": "m"})  # fmt: skip
    conflict = otlp.current_chat(8, turn=2, conversation="c2",
                                 **{"gen_ai.usage.prompt_tokens": 5})  # fmt: skip
    bad_json = otlp.current_chat(9, turn=1, conversation="c3",
                                 **{"gen_ai.input.messages": "[{not json"})  # fmt: skip
    no_model = otlp.current_chat(10, turn=1, conversation="c4", **{"gen_ai.request.model": ""})
    result = ingest_request(
        otlp.request(no_messages, conflict, bad_json, no_model, otlp.current_chat(2, turn=1)),
        store, traces,
    )  # fmt: skip
    assert (result.accepted, result.rejected, result.turns_recorded) == (1, 4, 1)
    message = result.message
    assert "without messages" in message and "CAPTURE_MESSAGE_CONTENT" in message
    assert "conflicting token counts" in message and "gen_ai.usage.prompt_tokens=5" in message
    assert "gen_ai.input.messages is not JSON" in message
    assert "no gen_ai.request.model" in message
    assert {s.session for s in store.sessions()} == {"conv-1"}


def test_indexed_and_current_forms_that_disagree_are_refused(stores):
    store, traces = stores
    both = otlp.current_chat(3, turn=1, **{"gen_ai.prompt.0.role": "user",
                                           "gen_ai.prompt.0.content": "something else"})  # fmt: skip
    result = ingest_request(otlp.request(both), store, traces)
    assert result.rejected == 1 and "disagree" in result.message


def test_a_conversation_id_naming_a_session_of_another_source_is_refused(stores):
    store, traces = stores
    from runtime import NewBlock

    store.put("conv-1", NewBlock(BlockKind.USER_MESSAGE, "mine"))
    result = ingest_request(otlp.request(otlp.current_chat(2, turn=1)), store, traces)
    assert result.rejected == 1 and "did not come from spans" in result.message
    assert store.session_info("conv-1").count == 1


def test_a_write_that_fails_leaves_nothing_behind(stores, monkeypatch):
    store, traces = stores

    def broken(items):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(traces, "record_stream", broken)
    with pytest.raises(RuntimeError):
        ingest_request(otlp.request(*otlp.agent_tree()), store, traces)
    assert store.sessions() == []
    assert store.kv.read(lambda t: list(t.scan(SPANS))) == []


def test_a_turn_from_spans_is_badged_and_replay_refuses_it(stores):
    store, traces = stores
    ingest_request(otlp.request(otlp.current_chat(2, turn=1)), store, traces)
    (turn,) = _turns(traces, "conv-1")
    capability = replay_capability(turn)
    assert capability.fidelity is Fidelity.FROM_SPANS and capability.label == "from spans: rebuilt"
    assert not capability.can_replay and capability.can_repage
    assert "not the bytes" in capability.title
    with pytest.raises(NotReplayable, match="rebuilt from an OpenTelemetry span"):
        check_replayable(turn)


def test_a_turn_span_tree_holds_its_agent_its_call_and_the_tool_it_asked_for(stores):
    store, traces = stores
    ingest_request(otlp.request(*otlp.agent_tree()), store, traces)
    first, second = _turns(traces, "conv-1")
    tree = turn_span_tree(store.kv, first.config)
    assert [(n.name, n.depth, n.current) for n in tree] == [
        ("invoke_agent weather", 0, False), ("chat claude-sonnet-4-6", 1, True),
        ("execute_tool get_weather", 1, False),
    ]  # fmt: skip
    assert tree[2].duration_ms == 450.0 and tree[2].start_ms == 450.0
    assert [n.current for n in turn_span_tree(store.kv, second.config)] == [False, True]
    rows = store.kv.read(lambda t: trace_spans(t, otlp.TRACE.hex()))
    assert "gen_ai.input.messages" not in rows[1]["attributes"]  # content lives in blocks
    assert span_tree(rows, "ffffffffffffffff") == []


def test_a_failed_call_span_becomes_an_error_turn(stores):
    store, traces = stores
    failed = otlp.current_chat(2, turn=1, **{"gen_ai.output.messages": "[]"})
    failed.status.code, failed.status.message = 2, "overloaded"
    ingest_request(otlp.request(failed), store, traces)
    (turn,) = _turns(traces, "conv-1")
    assert turn.status.value == "error" and turn.error.message == "overloaded"


# -- bodies refused whole ------------------------------------------------------------------


def _refusal(body, content_type=PB, encoding=None, limits=DEFAULT_OTLP_LIMITS, stores=None):
    store, traces = stores
    with pytest.raises(OtlpRejected) as info:
        ingest(body, content_type, encoding, store, traces, limits)
    return info.value


def test_malformed_protobuf_json_and_content_types_are_refused_with_what_was_wrong(stores):
    assert "not a protobuf ExportTraceServiceRequest" in str(
        _refusal(b"\xff\xff\xff", stores=stores)
    )
    js = _refusal(b"{nope", JS, stores=stores)
    assert js.status == 400 and "invalid JSON" in str(js)
    shape = _refusal(b'{"resourceSpans": 3}', JS, stores=stores)
    assert "not an OTLP trace export" in str(shape)
    ids = _refusal(b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}', JS,
                   stores=stores)  # fmt: skip
    assert "traceId 'zz' is not hex" in str(ids)
    wrong = _refusal(b"x", "text/plain", stores=stores)
    assert wrong.status == 415 and "application/x-protobuf" in str(wrong)


def test_gzip_bodies_are_inflated_and_bombs_and_oversize_bodies_refused(stores):
    store, traces = stores
    body = otlp.body(otlp.request(*otlp.agent_tree()))
    assert ingest(gzip.compress(body), PB, "gzip", store, traces).turns_recorded == 2
    bomb = gzip.compress(b"\0" * 5_000_000)
    refused = _refusal(bomb, PB, "gzip", OtlpLimits(max_decoded_bytes=1_000_000), stores=stores)
    assert refused.status == 413 and "inflates to more than 1,000,000 bytes" in str(refused)
    big = _refusal(body, PB, None, OtlpLimits(max_body_bytes=100), stores=stores)
    assert big.status == 413 and "over the limit of 100" in str(big)
    assert "not valid gzip" in str(_refusal(b"notgzip", PB, "gzip", stores=stores))
    assert _refusal(body, PB, "br", stores=stores).status == 415
    many = _refusal(body, PB, None, OtlpLimits(max_spans=3), stores=stores)
    assert "4 spans, over the limit of 3" in str(many)


def test_spans_with_ids_of_the_wrong_length_are_refused(stores):
    store, traces = stores
    bad = otlp.current_chat(2, turn=1)
    bad.trace_id = b"\x01\x02"
    result = ingest_request(otlp.request(bad, otlp.current_chat(4, turn=2)), store, traces)
    assert (result.accepted, result.rejected) == (1, 1) and "16 and 8 bytes" in result.message


def test_a_message_repeated_across_spans_counts_its_dropped_parts_in_each_turn(stores):
    store, traces = stores
    image = {"role": "user", "parts": [{"type": "text", "content": otlp.QUESTION},
                                       {"type": "blob", "modality": "image", "content": "AAAA"}]}  # fmt: skip
    answer = {"role": "assistant", "parts": [{"type": "text", "content": otlp.ANSWER}]}
    again = {"role": "user", "parts": [{"type": "text", "content": "And tomorrow?"}]}
    spans = [
        otlp.current_chat(2, turn=2, **{"gen_ai.input.messages": json.dumps([image])}),
        otlp.current_chat(3, turn=3, **{"gen_ai.input.messages": json.dumps([image, answer, again])}),
    ]  # fmt: skip
    result = ingest_request(otlp.request(*spans), store, traces)
    assert result.turns_recorded == 2
    first, second = _turns(traces, "conv-1")
    assert (
        first.config["otlp"]["dropped_parts"] == 1 and second.config["otlp"]["dropped_parts"] == 1
    )
    assert [k for k, _ in _kinds(store, "conv-1")].count("user-message") == 2  # the question once
