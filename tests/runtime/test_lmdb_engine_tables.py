"""LMDB engine: a read transaction can use a table it has not opened before."""

from __future__ import annotations

from pathlib import Path

from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.engine import LmdbEngine


def _written(path: Path) -> None:
    kv = LmdbEngine(path)
    kv.write(lambda t: (t.put("a", b"k", b"1"), t.put("b", b"k", b"2")))
    lmdbenv.close_env(path)


def test_a_first_read_of_existing_tables_sees_them(tmp_path: Path) -> None:
    _written(tmp_path / "s")
    kv = LmdbEngine(tmp_path / "s")
    assert kv.read(lambda t: (t.get("a", b"k"), t.get_many("b", [b"k"]), t.count("a"))) == (
        b"1", [b"2"], 1,
    )  # fmt: skip


def test_a_read_only_engine_reads_existing_tables_and_absent_ones_as_empty(tmp_path: Path) -> None:
    _written(tmp_path / "s")
    kv = LmdbEngine(tmp_path / "s", readonly=True)
    assert kv.read(lambda t: (t.get("a", b"k"), t.get("none", b"k"), list(t.scan("none")))) == (
        b"1", None, [],
    )  # fmt: skip
    assert kv.read(lambda t: t.count("none")) == 0


def test_a_nested_read_opening_a_table_shares_the_outer_snapshot(tmp_path: Path) -> None:
    _written(tmp_path / "s")
    kv = LmdbEngine(tmp_path / "s")
    assert kv.read(lambda t: (t.get("a", b"k"), kv.read(lambda u: u.get("b", b"k")))) == (
        b"1", b"2",
    )  # fmt: skip


def test_a_table_first_read_in_one_read_is_readable_in_the_next(tmp_path) -> None:
    # A handle LMDB opens inside a read transaction dies with it (reads end by abort): a store
    # reopened by a new process read one table, then failed every later read of it with
    # "mdb_get: Invalid argument" (`llm386 trace ID --request` after `llm386 trace ID`).

    path = tmp_path / "kv"
    first = LmdbEngine(path)
    first.write(lambda t: t.put("a", b"k", b"1"))
    first.write(lambda t: t.put("b", b"k", b"2"))
    lmdbenv.close_env(path)  # what a new process sees: no handle opened yet
    engine = LmdbEngine(path)
    assert engine.read(lambda t: t.get("a", b"k")) == b"1"
    assert engine.read(lambda t: (t.get("a", b"k"), t.get("b", b"k"))) == (b"1", b"2")
    assert engine.read(lambda t: list(t.scan("b"))) == [(b"k", b"2")]
