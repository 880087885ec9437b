"""Key-value engine throughput: LMDB against PostgreSQL in the same run, through the seam only.

Both durable (LMDB syncs each commit; PostgreSQL runs with its default fsync and synchronous
commit, on a unix socket of a server this benchmark starts and stops, as tests/pg_server.py does).
Reports operations per second for each engine and PostgreSQL's rate as a fraction of LMDB's.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import write_result
from runtime.storage.kv import Engine
from runtime.storage.lmdb.engine import LmdbEngine

KEYS = 20_000
VALUE_BYTES = 500
SINGLE_WRITES = 500
POINT_READS = 10_000
OWN_TXN_READS = 1_000


def _rate(count: int, fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return round(count / (time.perf_counter() - start), 1)


def measure(engine: Engine) -> dict[str, float]:
    """Return operations per second of each kind on a fresh ``engine``."""
    rng = random.Random(5)
    keys = [b"%08d" % i for i in range(KEYS)]
    value = rng.randbytes(VALUE_BYTES)
    probe = rng.sample(keys, POINT_READS)

    def singles() -> None:
        for i in range(SINGLE_WRITES):
            engine.write(lambda t, i=i: t.put("one", b"%08d" % i, value))

    def batches() -> None:
        for start in range(0, KEYS, 1000):
            engine.write(
                lambda t, s=start: t.put_many("kv", [(k, value) for k in keys[s : s + 1000]])
            )

    def gets() -> None:
        engine.read(lambda t: [t.get("kv", k) for k in probe])

    def reads() -> None:
        for k in probe[:OWN_TXN_READS]:
            engine.read(lambda t, k=k: t.get("kv", k))

    def get_many() -> None:
        engine.read(
            lambda t: [t.get_many("kv", probe[s : s + 100]) for s in range(0, POINT_READS, 100)]
        )

    def scans() -> None:
        for _ in range(5):
            assert engine.read(lambda t: sum(1 for _ in t.scan("kv"))) == KEYS

    return {
        "write_one_put_per_commit_per_s": _rate(SINGLE_WRITES, singles),
        "put_batched_1000_per_commit_per_s": _rate(KEYS, batches),
        "get_in_one_read_per_s": _rate(POINT_READS, gets),
        "read_transactions_of_one_get_per_s": _rate(OWN_TXN_READS, reads),
        "get_many_100_keys_per_s": _rate(POINT_READS, get_many),
        "scan_rows_per_s": _rate(5 * KEYS, scans),
    }


def _postgres(root: Path) -> dict[str, float] | str:
    from tests.pg_server import PgServer, missing_binaries

    if missing_binaries():
        return str(missing_binaries())
    from runtime.storage.postgres.engine import PostgresEngine

    server = PgServer(fast=False).start()
    try:
        engine = PostgresEngine(server.url(server.create_database()))
        try:
            return measure(engine)
        finally:
            engine.close()
    finally:
        server.remove()


def main(results: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        lmdb_engine = LmdbEngine(Path(tmp) / "kv")
        lmdb = measure(lmdb_engine)
        lmdb_engine.close()
        postgres = _postgres(Path(tmp))
    result: dict[str, Any] = {"keys": KEYS, "value_bytes": VALUE_BYTES, "lmdb": lmdb}
    if isinstance(postgres, str):
        result["postgresql_skipped"] = postgres
    else:
        result["postgresql"] = postgres
        result["postgresql_over_lmdb"] = {k: round(postgres[k] / lmdb[k], 3) for k in lmdb}
    write_result(results, "kv_engines", result)
    return result


if __name__ == "__main__":
    import json

    print(
        json.dumps(
            main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench/results")), indent=2
        )
    )
