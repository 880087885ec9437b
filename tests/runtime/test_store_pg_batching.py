"""The PostgreSQL engine's round-trip savers keep the seam's meaning: a write's held-back puts and
deletes, what it remembers of its reads, ``first_many``, ``prefetch`` and ``batch_reads``."""

from __future__ import annotations

import threading

import pytest

from runtime.storage.kv import Engine
from runtime.storage.postgres import pending


def test_a_write_reads_back_its_own_held_back_puts_and_deletes(kv_engine: Engine) -> None:
    kv_engine.write(lambda t: t.put_many("a", [(b"k1", b"old"), (b"k2", b"x")]))

    def change(t):
        t.put("a", b"k1", b"new")
        t.put("a", b"k3", b"three")
        seen = [t.get("a", b"k1"), t.get_many("a", [b"k3", b"k2", b"zz"])]
        gone = [
            t.delete("a", b"k2"),
            t.delete("a", b"k2"),
            t.delete("a", b"k3"),
            t.delete("a", b"q"),
        ]
        t.put("a", b"k4", b"four")
        return seen, gone, list(t.scan("a")), t.count("a"), t.first_many("a", [b"k", b"k4", b"z"])

    seen, gone, rows, count, firsts = kv_engine.write(change)
    assert seen == [b"new", [b"three", b"x", None]]
    assert gone == [True, False, True, False]
    assert rows == [(b"k1", b"new"), (b"k4", b"four")] and count == 2
    assert firsts == [b"k1", b"k4", None]
    assert kv_engine.read(lambda t: list(t.scan("a"))) == rows  # and the commit kept them


def test_a_write_larger_than_the_buffer_lands_whole(kv_engine: Engine) -> None:
    items = [(b"%06d" % i, b"v%d" % i) for i in range(pending.MAX_ROWS + 700)]
    kv_engine.write(lambda t: [t.put("big", k, v) for k, v in items])
    assert kv_engine.read(lambda t: (t.count("big"), t.get("big", b"000699")))[0] == len(items)


def test_a_failed_write_stores_none_of_its_held_back_rows(kv_engine: Engine) -> None:
    def fail(t):
        t.put("a", b"k", b"v")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        kv_engine.write(fail)
    assert kv_engine.read(lambda t: t.get("a", b"k")) is None


def test_first_many_is_first_of_each_prefix(kv_engine: Engine) -> None:
    keys = [b"ab", b"abc", b"b\x00", b"b\xff\xff", b"c"]
    kv_engine.write(lambda t: t.put_many("f", [(k, b"") for k in keys]))
    prefixes = [b"a", b"abd", b"b", b"b\xff", b"bb", b"c", b"d", b"\xff", b"", b"abc", b"a"]
    assert (
        kv_engine.read(lambda t: t.first_many("f", prefixes))
        == kv_engine.read(lambda t: [t.first("f", p) for p in prefixes])
        == [b"ab", None, b"b\x00", b"b\xff\xff", None, b"c", None, None, b"ab", b"abc", b"ab"]
    )


def test_a_write_that_prefetched_still_sees_a_later_delete(kv_engine: Engine) -> None:
    kv_engine.write(lambda t: t.put("p", b"k", b"v"))

    def go(t):
        t.prefetch("p", [b"k", b"absent"])
        before = (t.get("p", b"k"), t.get("p", b"absent"))
        t.delete("p", b"k")
        return before, t.get("p", b"k")

    assert kv_engine.write(go) == ((b"v", None), None)


def test_a_value_read_then_written_then_sent_by_a_scan_reads_back_new(kv_engine: Engine) -> None:
    # A counter bumped twice in one write, a scan of its table between the bumps: the second
    # bump must read the first one's value, not the one the write read before it.
    kv_engine.write(lambda t: t.put("m", b"count", b"0"))

    def bump(t) -> None:
        t.put("m", b"count", b"%d" % (int(t.get("m", b"count")) + 1))

    def go(t):
        bump(t)
        list(t.scan("m"))  # sends the table's held-back rows
        bump(t)
        t.count("m")
        t.delete("m", b"other")
        bump(t)
        return t.get("m", b"count")

    assert kv_engine.write(go) == b"3"
    assert kv_engine.read(lambda t: t.get("m", b"count")) == b"3"


def test_reads_in_a_batch_share_one_snapshot(kv_engine: Engine) -> None:
    kv_engine.write(lambda t: t.put("s", b"k", b"1"))
    with kv_engine.batch_reads():
        first = kv_engine.read(lambda t: t.get("s", b"k"))
        writer = threading.Thread(target=lambda: kv_engine.write(lambda t: t.put("s", b"k", b"2")))
        writer.start()
        writer.join()
        second = kv_engine.read(lambda t: t.get("s", b"k"))
    after = kv_engine.read(lambda t: t.get("s", b"k"))
    assert (first, after) == (b"1", b"2")
    if kv_engine.scheme == "postgresql":  # one transaction for the batch: the same snapshot
        assert second == b"1"


def test_a_copied_flush_of_several_tables_mixes_new_and_replaced_rows(kv_engine: Engine) -> None:
    """Many rows in several tables at once (the COPY path on PostgreSQL): rows already there
    are replaced, new ones added, values kept byte for byte, a delete of the same flush kept."""
    from runtime.storage.postgres.tables import COPY_ROWS

    many = COPY_ROWS + 100
    before = [(b"k%05d" % i, b"old") for i in range(0, 2 * many, 2)]
    kv_engine.write(lambda t: (t.put_many("one", before), t.put_many("two", before[:10])))
    odd = bytes(range(256)) * 300  # every byte value, over 64 KiB
    one = [(b"k%05d" % i, b"\x00new%d\xff" % i + (odd if i == 7 else b"")) for i in range(many)]
    two = [(b"k%05d" % i, b"t%d" % i) for i in range(many)]

    def change(t):
        t.put_many("one", one)
        t.put_many("two", two)
        t.put_many("few", [(b"a", b"\x00")])
        t.delete("one", b"k%05d" % (2 * many - 2))

    kv_engine.write(change)
    rows = kv_engine.read(lambda t: dict(t.scan("one")))
    expected = {**dict(before), **dict(one)}
    del expected[b"k%05d" % (2 * many - 2)]
    assert rows == expected
    assert kv_engine.read(lambda t: dict(t.scan("two"))) == dict(two)
    assert kv_engine.read(lambda t: list(t.scan("few"))) == [(b"a", b"\x00")]
