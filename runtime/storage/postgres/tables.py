"""One PostgreSQL transaction seen as the seam's tables: the SQL of get, put, scan and the rest.

Every table of the seam is a range ``t = <name>`` of ``llm386_kv``; keys and values travel in
binary (no hex encoding of ``bytea``), and statements are prepared by psycopg after a few uses.

Invariants:
- Scans never hold a table in memory: they are keyset-paginated (``k > last`` or ``k < last``,
  ``ORDER BY k``, ``LIMIT`` growing from 64 to 1,024 rows), each page fetched whole before it is
  yielded, so the caller may read and write the same transaction between rows. Values over
  64 KiB are left out of the page and fetched one by one when their row is reached, so a page
  holds at most 64 MiB whatever the values.
- A write transaction's puts and deletes wait in a ``pending.Pending`` and go many rows per
  statement; gets read through it, and scans, counts and the commit flush it first.
- A write transaction remembers what its gets returned: it holds the writers' lock, so no one
  else changes a row until it ends, and its own writes update what it remembers.
- A driver error inside the transaction is remembered (``failure``) before it is raised: the
  engine never commits a transaction a statement failed in, even if the caller swallowed it.
- A Tables is dead once its transaction ends; using it then raises instead of borrowing a
  connection that the pool may have handed to another thread.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from runtime.errors import InvalidInput, StoreError, StoreReadOnly
from runtime.storage.kv import MAX_KEY_BYTES, Span, Tables
from runtime.storage.postgres.pending import MISSING, Batch, Pending
from runtime.storage.postgres.schema import KV_TABLE

FIRST_PAGE = 64
MAX_PAGE = 1024
INLINE_VALUE_BYTES = 64 * 1024
#: Rows and bytes sent in one INSERT of a put_many.
PUT_ROWS = 1000
PUT_BYTES = 8 * 1024 * 1024
GET_KEYS = 1000
#: How many rows a write remembers per table before it starts over.
SEEN_ROWS = 200_000

# The distinct table names by a skip scan of the primary key (one index probe per name).
_NAMES = (
    f"WITH RECURSIVE names(t) AS (SELECT min(t) FROM {KV_TABLE} UNION ALL "
    f"SELECT (SELECT min(t) FROM {KV_TABLE} WHERE t > names.t) FROM names "
    "WHERE names.t IS NOT NULL) SELECT t FROM names WHERE t IS NOT NULL"
)
_GET = f"SELECT v FROM {KV_TABLE} WHERE t = %s AND k = %s"
# Arrays of keys and values go as binary parameters (%b): psycopg's text form of a bytea array
# escapes every element in Python, 60x slower than the binary form for a batch of keys.
_GET_MANY = f"SELECT k, v FROM {KV_TABLE} WHERE t = %s AND k = ANY(%b::bytea[])"
_PUT_MANY = (
    f"INSERT INTO {KV_TABLE} (t, k, v) SELECT %s, k, v FROM unnest(%b::bytea[], %b::bytea[]) "
    "AS r(k, v) ON CONFLICT (t, k) DO UPDATE SET v = EXCLUDED.v"
)
_DELETE = f"DELETE FROM {KV_TABLE} WHERE t = %s AND k = %s"
# Big flushes go through COPY into a temporary table (per connection, emptied at commit): the
# rows of every table with COPY_ROWS or more pending, in one COPY and one upsert.
COPY_ROWS = 500
_LOAD_TABLE = "llm386_load_rows"
_CREATE_LOAD = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_LOAD_TABLE} (t text NOT NULL, k bytea NOT NULL, "
    "v bytea NOT NULL) ON COMMIT DELETE ROWS"
)
_COPY_LOAD = f"COPY {_LOAD_TABLE} (t, k, v) FROM STDIN (FORMAT BINARY)"
_UPSERT_LOAD = (
    f"INSERT INTO {KV_TABLE} (t, k, v) SELECT t, k, v FROM {_LOAD_TABLE} ORDER BY t, k "
    "ON CONFLICT (t, k) DO UPDATE SET v = EXCLUDED.v"
)
_EMPTY_LOAD = f"TRUNCATE {_LOAD_TABLE}"
_COPY_KV = f"COPY {KV_TABLE} (t, k, v) FROM STDIN (FORMAT BINARY)"
_HELD = f"SELECT k FROM {KV_TABLE} WHERE t = %s AND k = ANY(%b::bytea[])"
# PostgreSQL's binary COPY framing: signature, flags and header extension, then per row the
# field count and each field as length + bytes, then -1 (``copy_rows``).
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_FIELDS = struct.Struct(">hi")
_DELETE_MANY = f"DELETE FROM {KV_TABLE} WHERE t = %s AND k = ANY(%b::bytea[])"
# The first key at or after each of the prefixes, in their order (one index probe each; the
# caller keeps it only if it starts with its prefix, so no probe walks past a missing one).
_FIRST_MANY = (
    f"SELECT (SELECT k FROM {KV_TABLE} WHERE t = %s AND k >= r.lo ORDER BY k LIMIT 1) "
    "FROM unnest(%b::bytea[]) WITH ORDINALITY AS r(lo, i) ORDER BY r.i"
)
_COUNT = f"SELECT count(*) FROM {KV_TABLE} WHERE t = %s"
_CLEAR = f"DELETE FROM {KV_TABLE} WHERE t = %s"
_VALUE = f"CASE WHEN octet_length(v) <= {INLINE_VALUE_BYTES} THEN v END"


def _page_sql(*, values: bool, reverse: bool, strict: bool, upper: bool) -> str:
    """Return the SELECT of one scan page: ``k >= low`` (``k > low`` when ``strict``), ``k < high``."""
    columns = f"k, {_VALUE}" if values else "k"
    where = f"t = %s AND k {'>' if strict else '>='} %s" + (" AND k < %s" if upper else "")
    order = "DESC" if reverse else "ASC"
    return f"SELECT {columns} FROM {KV_TABLE} WHERE {where} ORDER BY k {order} LIMIT %s"


_PAGES = {
    (values, reverse, strict, upper): _page_sql(
        values=values, reverse=reverse, strict=strict, upper=upper
    )
    for values in (False, True)
    for reverse in (False, True)
    for strict in (False, True)
    for upper in (False, True)
}


class ByteArray(list[bytes]):
    """Keys or values sent as one binary ``bytea[]`` parameter, framed by ``bytea_array``:
    psycopg's own list dumper calls Python per element, 4x slower for a batch of keys."""


_BYTEA_OID = 17
_BYTEA_ARRAY_OID = 1001
_ARRAY_HEAD = struct.Struct(">iiiii")  # dimensions, has nulls, element type, length, lower bound


def bytea_array(items: Sequence[bytes]) -> bytes:
    """Return ``items`` (no None) in PostgreSQL's binary array format, as ``bytea[]``."""
    if not items:
        return struct.pack(">iii", 0, 0, _BYTEA_OID)
    out = [_ARRAY_HEAD.pack(1, 0, _BYTEA_OID, len(items), 1)]
    for item in items:
        out += (len(item).to_bytes(4, "big"), item)
    return b"".join(out)


class _ByteArrayDumper(Dumper):
    format = Format.BINARY
    oid = _BYTEA_ARRAY_OID

    def dump(self, obj: Any) -> bytes:
        return bytea_array(obj)


psycopg.adapters.register_dumper(ByteArray, _ByteArrayDumper)


def check_key(key: bytes) -> None:
    """Refuse a key no engine can store (empty, or over MAX_KEY_BYTES)."""
    if not 0 < len(key) <= MAX_KEY_BYTES:
        raise InvalidInput(
            f"a store key must be 1 to {MAX_KEY_BYTES} bytes, not {len(key)}; this is a bug in "
            "the caller, please report it"
        )


class PgTables(Tables):
    """The tables as one open transaction on one connection sees them."""

    def __init__(
        self, conn: psycopg.Connection[Any], *, readonly: bool, translate: Callable[..., StoreError]
    ) -> None:
        self.readonly = readonly
        self._conn = conn
        self._cur = conn.cursor(binary=True)
        self._translate = translate
        self.failure: psycopg.Error | None = None
        self.open = True
        self.pending = Pending(self._send)
        # What gets returned in this write (None: absent); no other writer runs until it ends.
        self._seen: dict[str, dict[bytes, bytes | None]] = {}

    def _run(self, sql: str, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        if not self.open:
            raise StoreError(
                "a store transaction was used after it ended (a scan kept past its read or "
                "write?); this is a bug in the caller, please report it"
            )
        try:
            return self._cur.execute(sql, params)
        except psycopg.Error as exc:
            self.failure = self.failure or exc
            raise self._translate(exc) from None

    def _writable(self) -> None:
        if self.readonly:
            raise StoreReadOnly(
                "a write was attempted inside a read transaction; run it in Engine.write"
            )

    def get(self, table: str, key: bytes) -> bytes | None:
        known = self._known(table, key)
        if known is not MISSING:
            return known
        row = self._run(_GET, (table, key)).fetchone()
        value = None if row is None else row[0]
        self._remember(table, {key: value})
        return value

    def get_many(self, table: str, keys: Sequence[bytes]) -> list[bytes | None]:
        found: dict[bytes, bytes | None] = {}
        wanted = []
        for key in dict.fromkeys(keys):
            known = self._known(table, key)
            if known is MISSING:
                wanted.append(key)
            else:
                found[key] = known
        for start in range(0, len(wanted), GET_KEYS):
            part = wanted[start : start + GET_KEYS]
            fetched: dict[bytes, bytes | None] = dict.fromkeys(part)
            fetched.update(self._run(_GET_MANY, (table, ByteArray(part))).fetchall())
            self._remember(table, fetched)
            found.update(fetched)
        return [found.get(key) for key in keys]

    def prefetch(self, table: str, keys: Sequence[bytes]) -> None:
        if not self.readonly:  # only a write remembers what it read
            self.get_many(table, keys)

    def _known(self, table: str, key: bytes) -> Any:
        """Return the value this write knows for ``key`` without asking, or MISSING."""
        pending = self.pending.lookup(table, key)
        if pending is not MISSING or self.readonly:
            return pending
        return self._seen.get(table, {}).get(key, MISSING)

    def _remember(self, table: str, values: dict[bytes, bytes | None]) -> None:
        if self.readonly:
            return  # a read's snapshot may be shared by a long batch: keep no copy of it
        seen = self._seen.setdefault(table, {})
        if len(seen) + len(values) > SEEN_ROWS:
            seen.clear()
        seen.update(values)

    def first_many(self, table: str, prefixes: Sequence[bytes]) -> list[bytes | None]:
        self.pending.flush(table)
        out: list[bytes | None] = []
        for start in range(0, len(prefixes), GET_KEYS):
            part = list(prefixes[start : start + GET_KEYS])
            rows = self._run(_FIRST_MANY, (table, ByteArray(part))).fetchall()
            out.extend(
                key if key is not None and key.startswith(prefix) else None
                for prefix, (key,) in zip(part, rows, strict=True)
            )
        return out

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._writable()
        check_key(key)
        self.pending.put(table, key, value)

    def put_many(self, table: str, items: Sequence[tuple[bytes, bytes]]) -> None:
        self._writable()
        for key, value in items:
            check_key(key)
            self.pending.put(table, key, value)

    def delete(self, table: str, key: bytes) -> bool:
        self._writable()
        known = self._known(table, key)
        if known is MISSING:  # this write neither wrote nor read the key: the database says
            return self._run(_DELETE, (table, key)).rowcount > 0
        if known is not None:  # waits with the other pending rows: no round trip of its own
            self.pending.put(table, key, None)
        return known is not None

    def flush(self) -> None:
        """Send every pending write (before the commit)."""
        self.pending.flush()

    def send_pending(self) -> None:
        self.pending.flush()

    def _send(self, batches: list[Batch]) -> None:
        """Write each table's puts (by one COPY for all the tables with many, else in INSERTs
        of at most PUT_ROWS rows / PUT_BYTES), then its deletes."""
        big = [batch for batch in batches if len(batch.keys) >= COPY_ROWS]
        if big:
            self._copy(big)  # before _remember_sent: it tells new keys by what was read
        for batch in batches:
            if len(batch.keys) >= COPY_ROWS:
                self._send_rows(batch.table, [], [], batch.deletes)
            else:
                self._send_rows(batch.table, batch.keys, batch.values, batch.deletes)
        for batch in batches:
            self._remember_sent(batch)

    def _send_rows(
        self, table: str, put_keys: list[bytes], put_values: list[bytes], deletes: list[bytes]
    ) -> None:
        keys: list[bytes] = []
        values: list[bytes] = []
        size = 0
        for key, value in zip(put_keys, put_values, strict=True):
            keys.append(key)
            values.append(value)
            size += len(key) + len(value)
            if len(keys) >= PUT_ROWS or size >= PUT_BYTES:
                self._run(_PUT_MANY, (table, ByteArray(keys), ByteArray(values)))
                keys, values, size = [], [], 0
        if keys:
            self._run(_PUT_MANY, (table, ByteArray(keys), ByteArray(values)))
        for start in range(0, len(deletes), GET_KEYS):
            self._run(_DELETE_MANY, (table, ByteArray(deletes[start : start + GET_KEYS])))

    def _remember_sent(self, batch: Batch) -> None:
        """Keep what this write remembers of its reads true once its pending rows are sent:
        a key it read and then wrote must read back the written value, not the one it read."""
        seen = self._seen.get(batch.table)
        if not seen:
            return
        for key, value in zip(batch.keys, batch.values, strict=True):
            if key in seen:
                seen[key] = value
        for key in batch.deletes:
            if key in seen:
                seen[key] = None

    def _scan(self, table: str, span: Span) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._pages(table, span, values=True):
            yield key, value if value is not None else self._big(table, key)

    def _keys(self, table: str, span: Span) -> Iterator[bytes]:
        for row in self._pages(table, span, values=False):
            yield row[0]

    def _big(self, table: str, key: bytes) -> bytes:
        value = self.get(table, key)
        if value is None:  # deleted by this transaction between the page and its row
            raise StoreError(
                f"the value of a key of table {table} was deleted while a scan of this same "
                "transaction was reading it; delete after the scan"
            )
        return value

    def _copy(self, batches: list[Batch]) -> None:
        """Write the puts of ``batches`` by COPY: no statement per row or per table, and no
        per-value call into the driver.

        Rows whose key the table does not hold yet (one probe of the keys per table) are
        copied straight into it: this write holds the writers' lock, so no other transaction
        can add them meanwhile. The others are upserted from the temporary load table."""
        new, held = [], []
        for batch in batches:
            fresh, known = batch.split(self._held_keys(batch.table, batch.keys))
            new.append(fresh)
            held.append(known)
        if any(batch.keys for batch in new):  # else every key is held: no empty COPY
            self._copy_rows(_COPY_KV, new)
        if any(batch.keys for batch in held):
            self._run(_CREATE_LOAD, ())
            self._copy_rows(_COPY_LOAD, held)
            self._run(_UPSERT_LOAD, ())
            self._run(_EMPTY_LOAD, ())

    def _held_keys(self, table: str, keys: list[bytes]) -> set[bytes]:
        """Return which of ``keys`` the table holds (sent rows only: the caller flushes).

        A key this write has read is known without asking (``_remember_sent`` keeps what it
        read true of what it sent since, and no other writer runs meanwhile)."""
        seen = self._seen.get(table, {})
        held = {key for key in keys if seen.get(key, MISSING) not in (MISSING, None)}
        unknown = [key for key in keys if key not in seen]
        if unknown:
            held.update(row[0] for row in self._run(_HELD, (table, ByteArray(unknown))).fetchall())
        return held

    def _copy_rows(self, statement: str, batches: list[Batch]) -> None:
        try:
            with self._cur.copy(statement) as copy:
                copy.write(copy_rows(batches))
        except psycopg.Error as exc:
            self.failure = self.failure or exc
            raise self._translate(exc) from None

    def _pages(self, table: str, span: Span, *, values: bool) -> Iterator[tuple[Any, ...]]:
        self.pending.flush(table)
        low, high, reverse, remaining = span
        page, last = FIRST_PAGE, None
        while True:
            size = page if remaining is None else min(page, remaining)
            rows = self._run(*self._page(table, low, high, last, size, reverse, values)).fetchall()
            yield from rows
            if len(rows) < size:
                return
            if remaining is not None:
                remaining -= len(rows)
                if remaining <= 0:
                    return
            last, page = rows[-1][0], min(page * 2, MAX_PAGE)

    @staticmethod
    def _page(
        table: str,
        low: bytes,
        high: bytes | None,
        last: bytes | None,
        size: int,
        reverse: bool,
        values: bool,
    ) -> tuple[str, list[Any]]:
        """Return the statement and parameters of the page after ``last`` (None: the first)."""
        if reverse:  # pages walk down: the upper bound moves to the last key seen
            lower, strict, upper = low, False, last if last is not None else high
        else:  # pages walk up: the lower bound moves past the last key seen
            lower, strict = (low, False) if last is None else (last, True)
            upper = high
        params: list[Any] = [table, lower] + ([] if upper is None else [upper]) + [size]
        return _PAGES[(values, reverse, strict, upper is not None)], params

    def count(self, table: str) -> int:
        self.pending.flush(table)
        (count,) = self._run(_COUNT, (table,)).fetchall()[0]
        return int(count)

    def clear(self, table: str) -> None:
        self._writable()
        self.pending.drop(table)
        self._seen.pop(table, None)
        self._run(_CLEAR, (table,))

    def table_names(self) -> list[str]:
        self.pending.flush()
        return sorted(str(name) for (name,) in self._run(_NAMES, ()).fetchall())


def copy_rows(batches: Sequence[Batch]) -> bytes:
    """Return the puts of ``batches`` as (t, k, v) rows in PostgreSQL's binary COPY format."""
    out = [_COPY_HEADER]
    for batch in batches:
        name = batch.table.encode()
        head = _FIELDS.pack(3, len(name)) + name
        for key, value in zip(batch.keys, batch.values, strict=True):
            out += (head, len(key).to_bytes(4, "big"), key, len(value).to_bytes(4, "big"), value)
    out.append(_COPY_TRAILER)
    return b"".join(out)
