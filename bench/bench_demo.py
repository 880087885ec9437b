"""The demo's load time (`manage.py llm386_demo`, which `make run` runs), loader by loader.

Targets: the loaders added for the features the imported runs cannot show (budget pressure, the
replay and experiment, the captured proxy calls) add at most 3 s to a fresh load, and at most
100 ms to a second load (everything already there: each checks and returns).

Data: each run loads the whole demo (``DEMO_LOADERS``, the shipped tau-bench import included)
into a fresh LMDB store, as a first `make run` does, then loads it again. Each loader's time is
measured alone, in the same run, so the ratio of the new loaders to the whole load holds even on
a noisy machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.bench_web import run_apart
from bench.common import percentile, results_dir

TARGETS_MS = {"new_loaders_fresh": 3000, "new_loaders_again": 100}
RUNS = 3


def _load(store: Any, traces: Any, loaders: Any) -> dict[str, float]:
    """Run each loader once; return its time in ms by name."""
    times = {}
    for loader in loaders:
        started = time.perf_counter()
        loader(store, traces)
        times[loader.__name__] = (time.perf_counter() - started) * 1000
    return times


def _figure(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 50), 4), "max_ms": round(max(samples), 4),
            "runs": len(samples)}  # fmt: skip


def measure(runs: int = RUNS) -> dict[str, Any]:
    from llm386web.management.commands.llm386_demo import DEMO_LOADERS, load_tau_bench
    from runtime import open_store
    from runtime.agent.core import load_demo_conversations
    from runtime.storage.lmdb.traces import LmdbTraceStore

    old = {load_tau_bench.__name__, load_demo_conversations.__name__}
    fresh: list[dict[str, float]] = []
    again: list[dict[str, float]] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="llm386-bench-demo-") as tmp:
            store = open_store(Path(tmp) / "store")
            traces = LmdbTraceStore(store)
            fresh.append(_load(store, traces, DEMO_LOADERS))
            again.append(_load(store, traces, DEMO_LOADERS))
            sessions = store.session_count()
            store.close()

    def new(times: dict[str, float]) -> float:
        return sum(ms for name, ms in times.items() if name not in old)

    figures = {
        "new_loaders_fresh": _figure([new(t) for t in fresh]),
        "new_loaders_again": _figure([new(t) for t in again]),
        "whole_demo_fresh": _figure([sum(t.values()) for t in fresh]),
        "whole_demo_again": _figure([sum(t.values()) for t in again]),
    }
    figures |= {f"fresh_{name}": _figure([t[name] for t in fresh]) for name in fresh[0]}
    share = sorted(new(t) / sum(t.values()) for t in fresh)[len(fresh) // 2]
    return {"figures": figures, "new_share_of_fresh_load": round(share, 4), "sessions": sessions,
            "loaders": list(fresh[0])}  # fmt: skip


main = partial(run_apart, "demo", measure, TARGETS_MS)  # main(out_dir), as run_all calls it


if __name__ == "__main__":
    main(results_dir())
    sys.exit(0)
