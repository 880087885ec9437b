"""The triage list's server time at 10,000 sessions, through Django's test client.

Target: the triage list (/triage/) in 100 ms at 10,000 sessions, the sessions list's target: it
answers from a per-process table, built from the trace store's status index and the sessions
table, so a warm request decodes no record but the shown page's last-good lookups.

Data: bench_web's 10,000 small sessions (a tenth failing, one in 37 with an errored turn), plus
a flag on every 20th session's first turn: about 1,000 failing sessions with neither flag nor
error (each listed by its last turn), 500 flags and 270 errors, some overlapping.

Figures: warm (no write since the last request), filtered to one kind, a late page, after a
flag (the table is rebuilt; no record is decoded again but the new one), and a new process's
first request (every listed record decoded once).
"""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import Any

from bench.bench_web import ROOT, SESSIONS, _many_sessions, _timed, run_apart
from bench.common import results_dir, time_calls

TARGETS_MS = {"triage_list": 100}
FLAG_EVERY = 20


def _cold_ms(client: Any, url: str, reset: Any, runs: int = 5) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        reset()
        start = time.perf_counter()
        assert client.get(url).status_code == 200
        samples.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(sorted(samples)[runs // 2], 4), "max_ms": round(max(samples), 4),
            "runs": runs}  # fmt: skip


def measure(repeat: int = 20) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from llm386web.store_access import get_store, get_traces
    from runtime.inspect.triage import forget_triage, triage_table

    store, traces = get_store(), get_traces()
    started = time.perf_counter()
    _many_sessions(store, traces)
    for i in range(0, SESSIONS, FLAG_EVERY):
        traces.flag(traces.turns(f"s{i:05d}")[0][1], f"bench flag {i}")
    build_s = round(time.perf_counter() - started, 1)
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(get_user_model().objects.create_user("bench", password="bench-pass-1"))
    rows = len(triage_table(store, traces))
    toggle = traces.turns("s00001")[0][1]

    def flag_then_list() -> None:
        if traces.get(toggle).flagged:
            traces.unflag(toggle)
        else:
            traces.flag(toggle, "toggled")
        assert client.get("/triage/").status_code == 200

    figures = {
        "triage_list": _timed(client, "/triage/", repeat),
        "triage_list_errored": _timed(client, "/triage/?kind=errored", repeat),
        "triage_list_late_page": _timed(client, f"/triage/?offset={rows - rows % 50}", repeat),
        "triage_list_after_a_flag": time_calls(flag_then_list, repeat),
        "triage_list_first_request": _cold_ms(client, "/triage/", forget_triage),
    }
    figures["triage_list_after_a_flag"]["note"] = "includes the flag or unflag write itself"
    return {"figures": figures, "rows": rows, "sessions": SESSIONS, "data_build_s": build_s}


main = partial(run_apart, "triage", measure, TARGETS_MS)  # main(out_dir), as run_all calls it


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(results_dir())
