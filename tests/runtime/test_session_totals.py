"""Session token totals count calls that were answered; re-pages and failed calls apart."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runtime import open_store
from runtime.blocks import canonical_json
from runtime.providers.usage import Usage
from runtime.storage.kv import Tables
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.storage.migrations import migrate
from runtime.storage.tracerows import GENERATION
from runtime.tracing.records import (
    REPAGE_KEY,
    Delivery,
    Provider,
    StoredTrace,
    TraceError,
    TraceOrigin,
    TraceRecord,
    TraceStatus,
    delivery,
    new_call_id,
    prompt_hash,
)

REQUEST = canonical_json({"messages": [{"role": "user", "content": "hi"}], "model": "m"})


def _record(**fields: object) -> TraceRecord:
    call_id = new_call_id()
    base = {"call_id": call_id, "session": "s1", "turn": 1, "started_at": int(call_id[:13]),
            "provider": Provider.ANTHROPIC, "model": "claude-haiku-4-5",
            "prompt_hash": prompt_hash(REQUEST), "request_size": len(REQUEST)}  # fmt: skip
    return TraceRecord(**(base | fields))  # type: ignore[arg-type]


def _answered() -> TraceRecord:
    return _record(usage=Usage(100, 20), response={"content": []}, estimated_input_tokens=90)


def _repage(parent: str) -> TraceRecord:
    return _record(origin=TraceOrigin.REPLAY, parent_call_id=parent, estimated_input_tokens=7659,
                   config={REPAGE_KEY: {"of": parent, "sent": False}})  # fmt: skip


def _failed(parent: str) -> TraceRecord:
    return _record(origin=TraceOrigin.REPLAY, parent_call_id=parent, status=TraceStatus.ERROR,
                   error=TraceError("authentication_error", "no key"), estimated_input_tokens=754)  # fmt: skip


@pytest.fixture
def traces(tmp_path):
    store = open_store(tmp_path / "store")
    yield LmdbTraceStore(store)
    store.close()


def _three(traces: LmdbTraceStore) -> list[TraceRecord]:
    first = _answered()
    items = [first, _repage(first.call_id), _failed(first.call_id)]
    traces.record_many([StoredTrace(r, REQUEST) for r in items])
    return items


def test_delivery_tells_answered_failed_and_never_sent_apart() -> None:
    first = _answered()
    assert [delivery(r) for r in (first, _repage(first.call_id), _failed(first.call_id))] == [
        Delivery.ANSWERED, Delivery.NOT_SENT, Delivery.FAILED,
    ]  # fmt: skip


def test_session_tokens_leave_out_repages_and_failed_calls(traces: LmdbTraceStore) -> None:
    _three(traces)
    stats = traces.session_stats(["s1"])[0]
    assert (stats.calls, stats.turns, stats.repages, stats.errors) == (3, 1, 1, 1)
    assert (stats.input_tokens, stats.output_tokens) == (100, 20)
    assert traces.verify().ok


def test_deleting_a_session_takes_every_count_back_to_zero(traces: LmdbTraceStore) -> None:
    _three(traces)
    traces.delete_session("s1")
    assert traces.session_stats(["s1"])[0].calls == 0


def _store_old_totals(traces: LmdbTraceStore) -> None:
    """Write s1's aggregates as a schema-1 store made before re-pages were counted apart did
    (every call's tokens), and mark the store as of that layout."""
    old = {"calls": 3, "turns": 1, "errors": 1, "flagged": 0, "input_tokens": 100 + 7659 + 754,
           "output_tokens": 20, "first_at": 0, "last_at": 0}  # fmt: skip

    def write(t: Tables) -> None:
        t.put("trace_sessions", b"s1", canonical_json(old))
        t.put("meta", b"schema", b"1")

    traces.kv.write(write)


def test_migrating_a_store_with_old_totals_counts_the_sent_figures(
    traces: LmdbTraceStore,
) -> None:
    _three(traces)
    _store_old_totals(traces)
    assert migrate(traces.kv) == ["session-aggregates", "ann-keys-by-session"]
    stats = traces.session_stats(["s1"])[0]
    assert (stats.input_tokens, stats.repages, stats.errors, stats.turn_numbers) == (100, 1, 1, 1)
    assert traces.verify().ok


def test_opening_a_store_with_old_totals_migrates_it_before_any_write(
    traces: LmdbTraceStore,
) -> None:
    items = _three(traces)
    _store_old_totals(traces)
    reopened = LmdbTraceStore(traces.env.path)
    reopened.record(_answered(), REQUEST)
    reopened.flag(items[0].call_id, "wrong")
    reopened.unflag(items[0].call_id)
    stats = reopened.session_stats(["s1"])[0]
    assert (stats.calls, stats.input_tokens, stats.flagged, stats.repages) == (4, 200, 0, 1)
    assert reopened.verify().ok


def test_repair_rewrites_aggregates_from_the_records(traces: LmdbTraceStore) -> None:
    _three(traces)
    traces.kv.write(lambda t: t.put("trace_sessions", b"s1", canonical_json({"calls": 3})))
    assert "count-mismatch" in {p.code for p in traces.verify().problems}
    traces.repair()
    assert traces.session_stats(["s1"])[0].input_tokens == 100 and traces.verify().ok


def test_verify_finds_token_totals_that_disagree_with_the_records(traces: LmdbTraceStore) -> None:
    _three(traces)
    wrong = {"calls": 3, "turns": 1, "errors": 1, "flagged": 0, "repages": 1,
             "input_tokens": 5, "output_tokens": 20, "first_at": 0, "last_at": 0}  # fmt: skip
    traces.kv.write(lambda t: t.put("trace_sessions", b"s1", canonical_json(wrong)))
    assert [p.code for p in traces.verify().problems] == ["count-mismatch"]


def _aggregate_rows(traces: LmdbTraceStore) -> dict[str, list[tuple[bytes, bytes]]]:
    from runtime.storage.tracerows import META, SESSIONS, TURNS

    def read(t: Tables) -> dict[str, list[tuple[bytes, bytes]]]:
        return {name: list(t.scan(name)) for name in (META, SESSIONS, TURNS)}

    return traces.kv.read(read)


def test_a_batch_of_records_leaves_the_aggregates_one_at_a_time_would(tmp_path) -> None:
    """Aggregates are read and written once per write: the rows must be those of N writes."""
    from runtime.tracing.records import Flag

    first, second = _answered(), replace(_answered(), session="s2", turn=3)
    records = [first, _repage(first.call_id), _failed(first.call_id), second,
               replace(_answered(), turn=2), replace(_answered(), session="s2", turn=3)]  # fmt: skip
    items = [StoredTrace(r, REQUEST, flag=Flag("bad", 5) if i % 2 else None)
             for i, r in enumerate(records)]  # fmt: skip
    rows = []
    for batches in ([items], [[item] for item in items]):
        store = open_store(tmp_path / f"store-{len(batches)}")
        traces = LmdbTraceStore(store)
        for batch in batches:
            traces.record_many(batch)
        rows.append(_aggregate_rows(traces))
        assert [s.flagged for s in traces.session_stats(["s1", "s2"])] == [1, 2]
        store.close()
    batched, one_by_one = rows
    generation = GENERATION  # counts writes: the one row that must differ
    assert {k: [r for r in v if r[0] != generation] for k, v in batched.items()} == {
        k: [r for r in v if r[0] != generation] for k, v in one_by_one.items()
    }
