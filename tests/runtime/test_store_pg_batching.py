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


def test_deleting_keys_a_write_has_read_keeps_their_meaning(kv_engine: Engine) -> None:
    """Deletes of keys read earlier in the write (present, absent, deleted twice, deleted then
    put again) return what LMDB returns and leave the same rows after the commit."""
    kv_engine.write(lambda t: t.put_many("d", [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]))

    def change(t):
        t.get_many("d", [b"a", b"b", b"c", b"x"])
        gone = [t.delete("d", b"a"), t.delete("d", b"a"), t.delete("d", b"x"), t.delete("d", b"b")]
        t.put("d", b"b", b"again")
        return gone, t.get_many("d", [b"a", b"b", b"x"]), t.count("d")

    assert kv_engine.write(change) == ([True, False, False, True], [None, b"again", None], 2)
    assert kv_engine.read(lambda t: list(t.scan("d"))) == [(b"b", b"again"), (b"c", b"3")]


class _Statements:
    """Count the statements PostgreSQL writes send, by their first words and table."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from runtime.storage.postgres import tables

        self.sent: list[tuple[str, object]] = []
        run = tables.PgTables._run

        def counted(tables_self, sql, params):
            self.sent.append((" ".join(sql.split()[:3]), params[0] if params else None))
            return run(tables_self, sql, params)

        monkeypatch.setattr(tables.PgTables, "_run", counted)

    def count(self, start: str, table: str | None = None) -> int:
        return sum(s.startswith(start) and table in (None, t) for s, t in self.sent)


def test_deletes_of_keys_read_go_with_the_commit_not_one_by_one(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.storage.postgres.engine import PostgresEngine

    engine = PostgresEngine(pg_url)
    keys = [b"h%03d" % i for i in range(200)]
    engine.write(lambda t: t.put_many("h", [(k, b"1") for k in keys]))
    statements = _Statements(monkeypatch)

    def drop(t):
        t.get_many("h", keys)
        return [t.delete("h", k) for k in keys]

    assert engine.write(drop) == [True] * len(keys)
    assert statements.count("DELETE") == 1  # one DELETE ... = ANY for the 200 rows
    assert engine.read(lambda t: t.count("h")) == 0
    engine.close()


def test_a_copied_flush_asks_only_about_keys_the_write_has_not_read(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.storage.postgres.engine import PostgresEngine
    from runtime.storage.postgres.tables import COPY_ROWS

    engine = PostgresEngine(pg_url)
    old = [(b"o%05d" % i, b"old") for i in range(COPY_ROWS)]
    engine.write(lambda t: t.put_many("c", old))
    statements = _Statements(monkeypatch)
    new = [(b"n%05d" % i, b"new") for i in range(COPY_ROWS)]

    def change(t):  # every key read first: the absent ones and the held ones
        t.get_many("c", [k for k, _ in old + new])
        t.put_many("c", [(k, b"replaced") for k, _ in old] + new)

    engine.write(change)
    assert statements.count("SELECT k FROM") == 0  # no probe of which keys the table holds
    rows = engine.read(lambda t: dict(t.scan("c")))
    assert rows == {**{k: b"replaced" for k, _ in old}, **dict(new)}
    engine.close()


def test_edges_to_earlier_blocks_read_their_ends_in_one_statement(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.blocks import BlockKind, Edge, EdgeKind, NewBlock, content_hash
    from runtime.storage import open_store

    store = open_store(pg_url)
    first = [NewBlock(BlockKind.USER_MESSAGE, f"question {i}") for i in range(30)]
    store.put_many("s", first)
    later = [NewBlock(BlockKind.ASSISTANT_MESSAGE, f"answer {i}") for i in range(30)]
    edges = [
        Edge(
            content_hash(b.kind, str(b.body)), EdgeKind.SUPPORTS, content_hash(a.kind, str(a.body))
        )
        for a, b in zip(first, later, strict=True)
    ]
    statements = _Statements(monkeypatch)
    store.put_many("s", later, edges)
    assert statements.count("SELECT v FROM", "blocks") == 0  # no read of one end at a time
    assert statements.count("SELECT k, v", "blocks") == 2  # the batch's own ids, the edges' ends
    assert store.edges_from(edges[0].src) == [edges[0]]
    store.close()


@pytest.mark.parametrize(
    "items",
    [[], [b""], [b"\x00", b"\xff" * 70_000, b"k"], [bytes([i % 256]) * i for i in range(300)]],
)
def test_key_arrays_are_framed_as_psycopg_frames_them(items: list[bytes]) -> None:
    import psycopg
    from psycopg.adapt import PyFormat, Transformer

    from runtime.storage.postgres.tables import bytea_array

    theirs = Transformer(psycopg.adapters).get_dumper(items, PyFormat.BINARY).dump(items)
    if items:
        assert bytea_array(items) == bytes(theirs)
    else:  # psycopg sends an empty list untyped; ours says bytea: same empty array either way
        assert bytea_array(items) == b"\x00" * 8 + (17).to_bytes(4, "big")


def test_key_arrays_reach_the_server_whole(pg_url: str) -> None:
    import psycopg

    from runtime.storage.postgres.tables import ByteArray

    items = [b"", b"\x00\x01", b"\xff" * 70_000, bytes(range(256))]
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT %b::bytea[], cardinality(%b::bytea[])", [ByteArray(items), ByteArray([])]
        ).fetchone()
    assert row == (items, 0)


def test_random_writes_read_and_land_as_a_dict_model_says(
    kv_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small limits, so one write's flushes, COPYs (new keys and held ones), multi-row upserts,
    # held-back deletes and early sends (send_pending) all happen many times in it.
    import random

    from runtime.storage.postgres import tables

    monkeypatch.setattr(pending, "MAX_ROWS", 37)
    monkeypatch.setattr(tables, "COPY_ROWS", 5)
    monkeypatch.setattr(tables, "PUT_ROWS", 7)
    monkeypatch.setattr(tables, "GET_KEYS", 9)
    names = ["t1", "t2"]
    model: dict[str, dict[bytes, bytes]] = {name: {} for name in names}

    def one_write(rng: random.Random) -> list[str]:
        def run(t) -> list[str]:
            wrong = []
            for step in range(rng.randrange(20, 120)):
                name, key = rng.choice(names), b"k%03d" % rng.randrange(150)
                rows, op = model[name], rng.random()
                if op < 0.45:
                    value = b"v%d-%d" % (step, rng.randrange(10**6))
                    t.put(name, key, value)
                    rows[key] = value
                elif op < 0.6:
                    if t.delete(name, key) != (key in rows):
                        wrong.append(f"delete {key!r}")
                    rows.pop(key, None)
                elif op < 0.75:
                    if t.get(name, key) != rows.get(key):
                        wrong.append(f"get {key!r}")
                elif op < 0.85:
                    keys = [b"k%03d" % rng.randrange(150) for _ in range(rng.randrange(1, 30))]
                    if t.get_many(name, keys) != [rows.get(k) for k in keys]:
                        wrong.append("get_many")
                elif op < 0.9:
                    if list(t.scan(name)) != sorted(rows.items()):
                        wrong.append("scan")
                elif op < 0.95:
                    if t.count(name) != len(rows):
                        wrong.append("count")
                else:
                    t.send_pending()
            return wrong

        return kv_engine.write(run)

    for seed in range(12):
        rng = random.Random(seed)
        assert one_write(rng) == [], f"seed {seed}"
        for name in names:  # what the commit kept
            assert kv_engine.read(lambda t, n=name: list(t.scan(n))) == sorted(model[name].items())
