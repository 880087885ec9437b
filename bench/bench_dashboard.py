"""The dashboard's server time at 10,000 sessions, through Django's test client.

Target: the dashboard (/dashboard/?range=all, six charts) in 300 ms at 10,000 sessions: it sums
the call points index (one small row per sent call, read by a range scan of its time key) and
decodes no trace record once the index is up to date.

Data: bench_web's 10,000 small sessions (about 15,000 calls, one session in 37 with a failed
call), every call within the same hour, so the figures measure reading and summing the points,
not drawing many buckets.

Figures: warm by model and by source, one chart's CSV, the first request after a new call (the
index catches up with one record), and the first request after the index was dropped (it is
rebuilt session by session from the trace store: what the first visit after an upgrade pays).
"""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import Any

from bench.bench_triage import _cold_ms
from bench.bench_web import ROOT, SESSIONS, _many_sessions, _timed, run_apart
from bench.common import results_dir

TARGETS_MS = {"dashboard_all": 300}
URL = "/dashboard/?range=all"


def measure(repeat: int = 20) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from llm386web.store_access import get_store, get_traces
    from runtime.indexes import callpoints
    from runtime.indexes.recordindex import RecordIndex

    store, traces = get_store(), get_traces()
    started = time.perf_counter()
    _many_sessions(store, traces)
    build_s = round(time.perf_counter() - started, 1)
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(get_user_model().objects.create_user("bench", password="bench-pass-1"))
    index: RecordIndex = callpoints._INDEX
    calls = traces.count()
    one = traces.get(traces.turns("s00001")[0][1])

    def add_a_call() -> None:
        from dataclasses import replace

        from runtime.tracing.records import StoredTrace, new_call_id

        fresh = replace(
            one,
            call_id=new_call_id(),
            turn=one.turn + 100,
            started_at=one.started_at + SESSIONS * 2,
        )  # the newest call, as a live one is
        traces.record_many([StoredTrace(fresh, traces.request_bytes(one.prompt_hash) or b"{}")])

    figures = {
        "dashboard_all": _timed(client, URL, repeat),
        "dashboard_by_source": _timed(client, URL + "&group=source", repeat),
        "dashboard_csv": _timed(client, "/dashboard/cost.csv?range=all", repeat),
        "dashboard_after_a_new_call": _cold_ms(client, URL, add_a_call, runs=3),
        "dashboard_after_index_dropped": _cold_ms(
            client, URL, lambda: index.drop(store.kv), runs=1
        ),
    }
    return {"figures": figures, "calls": calls, "sessions": SESSIONS, "data_build_s": build_s}


main = partial(run_apart, "dashboard", measure, TARGETS_MS)  # main(out_dir), as run_all calls it


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(results_dir())
