"""Trace store speed: importing the 120 demo sessions, and pages over 10,000 sessions of traces.

Measures what the web's pages ask for: the newest 50 records, one session's turns, the flagged
list, counts, and the aggregates of a page of 50 sessions, with 20,000 records in the store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import measure_in_tmp, results_dir, time_calls
from runtime import open_store
from runtime.blocks import canonical_json
from runtime.providers.usage import Usage
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import (
    Provider,
    StoredTrace,
    TraceRecord,
    new_call_id,
    prompt_hash,
)
from runtime.transfer.importer import load_demo_sessions

SESSIONS = 10_000


def _records(session: int) -> list[StoredTrace]:
    out = []
    for turn in (1, 2):
        request = canonical_json(
            {"model": "m", "messages": [{"role": "user", "content": f"q{session}-{turn}"}]}
        )
        cid = new_call_id()
        record = TraceRecord(cid, f"s{session:05d}", turn, int(cid[:13]), Provider.OFFLINE, "offline",
                             prompt_hash(request), len(request), usage=Usage(100, 10))  # fmt: skip
        out.append(StoredTrace(record, request))
    return out


def measure(root: Path) -> dict[str, Any]:
    store = open_store(root / "store")
    traces = KvTraceStore(store)
    start = time.perf_counter()
    report = load_demo_sessions(store, traces)
    import_s = time.perf_counter() - start
    start = time.perf_counter()
    for first in range(0, SESSIONS, 500):
        traces.record_many([item for s in range(first, first + 500) for item in _records(s)])
    record_rate = 2 * SESSIONS / (time.perf_counter() - start)
    for s in range(0, SESSIONS, 7):
        traces.flag(traces.turns(f"s{s:05d}")[-1][1], "bench")
    page = [f"s{s:05d}" for s in range(5000, 5050)]
    some = traces.list(limit=1)[0].call_id
    return {
        "demo_import_seconds": round(import_s, 2),
        "demo_turns": report.turns_recorded,
        "records_total": traces.count(),
        "record_many_per_s": round(record_rate, 1),
        "list_newest_50": time_calls(lambda: traces.list(limit=50), 30),
        "list_one_session_turns": time_calls(
            lambda: traces.list(session="s05000", newest_first=False), 30
        ),
        "list_flagged_page_50_at_offset_1000": time_calls(
            lambda: traces.list(flagged=True, offset=1000), 30
        ),
        "count_all_and_flagged": time_calls(
            lambda: (traces.count(), traces.count(flagged=True)), 30
        ),
        "session_stats_page_of_50": time_calls(lambda: traces.session_stats(page), 30),
        "get_by_prefix": time_calls(lambda: traces.get(some[:20]), 30),
    }


def main(out_dir: Path) -> dict[str, Any]:
    return measure_in_tmp(out_dir, "traces", measure)


if __name__ == "__main__":
    main(results_dir())
