"""Rebuilding a span's turn from the last turn's blocks gives what building it afresh gives."""

from __future__ import annotations

import json

from bench.bench_otel import trace_of
from bench.taudata import TAU_SESSIONS, TAU_TOOLS
from runtime.blocks import Provenance
from runtime.otel.attrjson import AttributeJson
from runtime.otel.genai import is_model_call, model_call
from runtime.otel.ingest import ingest_request, spans_of
from runtime.otel.rebuild import Rebuilder, request_of
from runtime.storage.chunking import request_parts
from runtime.tracing.records import TraceRecord
from tests.fakes import otlp

MAX_BYTES = 1 << 20


def _tau(index: int):
    """The spans of a tau-bench conversation (the benchmark's): tools, tool calls, results."""
    traj = json.loads(TAU_SESSIONS.read_text())[index]["traj"]
    return trace_of(index + 1, traj, json.dumps(json.loads(TAU_TOOLS.read_text())))


def _calls(spans):
    """The model calls of one request, parsed as ``ingest_request`` parses them."""
    parsed = AttributeJson()
    return [model_call(s, parsed) for s in spans_of(otlp.request(*spans)) if is_model_call(s)]


def _state(builder):
    return builder.blocks, builder.ids, builder.edges, builder.call_block


def test_a_spliced_request_is_the_canonical_json_of_the_whole_request():
    # agent_tree sends max_tokens and temperature: keys that sort before and after "messages".
    for spans in (otlp.agent_tree(), _tau(0)):
        rebuild = Rebuilder(MAX_BYTES)
        for call in _calls(spans):
            parts = rebuild.request(call)
            assert parts.join() == request_of(call)
            assert parts == request_parts(request_of(call))  # the chunks of cutting it whole


def test_the_spans_of_a_request_share_their_repeated_messages_as_objects():
    first, second, *_ = _calls(_tau(0))
    assert first.messages[0]["role"] == "system"
    assert all(a is b for a, b in zip(first.messages, second.messages, strict=False))


def test_blocks_built_from_the_last_turns_are_the_blocks_built_from_scratch():
    calls = _calls(_tau(0))
    assert len(calls) > 3
    rebuild = Rebuilder(MAX_BYTES)
    for call in calls:
        assert _state(rebuild.blocks(call)) == _state(Rebuilder(MAX_BYTES).blocks(call))
    # Out of order too: a call that does not extend the last one is built from its tools.
    for call in reversed(calls):
        assert _state(rebuild.blocks(call)) == _state(Rebuilder(MAX_BYTES).blocks(call))


def test_a_conversation_repeated_in_another_trace_gets_its_own_trace_in_every_block():
    # The same texts in two traces of one request parse to the very same message objects.
    calls = _calls(_tau(0) + trace_of(7, json.loads(TAU_SESSIONS.read_text())[0]["traj"],
                                      json.dumps(json.loads(TAU_TOOLS.read_text()))))  # fmt: skip
    traces = {c.span.trace_id for c in calls}
    assert len(traces) == 2
    rebuild = Rebuilder(MAX_BYTES)
    for call in sorted(calls, key=lambda c: (c.span.start_ns, c.span.trace_id)):
        builder = rebuild.blocks(call)
        assert {b.provenance for b in builder.blocks} == {Provenance(f"otlp:{call.span.trace_id}")}
        assert _state(builder) == _state(Rebuilder(MAX_BYTES).blocks(call))


def _ingested(store, traces, session):
    records = [traces.get(cid) for _, cid in traces.turns(session)]
    return (
        [(e.block.kind, e.block.body) for e in store.entries(session)],
        [(r.turn, r.prompt_hash, r.usage, r.response, r.upto_seq,
          [(s["block_id"], s["seq"], s["tokens"]) for s in r.plan["selected"]],
          traces.request_bytes(r.prompt_hash)) for r in records],
    )  # fmt: skip


def test_one_request_per_span_or_one_for_all_or_twice_gives_the_same_turns(tmp_path):
    from runtime import open_store
    from runtime.storage.lmdb.traces import LmdbTraceStore

    spans = _tau(1)
    root, chats = spans[0], [s for s in spans if s.name.startswith("chat")]
    results = []
    for name, requests in (("whole", [spans, spans]), ("apart", [[root, c] for c in chats])):
        store = open_store(tmp_path / name)
        traces = LmdbTraceStore(store)
        outcomes = [ingest_request(otlp.request(*r), store, traces) for r in requests]
        assert sum(o.turns_recorded for o in outcomes) == len(chats)
        results.append(_ingested(store, traces, "tau-otel-2"))
        store.close()
    whole, apart = results
    assert whole == apart and len(whole[1]) == len(chats)


def test_a_turn_record_is_stored_as_the_canonical_json_of_its_record(stores):
    # Plans splice each listed block's encoded entry into the record: the bytes must be those
    # of encoding the record whole (its plan listing tools, messages and tool results).
    from runtime.storage.tracechunks import CHUNKED
    from runtime.storage.tracerows import TRACES, load_chunked

    store, traces = stores
    assert ingest_request(otlp.request(*_tau(1)), store, traces).turns_recorded > 3
    for _, cid in traces.turns("tau-otel-2"):
        raw = store.kv.read(lambda t, cid=cid: t.get(TRACES, cid.encode()))
        stored = (
            store.kv.read(lambda t, raw=raw: load_chunked(t, raw)) if raw[:1] == CHUNKED else raw
        )
        record = TraceRecord.decode(stored)
        assert record.plan["selected"] and stored == record.encode()


def test_calls_read_with_what_earlier_spans_parsed_are_the_calls_read_alone():
    # The history each span repeats is read from the last span's (its elements, its messages):
    # in order, out of order, and across two conversations of one request.
    spans = [s for s in spans_of(otlp.request(*_tau(0), *_tau(2))) if is_model_call(s)]
    for order in (spans, list(reversed(spans)), spans[::2] + spans[1::2]):
        parsed = AttributeJson()
        for span in order:
            shared, alone = model_call(span, parsed), model_call(span, AttributeJson())
            assert (shared.messages, shared.output, shared.tools, shared.dropped_parts) == (
                alone.messages, alone.output, alone.tools, alone.dropped_parts)  # fmt: skip
