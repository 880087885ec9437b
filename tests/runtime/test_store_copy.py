"""Copying a whole store between engines: every table byte for byte, verified, never merged."""

from __future__ import annotations

import pytest

from runtime import open_store
from runtime.blocks import NewBlock
from runtime.errors import StoreError, StoreNotAStore
from runtime.storage.copy import copy_order, copy_store, digest
from runtime.storage.lmdb.engine import LmdbEngine


def _filled(tmp_path):
    store = open_store(tmp_path / "src")
    for s in range(3):
        store.put_many(f"s{s}", [NewBlock("fact", f"fact {s}.{i} " + "x" * i) for i in range(50)])
    store.set_session_meta("s1", title="one")
    return store


def test_a_copy_holds_every_table_byte_for_byte_and_opens_as_the_same_store(tmp_path) -> None:
    src = _filled(tmp_path)
    dst = LmdbEngine(tmp_path / "dst")
    report = copy_store(src.kv, dst)
    assert report.tables == digest(src.kv) and report.keys > 150
    copied = open_store(tmp_path / "dst")
    assert [s.session for s in copied.sessions()] == ["s0", "s1", "s2"]
    assert copied.session_info("s1").meta["title"] == "one"
    assert [e.id for e in copied.entries("s2")] == [e.id for e in src.entries("s2")]
    assert copied.verify().ok


def test_a_copy_never_merges_into_a_store_that_holds_data(tmp_path) -> None:
    src = _filled(tmp_path)
    other = open_store(tmp_path / "other")
    other.put("mine", NewBlock("fact", "keep me"))
    before = digest(other.kv)
    with pytest.raises(StoreError, match="already holds data"):
        copy_store(src.kv, other.kv)
    assert digest(other.kv) == before


def test_the_marker_table_is_written_last_so_a_broken_copy_is_not_a_store(tmp_path) -> None:
    assert copy_order(["tokens", "meta", "blocks"]) == ["blocks", "tokens", "meta"]
    src = _filled(tmp_path)
    dst = LmdbEngine(tmp_path / "half")
    names = [n for n in src.kv.read(lambda t: t.table_names()) if n != "meta"]
    for name in names[:2]:  # what a copy killed before its last table leaves behind
        rows = src.kv.read(lambda t, name=name: list(t.scan(name)))
        dst.write(lambda t, name=name, rows=rows: t.put_many(name, rows))
    with pytest.raises(StoreNotAStore):
        open_store(tmp_path / "half")


def test_a_write_during_the_copy_does_not_break_it(tmp_path, monkeypatch) -> None:
    src = _filled(tmp_path)
    import runtime.storage.copy as copy_mod

    real_flush, wrote = copy_mod._flush, []

    def flush_and_write(dst, name, batch, progress):  # a writer lands mid-copy
        real_flush(dst, name, batch, progress)
        if not wrote:
            wrote.append(src.put("s9", NewBlock("fact", "written during the copy")))

    monkeypatch.setattr(copy_mod, "_flush", flush_and_write)
    copy_store(src.kv, LmdbEngine(tmp_path / "dst"))
    copied = open_store(tmp_path / "dst")
    assert "s9" not in [s.session for s in copied.sessions()]  # the snapshot from the start
    assert copied.verify().ok


def test_a_destination_that_differs_after_the_copy_is_reported(tmp_path, monkeypatch) -> None:
    from runtime.errors import StoreCorrupted

    src = _filled(tmp_path)
    import runtime.storage.copy as copy_mod

    real_flush = copy_mod._flush

    def lossy_flush(dst, name, batch, progress):  # a destination that loses a key
        real_flush(dst, name, batch[1:] if name == "blocks" else batch, progress)

    monkeypatch.setattr(copy_mod, "_flush", lossy_flush)
    with pytest.raises(StoreCorrupted, match="blocks"):
        copy_store(src.kv, LmdbEngine(tmp_path / "dst"))
