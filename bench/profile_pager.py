"""Where a page's time goes: a pyinstrument profile of warm pages at 1,000 and 100,000 blocks.

Input: the session of ``bench.bench_pager`` (tau-bench airline messages grown to each size).
Output: ``bench/results/pager_profile_<size>.txt`` (pyinstrument's text tree of ``--pages`` warm
pages with the full Claude budget, sampled every 0.1 ms) and ``pager_profile.json`` (what was
profiled, and the p50 page time outside the profiler in the same process).

Run: ``python -m bench.profile_pager [--sizes 1000,100000] [--pages 100] [--suffix _horizon]``
(``--suffix`` goes into the profiles' names, so a new profile can sit beside an older one;
pager_profile.json describes the latest run).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from pyinstrument import Profiler

from bench.bench_pager import SESSION, build, grow, tasks
from bench.common import RESULTS, time_calls, write_result
from bench.taudata import TAU_SESSIONS, TAU_TOOLS
from runtime.pager.core import PageRequest, page
from runtime.profiles.catalog import get_profile
from runtime.progress import Progress

SIZES = (1_000, 100_000)
INTERVAL_S = 0.0001


def profile_size(
    size: int, folder: Path, out_dir: Path, pages: int, suffix: str = ""
) -> dict[str, Any]:
    blocks, edges = grow(TAU_SESSIONS, TAU_TOOLS, size)
    store, _ = build(folder / f"store-{size}", blocks, edges)
    profile = get_profile("claude-sonnet-4-6")
    questions = tasks(blocks)
    for q in questions:  # warm, as bench_pager measures
        page(store, PageRequest(SESSION, q, profile))
    turn = iter(range(10**9))

    def one() -> Any:
        return page(store, PageRequest(SESSION, questions[next(turn) % len(questions)], profile))

    timing = time_calls(one, pages)
    profiler = Profiler(interval=INTERVAL_S)
    with profiler:
        for _ in range(pages):
            one()
    path = out_dir / f"pager_profile{suffix}_{size}.txt"
    path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    store.close()
    return {"blocks": size, "pages": pages, "page": timing, "profile": path.name}


def main(out_dir: Path, sizes: tuple[int, ...], pages: int, suffix: str = "") -> dict[str, Any]:
    rows = []
    out_dir.mkdir(parents=True, exist_ok=True)  # the profiles are written before the result
    with tempfile.TemporaryDirectory() as tmp, Progress("profile pager", len(sizes)) as progress:
        for size in sizes:
            rows.append(profile_size(size, Path(tmp), out_dir, pages, suffix))
            progress.advance()
    result = {
        "benchmark": "pyinstrument profile of warm pages (full Claude budget)",
        "interval_s": INTERVAL_S,
        "sizes": rows,
    }
    return write_result(out_dir, "pager_profile", result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--out", help="results folder (default bench/results)")
    parser.add_argument(
        "--suffix", default="", help="added to the output names, to keep older ones"
    )
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    main(Path(args.out) if args.out else RESULTS, sizes, args.pages, args.suffix)
