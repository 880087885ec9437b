"""Helpers shared by the benchmarks: timing, percentiles, writing results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHIPPED_TAU = Path(__file__).resolve().parents[1] / "runtime" / "data" / "tau_bench_airline"
RESULTS = Path(__file__).parent / "results"


DATA_ENV = "LLM386_BENCH_DATA"  # a folder of sessions.json and tools.json for every benchmark


def tau_bench_dir() -> Path:
    """Return the benchmarks' session folder: ``$LLM386_BENCH_DATA`` when set (any sessions in
    the tau-bench file format), else ../shared/data/tau-bench-airline when present, else the
    copy the project ships."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    shared = SHARED / "tau-bench-airline"
    return shared if (shared / "sessions.json").exists() else SHIPPED_TAU


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def time_calls(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    """Call ``fn`` ``repeat`` times; return p50/p99/mean in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": round(percentile(samples, 50), 4),
        "p99_ms": round(percentile(samples, 99), 4),
        "mean_ms": round(statistics.fmean(samples), 4),
        "runs": repeat,
    }


def write_result(out_dir: Path, name: str, result: dict[str, Any]) -> dict[str, Any]:
    """Write ``result`` with machine facts to out_dir/name.json and return it."""
    result = {**result, "machine": {"python": platform.python_version(), "cpu": platform.machine()}}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    return result


def results_dir() -> Path:
    """Return where a benchmark run from the command line writes: its argument, else bench/results."""
    return Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS


def measure_in_tmp(
    out_dir: Path, name: str, measure: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``measure`` in a fresh temporary folder, removed after; write its result as ``name``."""
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp))
    return write_result(out_dir, name, result)
