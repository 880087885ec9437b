"""Pages read bounded data: a turn reads its record once, a session page reads one page of turns.

The trace store runs on a real LMDB engine wrapped in one that counts what each page reads.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest

from runtime.inspect.paging import paging_from_totals
from runtime.inspect.timeline import session_timeline
from runtime.inspect.turn import turn_view
from runtime.storage.kv import Engine, Span, Tables
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import (
    Provider,
    StoredTrace,
    TokenUsage,
    TraceOrigin,
    TraceRecord,
    new_call_id,
    prompt_hash,
)

T = TypeVar("T")


class CountingTables(Tables):
    """A transaction's tables that count the rows read from each table."""

    def __init__(self, inner: Tables, reads: Counter[str]) -> None:
        self.inner, self.reads, self.readonly = inner, reads, inner.readonly

    def get(self, table: str, key: bytes) -> bytes | None:
        self.reads[table] += 1
        return self.inner.get(table, key)

    def get_many(self, table: str, keys: Sequence[bytes]) -> list[bytes | None]:
        self.reads[table] += len(keys)
        return self.inner.get_many(table, keys)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self.inner.put(table, key, value)

    def delete(self, table: str, key: bytes) -> bool:
        return self.inner.delete(table, key)

    def _scan(self, table: str, span: Span) -> Iterator[tuple[bytes, bytes]]:
        low, high, reverse, limit = span
        for row in self.inner.scan(table, lo=low, hi=high, reverse=reverse, limit=limit):
            self.reads[table] += 1
            yield row

    def count(self, table: str) -> int:
        return self.inner.count(table)

    def clear(self, table: str) -> None:
        self.inner.clear(table)


class CountingEngine(Engine):
    def __init__(self, inner: Engine) -> None:
        self.inner, self.reads = inner, Counter[str]()
        self.location, self.readonly, self.scheme = inner.location, inner.readonly, inner.scheme

    def read(self, fn: Callable[[Tables], T]) -> T:
        return self.inner.read(lambda t: fn(CountingTables(t, self.reads)))

    def write(self, fn: Callable[[Tables], T]) -> T:
        return self.inner.write(lambda t: fn(CountingTables(t, self.reads)))

    def writing(self) -> bool:
        return self.inner.writing()


class Counted:
    """What KvTraceStore needs of a block store: its engine."""

    def __init__(self, kv: Engine) -> None:
        self.kv = kv


def _record(session: str, turn: int, request: bytes, **fields: Any) -> TraceRecord:
    cid = new_call_id()
    return TraceRecord(
        call_id=cid, session=session, turn=turn, started_at=int(cid[:13]),
        provider=Provider.ANTHROPIC, model="claude-haiku-4-5", prompt_hash=prompt_hash(request),
        request_size=len(request), usage=TokenUsage(10 * turn, 2), response={"content": []},
        latency_ms=float(turn), **fields,
    )  # fmt: skip


def _request(turn: int) -> bytes:
    # Large enough to be stored as chunks: reading it would read trace_chunks.
    return json.dumps({"messages": [f"turn {turn} message {i}" for i in range(3000)]}).encode()


@pytest.fixture
def session(stores: Any) -> tuple[Any, CountingEngine, KvTraceStore, list[TraceRecord]]:
    store, _ = stores
    engine = CountingEngine(store.kv)
    traces = KvTraceStore(Counted(engine))
    records = [_record("long", turn, _request(turn)) for turn in range(1, 41)]
    replay = _record("long", 3, _request(3), origin=TraceOrigin.REPLAY,
                     parent_call_id=records[2].call_id)  # fmt: skip
    traces.record_many([StoredTrace(r, _request(r.turn)) for r in [*records, replay]])
    engine.reads.clear()
    return store, engine, traces, records


def test_the_turn_view_reads_its_record_once_and_no_request_bytes(session: Any) -> None:
    _, engine, traces, records = session
    view = turn_view(traces, records[2].call_id)
    assert (view.previous, view.next) == (records[1].call_id, records[3].call_id)
    assert [r.call_id for r in view.replays] != [] and view.record.replay_complete
    # Its own record, then its one replay (listed under it): nothing else of the session.
    assert engine.reads["traces"] == 2
    assert engine.reads["trace_chunks"] == 0 and engine.reads["trace_nodes"] == 0
    assert engine.reads["trace_by_session"] == 2  # the two records of its turn


def test_a_session_page_reads_one_page_of_turns_and_the_aggregates(session: Any) -> None:
    store, engine, traces, records = session
    # A record outside the page that cannot be decoded: a page must never read it.
    store.kv.write(lambda t: t.put("traces", records[0].call_id.encode(), b"garbage"))
    stats = traces.session_stats(["long"])[0]
    timeline = session_timeline(traces, "long", offset=10, limit=5)
    assert [row.turn for row in timeline.rows] == [11, 12, 13, 14, 15]
    assert timeline.turns == 40 and stats.calls == 41 and stats.turn_numbers == 40
    assert paging_from_totals("long", stats.paging) is None  # nothing was demand-paged
    assert engine.reads["traces"] == 5
    assert engine.reads["trace_turns"] == 15  # the offset is skipped in the turn table
    assert engine.reads["trace_requests"] == 5 and engine.reads["trace_chunks"] == 0


def test_session_aggregates_hold_what_the_session_page_shows(session: Any) -> None:
    _, _, traces, records = session
    stats = traces.session_stats(["long"])[0]
    assert stats.latency_ms_max == 40.0 and stats.timed_calls == 41
    assert [m.model for m in stats.models] == ["claude-haiku-4-5"]
    assert stats.models[0].calls == 41
    assert stats.input_tokens == sum(10 * r.turn for r in records) + 30
    row = session_timeline(traces, "long", offset=2, limit=1).rows[0]
    assert (row.turn, row.replays) == (3, 1)
