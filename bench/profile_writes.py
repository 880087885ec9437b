"""Where the write paths spend their time: cProfile of bulk import and of OTLP ingest.

Profiles the two workloads the write-speed targets are measured on, the way their benchmarks
run them, and writes the top of each profile (by own time and by cumulative time) to
``bench/results/profile_writes.txt``:

- bulk import: bench/bench_storage.py's 10,000-block session written with ``put_many`` in
  batches of 2,000, on LMDB and on PostgreSQL (a server started here with production settings,
  or ``--store URL``; tokenizers loaded before, as in the benchmark's run);
- OTLP ingest: bench/bench_otel.py's 120 tau-bench traces into a fresh LMDB store.

    python -m bench.profile_writes [out_dir] [--store postgresql://...] [--top N]

A profile slows Python code more than the C it calls, so read it for shares, not speed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.bench_pager import build, grow
from bench.bench_storage import BLOCKS, _Server
from bench.common import RESULTS
from bench.taudata import TAU_SESSIONS, TAU_TOOLS


def _top(title: str, profiler: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    out.write(f"==== {title} ====\n")
    for order in ("tottime", "cumulative"):
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(top)
    return out.getvalue()


def _profiled(fn: Callable[[cProfile.Profile], Any]) -> cProfile.Profile:
    profiler = cProfile.Profile()
    fn(profiler)
    return profiler


def _import(target: Any) -> Callable[[cProfile.Profile], None]:
    blocks, edges = grow(TAU_SESSIONS, TAU_TOOLS, BLOCKS)

    def run(profiler: cProfile.Profile) -> None:
        from runtime.indexes.sessionindex import forget_analyses
        from runtime.tokenizers import forget_counts

        forget_counts()  # as bench_storage does: each import pays for its blocks
        forget_analyses()
        profiler.enable()
        store, _ = build(target, blocks, edges)
        profiler.disable()
        store.close()

    return run


def _ingest(tmp: Path) -> Callable[[cProfile.Profile], None]:
    from bench.bench_otel import bodies
    from runtime import open_store
    from runtime.otel.ingest import ingest
    from runtime.otel.wire import PROTOBUF
    from runtime.storage.tracestore import KvTraceStore

    requests = bodies(None)

    def run(profiler: cProfile.Profile) -> None:
        store = open_store(tmp / "otel")
        traces = KvTraceStore(store)
        for body, _, _ in requests:
            profiler.enable()
            ingest(body, PROTOBUF, None, store, traces)
            profiler.disable()
        store.close()

    return run


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=RESULTS)
    parser.add_argument("--store", default=None, help="a PostgreSQL URL to measure instead")
    parser.add_argument("--top", type=int, default=30, help="rows of each listing")
    args = parser.parse_args(argv)
    from runtime.storage.blockstore import DEFAULT_TOKENIZERS
    from runtime.tokenizers import get_tokenizer
    from runtime.transfer.importer import TOKENIZER

    for name in sorted({TOKENIZER, *DEFAULT_TOKENIZERS}):
        get_tokenizer(name)  # loaded once per process, before the benchmarks' clocks start
    server = _Server(args.store)
    parts = []
    try:
        with tempfile.TemporaryDirectory(prefix="llm386-profile-writes-") as tmp:
            for title, run in (
                ("bulk import, LMDB", lambda: _import(str(Path(tmp) / "store"))),
                ("bulk import, PostgreSQL", lambda: _import(server.database())),
                ("OTLP ingest, LMDB", lambda: _ingest(Path(tmp))),
            ):
                print(f"profiling {title}", flush=True)
                parts.append(_top(title, _profiled(run()), args.top))
    finally:
        server.close()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "profile_writes.txt"
    path.write_text("".join(parts))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
