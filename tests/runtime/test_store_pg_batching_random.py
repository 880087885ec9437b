"""A wider randomised check of a PostgreSQL write's held-back rows (review of send_pending and
the flat Batch): every read of the seam, clear, early sends, big values and byte-bound flushes,
and writes between the rows of a scan, against a dict model, on both backends."""

from __future__ import annotations

import bisect
import contextlib
import os
import random

import pytest

from runtime.storage.kv import Engine
from runtime.storage.postgres import pending

NAMES = ["t1", "t2", "t3"]
KEYS = 120
SEEDS = int(os.environ.get("LLM386_RANDOM_SEEDS", "40"))


def _key(rng: random.Random) -> bytes:
    return b"k%03d" % rng.randrange(KEYS)


def _value(rng: random.Random, step: int) -> bytes:
    if rng.random() < 0.02:  # past INLINE_VALUE_BYTES: fetched alone when a scan reaches it
        return b"B%d-" % step + bytes([rng.randrange(256)]) * (70 * 1024)
    return b"v%d-%d" % (step, rng.randrange(10**6))


def _span(rows: dict[bytes, bytes], prefix: bytes, lo, hi, reverse: bool, limit):
    keys = sorted(k for k in rows if k.startswith(prefix))
    if lo is not None:
        keys = [k for k in keys if k >= lo]
    if hi is not None:
        keys = [k for k in keys if k < hi]
    if reverse:
        keys.reverse()
    return keys if limit is None else keys[:limit]


def _first(rows: dict[bytes, bytes], prefix: bytes) -> bytes | None:
    keys = sorted(rows)
    i = bisect.bisect_left(keys, prefix)
    return keys[i] if i < len(keys) and keys[i].startswith(prefix) else None


@pytest.mark.parametrize("max_bytes", [pending.MAX_BYTES, 150_000])
def test_random_writes_with_every_read_and_writes_between_scan_rows(
    kv_engine: Engine, monkeypatch: pytest.MonkeyPatch, max_bytes: int
) -> None:
    from runtime.storage.postgres import tables

    monkeypatch.setattr(pending, "MAX_ROWS", 37)
    monkeypatch.setattr(pending, "MAX_BYTES", max_bytes)
    monkeypatch.setattr(tables, "COPY_ROWS", 5)
    monkeypatch.setattr(tables, "PUT_ROWS", 7)
    monkeypatch.setattr(tables, "GET_KEYS", 9)
    monkeypatch.setattr(tables, "FIRST_PAGE", 3)
    monkeypatch.setattr(tables, "MAX_PAGE", 8)
    monkeypatch.setattr(tables, "SEEN_ROWS", 60)
    model: dict[str, dict[bytes, bytes]] = {name: {} for name in NAMES}
    # Writes to a scan's own table between its rows (keys it has passed): both engines keep
    # the scan going from the last key it yielded. LMDB's reverse scan once yielded a key
    # twice here (seed 12: its cursor moved when a row under it was deleted).
    same_table = True

    def one_write(rng: random.Random, fail: bool) -> list[str]:
        def run(t) -> list[str]:
            wrong: list[str] = []

            def write_op(step: int, name: str, key: bytes, op: float) -> None:
                rows = model[name]
                if op < 0.6:
                    value = _value(rng, step)
                    t.put(name, key, value)
                    rows[key] = value
                elif op < 0.7:
                    items = [(_key(rng), _value(rng, step)) for _ in range(rng.randrange(1, 12))]
                    t.put_many(name, items)
                    rows.update(items)
                elif op < 0.95:
                    if t.delete(name, key) != (key in rows):
                        wrong.append(f"{step} delete {name} {key!r}")
                    rows.pop(key, None)
                else:
                    t.send_pending()

            for step in range(rng.randrange(20, 150)):
                name, key = rng.choice(NAMES), _key(rng)
                rows, op = model[name], rng.random()
                if op < 0.5:
                    write_op(step, name, key, rng.random())
                elif op < 0.6:
                    if t.get(name, key) != rows.get(key):
                        wrong.append(f"{step} get {name} {key!r}")
                elif op < 0.66:
                    keys = [_key(rng) for _ in range(rng.randrange(1, 30))]
                    if t.get_many(name, keys) != [rows.get(k) for k in keys]:
                        wrong.append(f"{step} get_many {name}")
                elif op < 0.69:
                    t.prefetch(name, [_key(rng) for _ in range(rng.randrange(1, 30))])
                elif op < 0.77:
                    prefix = rng.choice([b"", b"k", b"k0", b"k1", b"k05", b"k11", b"x"])
                    lo = rng.choice([None, None, _key(rng)])
                    hi = rng.choice([None, None, _key(rng)])
                    reverse = rng.random() < 0.5
                    limit = rng.choice([None, None, 1, 4, 20])
                    want = _span(rows, prefix, lo, hi, reverse, limit)
                    bounds = {"lo": lo, "hi": hi, "reverse": reverse, "limit": limit}
                    if rng.random() < 0.5:
                        got = list(t.keys(name, prefix, **bounds))
                        if got != want:
                            wrong.append(f"{step} keys {name} {prefix!r} {bounds}")
                    else:
                        got = list(t.scan(name, prefix, **bounds))
                        if got != [(k, rows[k]) for k in want]:
                            wrong.append(f"{step} scan {name} {prefix!r} {bounds}")
                elif op < 0.85:
                    # A scan with writes between its rows: other tables, and keys of its own
                    # table it has passed (what it yields next must not change).
                    reverse = rng.random() < 0.5
                    want = sorted(rows.items(), reverse=reverse)
                    got = []
                    for k, v in t.scan(name, reverse=reverse):
                        got.append((k, v))
                        for _ in range(rng.randrange(0, 4)):
                            other = rng.choice(NAMES)
                            if other == name and not same_table:
                                continue
                            if other == name:
                                passed = [b for b, _ in got]
                                write_op(
                                    step, name, rng.choice(passed), rng.choice([0.1, 0.8, 0.99])
                                )
                            else:
                                write_op(step, other, _key(rng), rng.random())
                    if got != want:
                        wrong.append(
                            f"{step} scan with writes {name} reverse={reverse}: {got} != {want}"
                        )
                elif op < 0.9:
                    if t.count(name) != len(rows):
                        wrong.append(f"{step} count {name}")
                elif op < 0.95:
                    prefixes = [rng.choice([b"k0", b"k1", b"k10", b"k05", b"k", b"z", b""])
                                + (b"%d" % rng.randrange(10) if rng.random() < 0.5 else b"")
                                for _ in range(rng.randrange(1, 14))]  # fmt: skip
                    if t.first_many(name, prefixes) != [_first(rows, p) for p in prefixes]:
                        wrong.append(f"{step} first_many {name}")
                elif op < 0.96:
                    t.clear(name)
                    rows.clear()
                elif op < 0.97:
                    held = set(t.table_names())
                    if not {n for n in NAMES if model[n]} <= held:
                        wrong.append(f"{step} table_names")
                else:
                    t.send_pending()
            if fail:
                raise RuntimeError("rolled back")
            return wrong

        return kv_engine.write(run)

    for seed in range(SEEDS):
        rng = random.Random(seed)
        fail = rng.random() < 0.15
        before = {name: dict(rows) for name, rows in model.items()}
        if fail:
            with pytest.raises(RuntimeError, match="rolled back"):
                one_write(rng, fail)
            model.clear()
            model.update(before)
        else:
            assert one_write(rng, fail) == [], f"seed {seed}"
        for name in NAMES:  # what the commit kept (or the rollback left)
            assert kv_engine.read(lambda t, n=name: list(t.scan(n))) == sorted(
                model[name].items()
            ), f"seed {seed} table {name}"


def test_a_failed_early_send_fails_the_whole_write_even_if_the_caller_goes_on(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rows sent early (send_pending) and those of the failed COPY all roll back, and a
    # caller that swallowed the error cannot commit what is left.
    from runtime.errors import StoreError
    from runtime.storage.postgres import tables
    from runtime.storage.postgres.engine import PostgresEngine

    engine = PostgresEngine(pg_url)
    try:
        engine.write(lambda t: t.put("e", b"old", b"1"))
        monkeypatch.setattr(tables, "COPY_ROWS", 5)
        real = tables.PgTables._held_keys
        calls = []

        def wrong(self, table, keys):  # the second COPY wrongly believes every key is new
            calls.append(table)
            return real(self, table, keys) if len(calls) == 1 else set()

        monkeypatch.setattr(tables.PgTables, "_held_keys", wrong)

        def run(t):
            t.put_many("e", [(b"a%d" % i, b"x") for i in range(10)])
            t.send_pending()
            t.put_many("e", [(b"b%d" % i, b"y") for i in range(10)] + [(b"old", b"2")])
            with contextlib.suppress(StoreError):
                t.send_pending()  # COPY straight into the table: "old" is a duplicate key
            t.put("e", b"after", b"z")
            return "done"

        with pytest.raises(StoreError):
            engine.write(run)
        assert engine.read(lambda t: list(t.scan("e"))) == [(b"old", b"1")]
    finally:
        engine.close()
