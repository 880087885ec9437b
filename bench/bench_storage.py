"""The whole product on PostgreSQL against LMDB in the same run: page + pack, bulk import, web pages.

Targets (issue 11), each measured on a PostgreSQL server this benchmark starts with production
settings (fsync, synchronous_commit and full_page_writes at their defaults, unlike the tests'
server) on a unix socket:

- page + pack of a 10,000-block session (bench/bench_pager.py's tau-bench session, 16k and full
  budgets, warm): PostgreSQL's p50 at most 3x LMDB's, in the same run;
- bulk import: the same 10,000 blocks and their edges written with ``put_many`` in batches of
  2,000 (the path ``llm386 import`` and the benchmarks build sessions by), index upkeep
  included, with the process's token counts and term analyses forgotten first (the other
  backend's import made them), the tokenizers loaded before either (as in a serving
  process): at least 5,000 blocks/s on PostgreSQL. Beside the wall-clock rate the import
  reports its CPU seconds, this process's and (for a server started here) the server's, and
  blocks per CPU-second of both: on a machine shared with other work that figure moves less;
- the sessions list at 10,000 sessions <= 100 ms and the turn page of a 5,000-block turn
  <= 300 ms, whole request, on PostgreSQL: bench/bench_web.py run with ``--store URL`` in its own
  process.

    python -m bench.bench_storage [out_dir] [--store postgresql://...] [--no-web]

``--store`` (or ``[store] url`` in llm386.toml, or LLM386_STORE) measures an existing server
instead of starting one; the run writes a 10,000-block session and 10,000 small ones into it, so
give it an empty database you can spare.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_pager import SESSION, build, grow, profile_with_budget, tasks
from bench.common import RESULTS, time_calls, write_result
from bench.taudata import TAU_SESSIONS, TAU_TOOLS
from runtime.packer.core import pack
from runtime.pager.core import PageRequest, page
from runtime.profiles.catalog import get_profile

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = 10_000
REPEAT = 60
TARGETS = {"page_and_pack_ratio": 3.0, "import_blocks_per_s": 5_000.0}
WEB_TARGETS_MS = {"sessions_list": 100, "turn_page": 300}


def page_and_pack(store: Any, questions: list[str]) -> dict[str, Any]:
    """Time page + pack (warm) at the 16k and the model's full budget."""
    out: dict[str, Any] = {}
    for label, profile in (("16k", profile_with_budget(16_000)),
                           ("full", get_profile("claude-sonnet-4-6"))):  # fmt: skip
        for q in questions:  # warm: token counts and vectors cached, as in a serving process
            pack(store, page(store, PageRequest(SESSION, q, profile)))
        turn = iter(range(10**9))
        out[label] = time_calls(
            lambda p=profile, n=turn: pack(
                store, page(store, PageRequest(SESSION, questions[next(n) % len(questions)], p))
            ),
            REPEAT,
        )
    return out


def server_cpu_s(data_dir: Path | None) -> float | None:
    """Return the CPU seconds the PostgreSQL server of ``data_dir`` has used so far (the
    postmaster with its exited children, and its live backends); None when not known."""
    if data_dir is None:
        return None
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # a process that ended meanwhile
        pid, ppid = int(stat.parent.name), int(fields[1])
        if pid == postmaster:  # utime stime cutime cstime: its children that exited included
            ticks += sum(int(x) for x in fields[11:15])
        elif ppid == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(target: str, data_dir: Path | None = None) -> dict[str, Any]:
    """Build the 10,000-block session at ``target`` and time import and page + pack on it.

    ``data_dir``: the data folder of a PostgreSQL server started here, whose CPU time the
    import then reports beside this process's (so a figure independent of other load)."""
    from runtime.indexes.sessionindex import forget_analyses
    from runtime.tokenizers import forget_counts

    blocks, edges = grow(TAU_SESSIONS, TAU_TOOLS, BLOCKS)
    # The other backend's import just counted and analysed these very blocks in this process:
    # forget it, so each import pays for its blocks as an import of new blocks does.
    forget_counts()
    forget_analyses()
    load = os.getloadavg()[0]
    cpu, server = time.process_time(), server_cpu_s(data_dir)
    store, seconds = build(target, blocks, edges)  # type: ignore[arg-type]
    cpu = time.process_time() - cpu
    server_after = server_cpu_s(data_dir)
    server = None if server is None or server_after is None else server_after - server
    try:
        latency = page_and_pack(store, tasks(blocks))
    finally:
        store.close()
    out = {"import_s": round(seconds, 2), "import_blocks_per_s": round(BLOCKS / seconds, 1),
           "import_cpu_s": round(cpu, 2), "load_average_before": round(load, 2)}  # fmt: skip
    if server is not None:
        out["import_server_cpu_s"] = round(server, 2)
        out["import_blocks_per_cpu_s"] = round(BLOCKS / (cpu + server), 1)  # both processes
    elif data_dir is None and "://" not in target:
        out["import_blocks_per_cpu_s"] = round(BLOCKS / cpu, 1)  # LMDB: all in this process
    out["page_and_pack"] = latency
    return out


def web_on(url: str) -> dict[str, Any]:
    """Run bench/bench_web.py against ``url`` in its own process; return its figures."""
    with tempfile.TemporaryDirectory(prefix="llm386-bench-web-pg-") as out:
        subprocess.run(
            [sys.executable, "-m", "bench.bench_web", out, "--store", url], cwd=ROOT, check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        result = json.loads((Path(out) / "web.json").read_text())
    return {name: result["figures"][name] for name in WEB_TARGETS_MS}


class _Server:
    """A database to measure: a fresh one on a server started here, or one the caller gave."""

    def __init__(self, url: str | None) -> None:
        self.given, self.server = url, None

    def database(self) -> str:
        if self.given:
            return self.given
        from tests.pg_server import PgServer, missing_binaries

        missing = missing_binaries()
        if missing:
            raise SystemExit(missing)
        if self.server is None:
            self.server = PgServer(fast=False).start()  # production durability settings
        return self.server.url(self.server.create_database())

    def data_dir(self) -> Path | None:
        """The started server's data folder (None for a server the caller gave)."""
        return None if self.server is None else Path(self.server.data)

    def close(self) -> None:
        if self.server is not None:
            self.server.remove()


def verdict(lmdb: dict[str, Any], pg: dict[str, Any], web: dict[str, Any] | None) -> dict:
    """Return each target with its figure and whether it is met."""
    out: dict[str, Any] = {}
    for label in ("16k", "full"):
        ratio = pg["page_and_pack"][label]["p50_ms"] / lmdb["page_and_pack"][label]["p50_ms"]
        out[f"page_and_pack_{label}_ratio"] = {
            "target": TARGETS["page_and_pack_ratio"], "value": round(ratio, 2),
            "met": ratio <= TARGETS["page_and_pack_ratio"]}  # fmt: skip
    rate = pg["import_blocks_per_s"]
    out["import_blocks_per_s"] = {"target": TARGETS["import_blocks_per_s"], "value": rate,
                                  "met": rate >= TARGETS["import_blocks_per_s"]}  # fmt: skip
    for name, target in WEB_TARGETS_MS.items() if web else ():
        p50 = web[name]["p50_ms"]  # type: ignore[index]
        out[f"{name}_ms"] = {"target": target, "value": p50, "met": p50 <= target}
    return out


def main(out_dir: Path, store: str | None = None, *, web: bool = True) -> dict[str, Any]:
    from runtime.config import configured_store
    from runtime.storage.blockstore import DEFAULT_TOKENIZERS
    from runtime.tokenizers import get_tokenizer

    # Loaded once per process, as in a serving process: neither import pays for it.
    for name in DEFAULT_TOKENIZERS:
        get_tokenizer(name)

    configured = configured_store(os.environ, Path.cwd())
    server = _Server(store or (configured if configured and "://" in configured else None))
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="llm386-bench-storage-") as tmp:
            lmdb = measure(str(Path(tmp) / "store"))
        print(f"lmdb done ({time.perf_counter() - started:.0f} s)", flush=True)
        url = server.database()
        pg = measure(url, server.data_dir())
        print(f"postgresql done ({time.perf_counter() - started:.0f} s)", flush=True)
        pg_web = web_on(server.database()) if web else None
    finally:
        server.close()
    result = {"blocks": BLOCKS, "lmdb": lmdb, "postgresql": pg, "postgresql_web": pg_web,
              "server": "given" if server.given else "started here, production settings",
              "targets": verdict(lmdb, pg, pg_web)}  # fmt: skip
    result["met"] = all(t["met"] for t in result["targets"].values())
    return write_result(out_dir, "storage", result)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", default=str(RESULTS))
    parser.add_argument("--store", help="a postgresql:// URL to measure instead of a new server")
    parser.add_argument("--no-web", action="store_true", help="skip the web pages")
    args = parser.parse_args()
    main(Path(args.out), args.store, web=not args.no_web)
