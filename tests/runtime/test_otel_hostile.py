"""Hostile OTLP exports sent to the real receiver over HTTP: each is refused with a message
that says what was wrong (a 400, or partial success naming the refused spans), never a 500,
and a refused span or request writes nothing."""

from __future__ import annotations

import gzip
import json
import math
import os

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from runtime.otel.spans import SPANS, trace_spans, turn_span_tree
from runtime.otel.wire import Status
from tests.fakes import otlp

PB, JS = "application/x-protobuf", "application/json"
OTHER_TRACE = bytes.fromhex("0123456789abcdef0123456789abcdef")


def _post(receiver, body, content_type=PB, **headers):
    sent = {"content-type": content_type, **receiver.headers, **headers}
    return httpx2.post(receiver.url, content=body, headers=sent)


def _partial(response):
    assert response.status_code == 200, response.content
    return ExportTraceServiceResponse.FromString(response.content).partial_success


def _refused(response):
    assert response.status_code == 400, response.content
    return Status.FromString(response.content).message


def _stored_rows(receiver, trace):
    receiver.store.kv.write(lambda t: t.count(SPANS))
    return receiver.store.kv.read(lambda t: trace_spans(t, trace.hex()))


def _chat(n, trace=OTHER_TRACE, **attrs):
    base = {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
        "gen_ai.conversation.id": "hostile",
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "yo"}]}]),
    }  # fmt: skip
    return otlp.span(n, "chat", base | attrs, trace=trace)


def _nan_array() -> AnyValue:
    value = AnyValue()
    value.array_value.values.add(double_value=1.0)
    value.array_value.values.add(double_value=math.nan)
    return value


NON_FINITE = {
    "a request setting": ("gen_ai.request.temperature", AnyValue(double_value=math.nan)),
    "an unknown request setting": ("gen_ai.request.foo", AnyValue(double_value=math.inf)),
    "a kept attribute": ("gen_ai.agent.score", _nan_array()),
    "indexed content": ("gen_ai.prompt.0.content", AnyValue(double_value=-math.inf)),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE))
def test_a_span_with_a_non_finite_number_is_refused_and_the_others_kept(otlp_receiver, case):
    key, value = NON_FINITE[case]
    bad = _chat(9)
    bad.attributes.add(key=key, value=value)
    response = _post(otlp_receiver, otlp.body(otlp.request(bad, *otlp.agent_tree())))
    partial = _partial(response)
    assert partial.rejected_spans == 1
    assert key in partial.error_message and "not a finite number" in partial.error_message
    assert [s.session for s in otlp_receiver.store.sessions()] == ["conv-1"]
    assert _stored_rows(otlp_receiver, OTHER_TRACE) == []


def test_a_non_finite_number_in_an_otlp_json_body_is_refused(otlp_receiver):
    bad = _chat(9)
    bad.attributes.add(key="gen_ai.request.temperature", value=AnyValue(double_value=math.nan))
    body = otlp.body(otlp.request(bad), "json")
    assert b'"NaN"' in body  # how OTLP JSON writes a NaN double
    response = _post(otlp_receiver, body, JS)
    assert response.status_code == 400
    assert "gen_ai.request.temperature" in json.loads(response.content)["message"]
    assert otlp_receiver.store.sessions() == []


def test_a_non_finite_number_a_turn_is_not_made_of_refuses_nothing(otlp_receiver):
    chat = _chat(9)
    chat.attributes.add(key="http.retry_score", value=AnyValue(double_value=math.nan))
    response = _post(otlp_receiver, otlp.body(otlp.request(chat)))
    assert response.status_code == 200 and not _partial(response).rejected_spans
    assert len(otlp_receiver.traces.turns("hostile")) == 1


def test_only_the_values_a_tool_span_keeps_must_be_finite(otlp_receiver):
    kept = otlp.span(
        7, "execute_tool f", {"gen_ai.operation.name": "execute_tool"}, trace=OTHER_TRACE
    )
    kept.attributes.add(key="http.score", value=AnyValue(double_value=math.nan))
    bad = otlp.span(
        8, "execute_tool g", {"gen_ai.operation.name": "execute_tool"}, trace=OTHER_TRACE
    )
    bad.attributes.add(key="gen_ai.tool.score", value=AnyValue(double_value=math.nan))
    partial = _partial(_post(otlp_receiver, otlp.body(otlp.request(kept, bad))))
    assert partial.rejected_spans == 1 and "gen_ai.tool.score" in partial.error_message
    assert [r["span"] for r in _stored_rows(otlp_receiver, OTHER_TRACE)] == [otlp.span_id(7).hex()]


def _event_chat(n, prompt):
    events = [
        ("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(prompt)}),
        ("gen_ai.content.completion",
         {"gen_ai.completion": json.dumps([{"role": "assistant", "content": "ok"}])}),
    ]  # fmt: skip
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}
    return otlp.span(n, "chat", attrs, trace=OTHER_TRACE, events=events)


@pytest.mark.parametrize(
    "tool_calls",
    [5, "abc", {"id": "a"}, [{"id": "a", "function": "f"}], [{"id": "a", "function": [1]}]],
)
def test_openai_style_tool_calls_that_are_not_objects_are_refused(otlp_receiver, tool_calls):
    prompt = [{"role": "user", "content": "hi"},
              {"role": "assistant", "content": "calling", "tool_calls": tool_calls}]  # fmt: skip
    response = _post(otlp_receiver, otlp.body(otlp.request(_event_chat(9, prompt))))
    message = _refused(response)
    assert "gen_ai.prompt[1]" in message and "tool_calls" in message
    assert otlp_receiver.store.sessions() == []


def test_a_gzip_body_of_several_members_is_read_whole(otlp_receiver):
    tree = otlp.agent_tree()  # a protobuf body cut between spans: each part is a request
    first, second = (otlp.request(*part).SerializeToString() for part in (tree[:2], tree[2:]))
    body = gzip.compress(first) + b"\0" * 4 + gzip.compress(second) + b"\0" * 4  # zeros pad
    assert gzip.decompress(body) == first + second
    response = _post(otlp_receiver, body, **{"content-encoding": "gzip"})
    assert response.status_code == 200 and not _partial(response).rejected_spans
    turns = otlp_receiver.traces.turns("conv-1")
    assert len(turns) == 2 and len(_stored_rows(otlp_receiver, otlp.TRACE)) == 4


@pytest.mark.parametrize("tail", [b"garbage", b"\x1f\x8b\x08\x00", b"\0" * 8 + b"x"])
def test_bytes_after_the_gzip_stream_are_refused_not_ignored(otlp_receiver, tail):
    body = gzip.compress(otlp.body(otlp.request(*otlp.agent_tree()))) + tail
    message = _refused(_post(otlp_receiver, body, **{"content-encoding": "gzip"}))
    assert "gzip" in message
    assert otlp_receiver.store.sessions() == []


def test_several_gzip_members_share_one_inflated_size_limit():
    from runtime.otel.wire import OtlpLimits, OtlpRejected, decode_request

    member = gzip.compress(b"\0" * 600)
    with pytest.raises(OtlpRejected, match="inflates to more than 1,000 bytes") as refused:
        decode_request(member * 2, PB, "gzip", OtlpLimits(max_decoded_bytes=1000))
    assert refused.value.status == 413


def _turn_spans(receiver, session):
    return [receiver.traces.get(cid).config["otlp"]["span"] for _, cid in
            receiver.traces.turns(session)]  # fmt: skip


def test_two_different_spans_with_one_id_are_both_refused(otlp_receiver):
    agent, first, tool, second = otlp.agent_tree()
    clash = otlp.current_chat(2, turn=2)  # span 2 again, with other messages
    response = _post(otlp_receiver, otlp.body(otlp.request(agent, first, clash, tool)))
    partial = _partial(response)
    assert partial.rejected_spans == 2 and "appears 2 times" in partial.error_message
    assert otlp_receiver.store.sessions() == []  # neither copy became a turn
    assert [r["span"] for r in _stored_rows(otlp_receiver, otlp.TRACE)] == [
        otlp.span_id(1).hex(), otlp.span_id(3).hex()]  # fmt: skip


def test_a_tool_span_reusing_a_chat_spans_id_cannot_replace_its_row(otlp_receiver):
    agent, first, tool, second = otlp.agent_tree()
    tool.span_id = first.span_id
    partial = _partial(_post(otlp_receiver, otlp.body(otlp.request(agent, first, tool, second))))
    assert partial.rejected_spans == 2 and "appears 2 times" in partial.error_message
    assert _turn_spans(otlp_receiver, "conv-1") == [otlp.span_id(4).hex()]
    rows = {r["span"]: r["name"] for r in _stored_rows(otlp_receiver, otlp.TRACE)}
    assert rows == {otlp.span_id(1).hex(): agent.name, otlp.span_id(4).hex(): second.name}


def test_a_span_sent_twice_in_one_request_is_taken_once(otlp_receiver):
    tree = otlp.agent_tree()
    response = _post(otlp_receiver, otlp.body(otlp.request(*tree, *tree)))
    assert response.status_code == 200 and not _partial(response).rejected_spans
    assert _turn_spans(otlp_receiver, "conv-1") == [otlp.span_id(2).hex(), otlp.span_id(4).hex()]
    assert len(_stored_rows(otlp_receiver, otlp.TRACE)) == 4


def _tree_within(engine, config, seconds=10.0):
    """turn_span_tree in a thread: a tree that never ends fails the test instead of hanging."""
    import threading

    out: list = []
    worker = threading.Thread(target=lambda: out.append(turn_span_tree(engine, config)),
                              daemon=True)  # fmt: skip
    worker.start()
    worker.join(seconds)
    assert out, f"the span tree did not finish in {seconds} s"
    return out[0]


def test_a_span_that_is_its_own_parent_has_a_tree(otlp_receiver):
    chat = otlp.current_chat(2, turn=1)
    chat.parent_span_id = chat.span_id
    assert _post(otlp_receiver, otlp.body(otlp.request(chat))).status_code == 200
    ((_, call_id),) = otlp_receiver.traces.turns("conv-1")
    config = otlp_receiver.traces.get(call_id).config
    tree = _tree_within(otlp_receiver.store.kv, config)
    assert [(n.span_id, n.depth, n.current) for n in tree] == [(otlp.span_id(2).hex(), 0, True)]


def test_spans_whose_parents_make_a_cycle_have_a_tree(otlp_receiver):
    agent, first, tool, second = otlp.agent_tree()
    agent.parent_span_id = tool.span_id  # agent -> tool -> agent: neither has a root
    assert (
        _post(otlp_receiver, otlp.body(otlp.request(agent, first, tool, second))).status_code == 200
    )
    for _, call_id in otlp_receiver.traces.turns("conv-1"):
        tree = _tree_within(otlp_receiver.store.kv, otlp_receiver.traces.get(call_id).config)
        ids = [n.span_id for n in tree]
        assert len(ids) == len(set(ids)) and [n.current for n in tree].count(True) == 1
        assert all(n.depth < 4 for n in tree)


def test_a_span_sent_again_under_another_conversation_is_not_recorded_twice(otlp_receiver):
    assert _post(otlp_receiver, otlp.body(otlp.request(*otlp.agent_tree()))).status_code == 200
    moved = otlp.current_chat(2, turn=1, conversation="conv-2")  # span 2 again, relabelled
    unlabelled = otlp.current_chat(4, turn=2, conversation=None)  # its session: the trace id
    response = _post(otlp_receiver, otlp.body(otlp.request(moved, unlabelled)))
    message = _refused(response)
    assert "ingested before into session 'conv-1'" in message
    assert [s.session for s in otlp_receiver.store.sessions()] == ["conv-1"]
    assert _turn_spans(otlp_receiver, "conv-1") == [otlp.span_id(2).hex(), otlp.span_id(4).hex()]
    rows = {r["span"]: r for r in _stored_rows(otlp_receiver, otlp.TRACE)}
    assert rows[otlp.span_id(2).hex()]["attributes"]["gen_ai.conversation.id"] == "conv-1"


def _indexed(n, **attrs):
    base = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
            "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "hi",
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "yo"}  # fmt: skip
    return otlp.span(n, "chat", base | attrs, trace=OTHER_TRACE)


@pytest.mark.parametrize(
    "key",
    [
        "gen_ai.prompt.{big}.role",
        "gen_ai.completion.{big}.content",
        "gen_ai.prompt.0.tool_calls.{big}.id",
    ],  # fmt: skip
)
def test_an_indexed_attribute_with_a_huge_index_is_refused(otlp_receiver, key):
    bad = _indexed(9, **{key.format(big="9" * 5000): "x"})
    message = _refused(_post(otlp_receiver, otlp.body(otlp.request(bad))))
    assert "index of 5,000 digits" in message
    assert otlp_receiver.store.sessions() == []


def test_only_ascii_digits_are_indexes(otlp_receiver):
    arabic_one = "\u0661"  # a Unicode digit: not the index 1
    span = _indexed(9, **{f"gen_ai.prompt.{arabic_one}.role": "user",
                          f"gen_ai.prompt.{arabic_one}.content": "not a message"})  # fmt: skip
    assert _post(otlp_receiver, otlp.body(otlp.request(span))).status_code == 200
    bodies = [e.block.body for e in otlp_receiver.store.entries(OTHER_TRACE.hex())]
    assert bodies == ["hi", "yo"]


@pytest.mark.parametrize("text", ["[citation needed] is this true?", "[1, 2, 3] sorted?", "[x"])
@pytest.mark.parametrize("convention", ["indexed", "events"])
def test_message_text_that_begins_with_a_bracket_is_text(otlp_receiver, text, convention):
    if convention == "indexed":
        span = _indexed(9, **{"gen_ai.prompt.0.content": text})
    else:
        span = _event_chat(9, [{"role": "user", "content": text}])
    response = _post(otlp_receiver, otlp.body(otlp.request(span)))
    assert response.status_code == 200 and not _partial(response).rejected_spans
    bodies = [e.block.body for e in otlp_receiver.store.entries(OTHER_TRACE.hex())]
    assert bodies[0] == text


def test_indexed_tool_call_arguments_that_are_not_json_are_kept_as_sent(otlp_receiver):
    cut = '{"city": "Par'  # the model's arguments, cut off by max_tokens
    span = _indexed(9, **{"gen_ai.completion.0.content": "",
                          "gen_ai.completion.0.finish_reason": "length",
                          "gen_ai.completion.0.tool_calls.0.id": "call_1",
                          "gen_ai.completion.0.tool_calls.0.name": "get_weather",
                          "gen_ai.completion.0.tool_calls.0.arguments": cut})  # fmt: skip
    response = _post(otlp_receiver, otlp.body(otlp.request(span)))
    assert response.status_code == 200 and not _partial(response).rejected_spans
    ((_, call_id),) = otlp_receiver.traces.turns(OTHER_TRACE.hex())
    (call,) = otlp_receiver.traces.get(call_id).response["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": cut}


# -- any mix of hostile attributes: an answer, never a dropped connection or a half-write ----

_WORDS = st.sampled_from(
    ["role", "parts", "type", "text", "content", "tool_call", "tool_call_response", "id",
     "name", "arguments", "response", "user", "assistant", "system", "tool", "finish_reason",
     "function", "tool_calls", "tool_call_id", "input", "tool_use", "tool_result",
     "tool_use_id", "parameters", "input_schema", "["]
)  # fmt: skip
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1),
                    st.floats(width=32), st.sampled_from([math.nan, -math.inf]), _WORDS,
                    st.text(max_size=3))  # fmt: skip


def _nested(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=3) | st.dictionaries(_WORDS, inner, max_size=4)


_TREES = st.recursive(_LEAVES, _nested, max_leaves=20)
_KEYS = st.sampled_from(
    ["gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
     "gen_ai.tool.definitions", "gen_ai.prompt.0.role", "gen_ai.prompt.0.content",
     "gen_ai.prompt.0.tool_calls.0.arguments", "gen_ai.prompt.0.tool_calls.0.id",
     "gen_ai.completion.0.role", "gen_ai.completion.0.content",
     "gen_ai.completion.0.tool_calls.0.name", "llm.request.functions.0.name",
     "llm.request.functions.0.parameters", "gen_ai.response.finish_reasons",
     "gen_ai.conversation.id", "gen_ai.usage.input_tokens", "gen_ai.request.temperature",
     "gen_ai.request.stop_sequences", "gen_ai.response.model", "gen_ai.agent.name",
     "llm386.turn"]
)  # fmt: skip


def _any(value) -> AnyValue:
    out = AnyValue()
    if isinstance(value, dict):
        for key, item in value.items():
            out.kvlist_value.values.add(key=key).value.CopyFrom(_any(item))
    elif isinstance(value, list):
        out.array_value.values.extend(_any(item) for item in value)
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, str):
        out.string_value = value
    return out


def _json_text(value) -> AnyValue:
    return AnyValue(string_value=json.dumps(value))  # NaN and Infinity as Python writes them


_VALUES = _TREES.map(_json_text) | _TREES.map(_any)
_SPECS = st.lists(
    st.tuples(st.dictionaries(_KEYS, _VALUES, max_size=4), st.sampled_from(["", "chat"]),
              st.integers(1, 3), st.lists(_VALUES, max_size=1), st.booleans()),
    min_size=1, max_size=3,
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs=_SPECS, kind=st.sampled_from(["protobuf", "json"]))
def test_any_hostile_span_gets_an_answer_and_a_refusal_writes_nothing(otlp_receiver, specs, kind):
    trace = os.urandom(16)
    spans = []
    for attrs, operation, n, prompt, valid in specs:
        events = [("gen_ai.content.prompt", {})] if prompt else []
        base = _chat(n, trace).attributes if valid else ()  # a good chat, then hostile values
        span = otlp.span(n, "chat", {"gen_ai.operation.name": operation, "gen_ai.request.model": "m"},
                         trace=trace, events=events)  # fmt: skip
        span.attributes.extend(kv for kv in base if kv.key not in attrs)
        for key, value in attrs.items():
            span.attributes.add(key=key).value.CopyFrom(value)
        for event, value in zip(span.events, prompt, strict=False):
            event.attributes.add(key="gen_ai.prompt").value.CopyFrom(value)
        spans.append(span)
    before = sorted(s.session for s in otlp_receiver.store.sessions())
    response = _post(
        otlp_receiver, otlp.body(otlp.request(*spans), kind), PB if kind == "protobuf" else JS
    )
    assert response.status_code in (200, 400), response.content
    if kind == "json":
        message = json.loads(response.content)
    elif response.status_code == 200:
        message = _partial(response)
    else:
        message = _refused(response)
    assert message is not None
    if response.status_code == 400:
        assert sorted(s.session for s in otlp_receiver.store.sessions()) == before
        assert _stored_rows(otlp_receiver, trace) == []
