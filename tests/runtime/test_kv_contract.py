"""The key-value seam's contract (runtime.storage.kv), checked on every engine: LMDB and PostgreSQL.

Each test runs once per backend through the ``kv_engine`` fixture, on a fresh empty engine.
"""

from __future__ import annotations

import itertools
import multiprocessing
import random
import threading

import pytest

from runtime.errors import Llm386Error
from runtime.storage.kv import MAX_KEY_BYTES, Engine, Tables
from tests.runtime.kv_support import increment

# Keys that catch every way an engine can get memcmp order wrong: a shorter key before its
# extensions, a zero byte, bytes over 0x7f (signed comparison), runs of 0xff (prefix ends).
TRICKY = [
    b"\x00", b"\x00\x00", b"\x01", b"a", b"a\x00", b"a\x01", b"a\x7f", b"a\x80", b"a\xfe",
    b"a\xff", b"a\xff\x00", b"a\xff\xff", b"ab", b"abc", b"b", b"\x7f", b"\x80", b"\xfe",
    b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\xff",
]  # fmt: skip


def _fill(engine: Engine, table: str, keys: list[bytes]) -> None:
    shuffled = list(keys)
    random.Random(7).shuffle(shuffled)
    engine.write(lambda t: t.put_many(table, [(k, b"v:" + k) for k in shuffled]))


def test_keys_sort_in_unsigned_byte_order_with_shorter_keys_first(kv_engine):
    _fill(kv_engine, "t", TRICKY)
    assert kv_engine.read(lambda t: list(t.keys("t"))) == sorted(TRICKY)
    assert kv_engine.read(lambda t: list(t.keys("t", reverse=True))) == sorted(TRICKY)[::-1]
    assert kv_engine.read(lambda t: list(t.scan("t"))) == [(k, b"v:" + k) for k in sorted(TRICKY)]


def _model(keys, prefix, lo, hi, reverse, limit):
    chosen = [
        k
        for k in sorted(keys)
        if k.startswith(prefix) and (lo is None or k >= lo) and (hi is None or k < hi)
    ]
    chosen = chosen[::-1] if reverse else chosen
    return chosen if limit is None else chosen[: max(limit, 0)]


def test_scans_honour_prefix_bounds_direction_and_limit(kv_engine):
    _fill(kv_engine, "t", TRICKY)
    prefixes = [b"", b"a", b"a\xff", b"\xff", b"\xff\xff", b"\x00", b"z"]
    bounds = [None, b"a", b"a\x80", b"ab", b"\xff", b"\xff\xff\xff\xff"]
    cases = list(itertools.product(prefixes, bounds, bounds, [False, True], [None, 0, 1, 3]))

    def every_scan(t: Tables):
        return [
            (list(t.keys("t", p, lo=lo, hi=hi, reverse=r, limit=n)),
             [k for k, _ in t.scan("t", p, lo=lo, hi=hi, reverse=r, limit=n)])
            for p, lo, hi, r, n in cases
        ]  # fmt: skip

    for (p, lo, hi, r, n), (keys, scanned) in zip(cases, kv_engine.read(every_scan), strict=True):
        expected = _model(TRICKY, p, lo, hi, r, n)
        assert keys == expected, (p, lo, hi, r, n)
        assert scanned == expected, (p, lo, hi, r, n)


def test_scans_of_many_keys_are_complete_and_ordered_across_pages(kv_engine):
    keys = [i.to_bytes(2, "big") + b"-%d" % (i % 7) for i in range(3000)]
    _fill(kv_engine, "big", keys)

    def scans(t: Tables):
        return (
            list(t.keys("big")),
            list(t.keys("big", reverse=True)),
            list(t.keys("big", limit=1500)),
            list(t.keys("big", reverse=True, lo=keys[100], hi=keys[2900], limit=2000)),
            [k for k, _ in t.scan("big", lo=keys[10])],
        )

    forward, backward, limited, window, from_ten = kv_engine.read(scans)
    assert forward == sorted(keys) and backward == sorted(keys)[::-1]
    assert limited == sorted(keys)[:1500]
    assert window == sorted(keys)[100:2900][::-1][:2000]
    assert from_ten == sorted(keys)[10:]


def test_first_returns_the_first_or_last_key_of_a_prefix(kv_engine):
    _fill(kv_engine, "t", TRICKY)

    def firsts(t: Tables):
        return [t.first("t", b"a"), t.first("t", b"a", reverse=True), t.first("t", b"q")]

    assert kv_engine.read(firsts) == [b"a", b"a\xff\xff", None]


def test_get_many_answers_in_the_order_asked_with_none_for_absent_keys(kv_engine):
    _fill(kv_engine, "t", [b"x", b"y"])
    asked = [b"y", b"missing", b"x", b"y"]
    got = kv_engine.read(lambda t: t.get_many("t", asked))
    assert got == [b"v:y", None, b"v:x", b"v:y"]
    assert kv_engine.read(lambda t: t.get_many("t", [])) == []
    assert kv_engine.read(lambda t: t.get("t", b"missing")) is None


def test_put_replaces_and_put_many_keeps_the_last_value_of_a_key(kv_engine):
    kv_engine.write(lambda t: t.put("t", b"k", b"one"))
    kv_engine.write(lambda t: t.put("t", b"k", b"two"))
    kv_engine.write(lambda t: t.put_many("t", [(b"m", b"1"), (b"n", b"x"), (b"m", b"2")]))
    assert kv_engine.read(lambda t: list(t.scan("t"))) == [
        (b"k", b"two"),
        (b"m", b"2"),
        (b"n", b"x"),
    ]


def test_values_of_any_size_round_trip_byte_for_byte(kv_engine):
    rng = random.Random(11)
    values = {
        b"empty": b"",
        b"zeros": bytes(1000),
        b"chunk": rng.randbytes(64 * 1024),  # runtime.storage.chunking.MAX_CHUNK
        b"chunk+1": rng.randbytes(64 * 1024 + 1),
        b"huge": rng.randbytes(17 * 1024 * 1024),  # over the default 16 MiB block limit
        b"text": ("é" * 300_000).encode(),
    }
    kv_engine.write(lambda t: t.put_many("v", list(values.items())))
    assert kv_engine.read(lambda t: dict(t.scan("v"))) == values
    assert kv_engine.read(lambda t: dict(t.scan("v", reverse=True))) == values
    assert kv_engine.read(lambda t: t.get_many("v", list(values))) == list(values.values())
    assert kv_engine.read(lambda t: t.get("v", b"huge")) == values[b"huge"]


def test_delete_says_whether_the_key_was_there(kv_engine):
    _fill(kv_engine, "t", [b"k"])
    assert kv_engine.write(lambda t: t.delete("t", b"k")) is True
    assert kv_engine.write(lambda t: t.delete("t", b"k")) is False
    assert kv_engine.read(lambda t: t.get("t", b"k")) is None


def test_count_and_clear_touch_only_their_own_table(kv_engine):
    names = ["a", "ab", "b", "blocks", "blocks2", "s" * 60]
    for i, name in enumerate(names):
        _fill(kv_engine, name, [b"%03d" % j for j in range(i + 1)])
    assert kv_engine.read(lambda t: [t.count(n) for n in names]) == [1, 2, 3, 4, 5, 6]
    assert kv_engine.read(lambda t: t.count("never-written")) == 0
    kv_engine.write(lambda t: t.clear("blocks"))
    assert kv_engine.read(lambda t: [t.count(n) for n in names]) == [1, 2, 3, 0, 5, 6]
    assert kv_engine.read(lambda t: list(t.keys("ab"))) == [b"000", b"001"]


def test_many_tables_keep_their_keys_apart(kv_engine):
    tables = [f"table-{i}" for i in range(40)]
    kv_engine.write(lambda t: [t.put(n, b"same", n.encode()) for n in tables])
    assert kv_engine.read(lambda t: [t.get(n, b"same") for n in tables]) == [
        n.encode() for n in tables
    ]
    assert kv_engine.read(lambda t: [list(t.keys(n)) for n in tables]) == [[b"same"]] * 40


def test_a_write_that_raises_stores_nothing(kv_engine):
    _fill(kv_engine, "old", [b"kept"])

    def half(t: Tables) -> None:
        t.put("old", b"kept", b"changed")
        t.put("old", b"new", b"v")
        t.delete("old", b"kept")
        t.put("fresh", b"k", b"v")  # a table this very write creates
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        kv_engine.write(half)
    assert kv_engine.read(lambda t: list(t.scan("old"))) == [(b"kept", b"v:kept")]
    assert kv_engine.read(lambda t: (t.count("fresh"), t.get("fresh", b"k"))) == (0, None)
    kv_engine.write(lambda t: t.put("fresh", b"k", b"later"))  # the engine goes on working
    assert kv_engine.read(lambda t: t.get("fresh", b"k")) == b"later"


@pytest.mark.parametrize("key", [b"", b"k" * (MAX_KEY_BYTES + 1)], ids=["empty", "too-long"])
def test_a_key_outside_the_allowed_lengths_is_refused_and_its_write_stores_nothing(kv_engine, key):
    def write(t: Tables) -> None:
        t.put("t", b"good", b"v")
        t.put("t", key, b"v")

    with pytest.raises(Llm386Error):
        kv_engine.write(write)
    assert kv_engine.read(lambda t: t.count("t")) == 0
    longest = b"k" * MAX_KEY_BYTES
    kv_engine.write(lambda t: t.put("t", longest, b"v"))
    assert kv_engine.read(lambda t: list(t.keys("t"))) == [longest]


def test_writes_and_reads_inside_a_write_join_it_and_see_its_writes(kv_engine):
    def outer(t: Tables):
        t.put("t", b"outer", b"1")
        inner = kv_engine.write(lambda u: (u.get("t", b"outer"), u.put("t", b"inner", b"2")))
        seen = kv_engine.read(lambda u: (u.get("t", b"inner"), [k for k, _ in u.scan("t")]))
        return inner[0], seen

    assert kv_engine.write(outer) == (b"1", (b"2", [b"inner", b"outer"]))

    def outer_fails(t: Tables) -> None:
        kv_engine.write(lambda u: u.put("t", b"joined", b"x"))
        raise RuntimeError("after the nested write")

    with pytest.raises(RuntimeError):
        kv_engine.write(outer_fails)
    assert kv_engine.read(lambda t: t.get("t", b"joined")) is None  # it was part of the outer


def test_scans_see_the_transactions_own_writes_and_deletes(kv_engine):
    _fill(kv_engine, "t", [b"a", b"b", b"c"])

    def change_then_scan(t: Tables):
        t.put("t", b"bb", b"new")
        t.delete("t", b"a")
        return list(t.keys("t")), list(t.keys("t", reverse=True)), t.count("t")

    assert kv_engine.write(change_then_scan) == ([b"b", b"bb", b"c"], [b"c", b"bb", b"b"], 3)


def _in_thread(fn):
    """Run ``fn`` in another thread and return its result (or raise its exception)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def test_a_read_sees_one_snapshot_and_does_not_block_a_writer(kv_engine):
    kv_engine.write(lambda t: t.put("t", b"k", b"before"))

    def long_read(t: Tables):
        first = t.get("t", b"k")
        # Another thread writes and commits while this read is open: it must not wait for us.
        _in_thread(
            lambda: kv_engine.write(lambda u: (u.put("t", b"k", b"after"), u.put("t", b"n", b"x")))
        )
        return (
            first,
            t.get("t", b"k"),
            list(t.keys("t")),
            kv_engine.read(lambda u: u.get("t", b"k")),
        )

    assert kv_engine.read(long_read) == (b"before", b"before", [b"k"], b"before")
    assert kv_engine.read(lambda t: t.get("t", b"k")) == b"after"


def test_a_write_in_another_thread_does_not_join_this_threads_write(kv_engine):
    done = threading.Event()

    def outer(t: Tables):
        t.put("t", b"mine", b"1")
        worker = threading.Thread(
            target=lambda: (kv_engine.write(lambda u: u.put("t", b"theirs", b"2")), done.set())
        )
        worker.start()
        waited = done.wait(0.5)  # writers are serialised: theirs waits for mine to commit
        return waited, worker

    waited, worker = kv_engine.write(outer)
    worker.join(60)
    assert waited is False and done.is_set()
    assert kv_engine.read(lambda t: list(t.keys("t"))) == [b"mine", b"theirs"]


def test_writing_says_whether_this_thread_is_inside_a_write(kv_engine):
    assert kv_engine.writing() is False
    assert kv_engine.read(lambda t: kv_engine.writing()) is False

    def outer(t: Tables):
        return (
            kv_engine.writing(),
            _in_thread(kv_engine.writing),
            kv_engine.write(lambda u: kv_engine.writing()),
        )

    assert kv_engine.write(outer) == (True, False, True)
    assert kv_engine.writing() is False


@pytest.mark.slow
def test_writers_in_four_processes_lose_no_read_modify_write(kv_engine):
    rounds, workers = 150, 4
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    kind = kv_engine.scheme
    procs = [
        ctx.Process(target=increment, args=(kind, str(kv_engine.location), w, rounds, start))
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(300)
    assert [proc.exitcode for proc in procs] == [0] * workers
    total = rounds * workers
    assert kv_engine.read(lambda t: t.get("counter", b"n")) == b"%d" % total
    seen = kv_engine.read(lambda t: sorted(int(v) for v in dict(t.scan("done")).values()))
    assert seen == list(range(total))  # every increment read the value the previous one wrote
