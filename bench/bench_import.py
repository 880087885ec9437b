"""Importing one long session: time, peak memory and store size at 1, 4, 16 and 50 MB (issue 18).

Each size is a synthetic tau-bench-style session (bench/longsession.py) imported into a fresh
store by a fresh interpreter, whose peak resident memory is its getrusage max RSS. The store
size is the disk the store folder takes. Slopes are least-squares fits of log(figure) against
log(transcript bytes): 1 means linear growth, 2 quadratic.

    python -m bench.bench_import [out_dir] [--sizes 1,4,16,50]
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import write_result
from bench.longsession import long_session, message_count

SIZES_MB = (1, 4, 16, 50)
MAX_RSS_MB = 500
MAX_STORE_RATIO = 3.0
ROOT = Path(__file__).resolve().parents[1]


def child(transcript: Path, store_dir: Path) -> dict[str, Any]:
    """Import ``transcript`` into a new store at ``store_dir`` (run in a fresh process)."""
    import resource
    import time

    from runtime import open_store
    from runtime.storage.tracestore import KvTraceStore
    from runtime.transfer.importer import DEMO_DIR, import_file

    start = time.perf_counter()
    store = open_store(store_dir)
    traces = KvTraceStore(store)
    report = import_file(store, traces, transcript, tools_path=DEMO_DIR / "tools.json")
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tables = _table_bytes(store)
    store.close()
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(peak_kb / 1024, 1),
            "turns": report.turns_recorded, "table_bytes": tables}  # fmt: skip


def _table_bytes(store: Any) -> dict[str, int]:
    """Return the pages each named table takes, in bytes."""
    env = store.env.env
    out = {}
    with env.begin() as txn:
        names = [key for key, _ in txn.cursor()]
    for name in names:
        with env.begin() as txn:
            s = txn.stat(store.env.db(name))
        out[name.decode()] = (s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"]) * s[
            "psize"
        ]
    return dict(sorted(out.items()))


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.iterdir() if p.is_file())


def measure_size(megabytes: float, tmp: Path) -> dict[str, Any]:
    """Synthesise a session of ``megabytes`` and import it in a fresh process."""
    data = long_session(int(megabytes * 1_000_000))
    transcript = tmp / f"session-{megabytes}mb.json"
    transcript.write_bytes(data)
    store_dir = tmp / f"store-{megabytes}mb"
    code = ("import json, sys; from pathlib import Path; from bench.bench_import import child; "
            "print(json.dumps(child(Path(sys.argv[1]), Path(sys.argv[2]))))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(transcript), str(store_dir)],
                          cwd=ROOT, capture_output=True, text=True, check=True)  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    store = _disk_bytes(store_dir)
    result |= {"transcript_bytes": len(data), "messages": message_count(data),
               "store_bytes": store, "store_ratio": round(store / len(data), 3)}  # fmt: skip
    transcript.unlink()
    return result


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Return the least-squares slope of log(y) against log(x)."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(points) < 2:
        return None
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    num = sum((x - mx) * (y - my) for x, y in points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return round(num / den, 3) if den else None


def targets(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return issue 18's targets, judged on the largest size measured."""
    big = max(runs, key=lambda r: r["transcript_bytes"])
    at = f"{big['transcript_bytes'] / 1e6:.0f} MB, {big['messages']} messages"
    return {
        "peak_rss_at_most_500_mb": {"value": big["peak_rss_mb"], "at": at,
                                    "met": big["peak_rss_mb"] <= MAX_RSS_MB},
        "store_at_most_3x_transcript": {"value": big["store_ratio"], "at": at,
                                        "met": big["store_ratio"] <= MAX_STORE_RATIO},
    }  # fmt: skip


def measure(sizes: tuple[float, ...] = SIZES_MB) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="llm386-bench-import-") as tmp:
        for mb in sizes:
            print(f"importing a {mb} MB session ...", file=sys.stderr, flush=True)
            run = measure_size(mb, Path(tmp))
            runs.append(run)
            print(f"  {run['messages']} messages: {run['seconds']} s, {run['peak_rss_mb']} MB "
                  f"peak, store {run['store_bytes'] / 1e6:.1f} MB ({run['store_ratio']}x)",
                  file=sys.stderr, flush=True)  # fmt: skip
    xs = [float(r["transcript_bytes"]) for r in runs]
    slopes = {name: slope(xs, [float(r[name]) for r in runs])
              for name in ("seconds", "peak_rss_mb", "store_bytes")}  # fmt: skip
    return {"runs": runs, "log_log_slope_vs_transcript_bytes": slopes, "targets": targets(runs),
            "note": "synthetic tau-bench-style sessions (bench/longsession.py), one fresh process "
                    "per size; peak RSS includes the interpreter, tiktoken and numpy"}  # fmt: skip


def main(out_dir: Path, sizes: tuple[float, ...] = SIZES_MB) -> dict[str, Any]:
    return write_result(out_dir, "import", measure(sizes))


if __name__ == "__main__":
    args = sys.argv[1:]
    chosen = SIZES_MB
    if "--sizes" in args:
        i = args.index("--sizes")
        chosen = tuple(float(s) for s in args[i + 1].split(","))
        del args[i : i + 2]
    main(Path(args[0]) if args else Path(__file__).parent / "results", chosen)
