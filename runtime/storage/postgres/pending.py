"""The puts and deletes of one PostgreSQL write transaction, held back and sent many rows at a time.

A write that stores thousands of small rows (a batch of blocks and their index rows) would
otherwise cost one round trip per row. ``Pending`` keeps them per table and hands every
table's rows to its sender at once (``tables.PgTables._send``: one COPY for the tables with many
rows, a multi-row ``INSERT ... ON CONFLICT DO UPDATE`` for the others, one ``DELETE ... = ANY``
per table).

Invariants (kept by ``tables.PgTables``, which owns one per write transaction):
- A get sees the pending value of its key (None for a pending delete) before the database's.
- Every statement that reads more than named keys (a scan, a count, the table names) first
  flushes the pending rows of the tables it reads, so it sees the transaction's own writes;
  so does the commit. Nothing pending is ever lost or reordered against a read of it.
- Per key only the last write counts; a key is in at most one of a flush's two statements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

#: Flush a table once this many rows or bytes wait (bounds the memory a big write holds).
MAX_ROWS = 20_000
MAX_BYTES = 32 * 1024 * 1024
_MISSING = object()


@dataclass(frozen=True)
class Batch:
    """One table's pending rows, in key order: the puts (keys, and their values at the same
    positions), then the deletes. Two flat lists, not a list of pairs: a big write's flush
    would otherwise make one tuple per row, which the garbage collector then walks."""

    table: str
    keys: list[bytes]
    values: list[bytes]
    deletes: list[bytes]

    def split(self, held: set[bytes]) -> tuple[Batch, Batch]:
        """Return the puts whose key is not in ``held``, and those whose key is (no deletes)."""
        if not held:
            return Batch(self.table, self.keys, self.values, []), Batch(self.table, [], [], [])
        out: tuple[Batch, Batch] = (Batch(self.table, [], [], []), Batch(self.table, [], [], []))
        for key, value in zip(self.keys, self.values, strict=True):
            side = out[key in held]
            side.keys.append(key)
            side.values.append(value)
        return out


class Pending:
    """Writes not yet sent, per table: key -> value (None: delete)."""

    def __init__(self, send: Callable[[list[Batch]], None]) -> None:
        self._send = send
        self._tables: dict[str, dict[bytes, bytes | None]] = {}
        self._bytes = 0

    def put(self, table: str, key: bytes, value: bytes | None) -> None:
        rows = self._tables.setdefault(table, {})
        rows[key] = value
        self._bytes += len(key) + (0 if value is None else len(value))
        if len(rows) >= MAX_ROWS or self._bytes >= MAX_BYTES:
            self.flush()

    def lookup(self, table: str, key: bytes) -> Any:
        """Return the pending value of ``key`` (None: deleted), or ``MISSING`` if none is."""
        rows = self._tables.get(table)
        return _MISSING if rows is None else rows.get(key, _MISSING)

    def overlay(self, table: str, keys: Sequence[bytes]) -> Iterator[tuple[bytes, Any]]:
        """Yield (key, pending value or ``MISSING``) for each of ``keys``."""
        rows = self._tables.get(table, {})
        for key in keys:
            yield key, rows.get(key, _MISSING)

    def drop(self, table: str) -> None:
        """Forget the table's pending rows (the table is being cleared)."""
        self._tables.pop(table, None)

    def flush(self, table: str | None = None) -> None:
        """Send the pending rows of ``table`` (None: of every table), in key order."""
        names = sorted(self._tables) if table is None else [table]
        batches: list[Batch] = []
        for name in names:
            rows = self._tables.pop(name, None)
            if not rows:
                continue
            ordered = sorted(rows)  # one lock order for every writer: no deadlocks
            keys, values, deletes = [], [], []
            for key in ordered:
                value = rows[key]
                if value is None:
                    deletes.append(key)
                else:
                    keys.append(key)
                    values.append(value)
            batches.append(Batch(name, keys, values, deletes))
        if batches:  # every table at once: the sender may write them all in one statement
            self._send(batches)
        if table is None or not self._tables:
            self._bytes = 0


MISSING = _MISSING
