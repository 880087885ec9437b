"""Store throughput: durable puts one by one and batched, gets, and listing 100,000 entries."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import measure_in_tmp, results_dir, time_calls
from runtime import NewBlock, open_store

BODY = (
    "Customer asked to change flight {i} on 2024-05-{d:02d}; agent checked reservation ZX{i:05d}. "
)


def _blocks(start: int, count: int) -> list[NewBlock]:
    return [
        NewBlock("user-message", BODY.format(i=i, d=i % 28 + 1) * 4)
        for i in range(start, start + count)
    ]


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def measure(root: Path, listing_size: int = 100_000) -> dict[str, Any]:
    store = open_store(root / "store")
    singles = _blocks(0, 500)
    start = time.perf_counter()
    for block in singles:
        store.put("single", block)
    single_rate = _rate(len(singles), time.perf_counter() - start)

    start = time.perf_counter()
    for offset in range(0, listing_size, 1000):
        store.put_many("big", _blocks(10_000 + offset, 1000))
    batch_rate = _rate(listing_size, time.perf_counter() - start)

    ids = [e.id for e in store.entries("big", 0, 10_000)]
    start = time.perf_counter()
    for bid in ids:
        store.get(bid)
    get_rate = _rate(len(ids), time.perf_counter() - start)

    return {
        "put_one_by_one_durable_per_s": single_rate,
        "put_batched_1000_per_s": batch_rate,
        "get_per_s": get_rate,
        "list_session_100k_entries_with_bodies": time_calls(lambda: store.entries("big"), 5),
        "list_session_100k_refs_without_bodies": time_calls(lambda: store.entry_refs("big"), 5),
        "list_page_of_100_at_offset_90k": time_calls(lambda: store.entries("big", 90_000, 100), 50),
        "session_size": listing_size,
        "body_bytes": len(singles[0].body),
    }


def main(out_dir: Path) -> dict[str, Any]:
    return measure_in_tmp(out_dir, "store", measure)


if __name__ == "__main__":
    main(results_dir())
