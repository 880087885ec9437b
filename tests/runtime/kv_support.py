"""Worker processes for the key-value contract tests (importable, so multiprocessing can spawn them)."""

from __future__ import annotations

from typing import Any

from runtime.storage.kv import Engine, Tables


def open_engine(kind: str, target: str) -> Engine:
    """Open the engine of ``kind`` ("lmdb" or "postgresql") at ``target`` (a path or a URL)."""
    if kind == "lmdb":
        from runtime.storage.lmdb.engine import LmdbEngine

        return LmdbEngine(target)
    from runtime.storage.postgres.engine import PostgresEngine

    return PostgresEngine(target)


def increment(kind: str, target: str, worker: int, rounds: int, start: Any) -> None:
    """Add 1 to the shared counter ``rounds`` times, each a read-modify-write in its own write."""
    engine = open_engine(kind, target)
    start.wait(60)
    try:
        for i in range(rounds):

            def bump(t: Tables, i: int = i) -> None:
                count = int(t.get("counter", b"n") or b"0")
                t.put("counter", b"n", b"%d" % (count + 1))
                t.put("done", b"%02d-%06d" % (worker, i), b"%d" % count)

            engine.write(bump)
    finally:
        engine.close()
