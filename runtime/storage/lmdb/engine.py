"""The LMDB engine: the key-value seam (``runtime.storage.kv``) over one LMDB environment.

Each table is a named LMDB database of the environment, opened on first use. Transactions come
from ``runtime.storage.lmdb.env``, which owns the per-process environment cache, map growth,
nesting and the translation of LMDB's errors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

from runtime.storage.kv import Engine, Span, Tables
from runtime.storage.lmdb import env as lmdbenv

T = TypeVar("T")


class LmdbTables(Tables):
    """One LMDB transaction seen as tables."""

    def __init__(self, opened: lmdbenv.Env, txn: Any, *, readonly: bool) -> None:
        self._env = opened
        self.txn = txn
        self.readonly = readonly
        self._handles: dict[str, Any] = {}  # a handle valid in this transaction stays valid

    def _db(self, table: str) -> Any:
        """Return the table's handle; None in a read whose snapshot has no such table (empty)."""
        handle = self._handles.get(table)
        if handle is None:
            handle = self._env.table(table.encode())
            if handle is not None:  # None (no such table yet) is asked again: a write makes it
                self._handles[table] = handle
        return handle

    def get(self, table: str, key: bytes) -> bytes | None:
        db = self._db(table)
        return None if db is None else cast("bytes | None", self.txn.get(key, db=db))

    def get_many(self, table: str, keys: Sequence[bytes]) -> list[bytes | None]:
        db, get = self._db(table), self.txn.get
        if db is None:
            return [None] * len(keys)
        return [get(key, db=db) for key in keys]

    def first_many(self, table: str, prefixes: Sequence[bytes]) -> list[bytes | None]:
        """Return ``first`` of each prefix, seeking one cursor (a scan's generator each cost
        more than the seek: the session index asks this of every block it adds)."""
        db = self._db(table)
        if db is None:
            return [None] * len(prefixes)
        out: list[bytes | None] = []
        with self.txn.cursor(db=db) as cur:
            for prefix in prefixes:
                key = cast(bytes, cur.key()) if cur.set_range(prefix) else None
                out.append(key if key is not None and key.startswith(prefix) else None)
        return out

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self._db(table))

    def put_many(self, table: str, items: Sequence[tuple[bytes, bytes]]) -> None:
        db, put = self._db(table), self.txn.put
        for key, value in items:
            put(key, value, db=db)

    def delete(self, table: str, key: bytes) -> bool:
        return bool(self.txn.delete(key, db=self._db(table)))

    def _scan(self, table: str, span: Span) -> Iterator[tuple[bytes, bytes]]:
        low, high, reverse, limit = span
        yielded, db = 0, self._db(table)
        if db is None:
            return
        with self.txn.cursor(db=db) as cur:
            if reverse:
                ok = cur.prev() if high is not None and cur.set_range(high) else cur.last()
            else:
                ok = cur.set_range(low)
            last: bytes | None = None
            while ok:
                key = cast(bytes, cur.key())
                if last is not None and (key >= last if reverse else key <= last):
                    # The caller wrote to this table between two rows (LMDB moves a cursor
                    # whose row was deleted): find the row after the last one yielded again.
                    ok = _seek_past(cur, last, reverse)
                    continue
                if key < low or (high is not None and key >= high):
                    return
                yield key, cast(bytes, cur.value())
                yielded += 1
                if limit is not None and yielded >= limit:
                    return
                last = key
                ok = cur.prev() if reverse else cur.next()

    def count(self, table: str) -> int:
        db = self._db(table)
        return 0 if db is None else int(self.txn.stat(db)["entries"])

    def clear(self, table: str) -> None:
        db = self._db(table)
        if db is not None:
            self.txn.drop(db, delete=False)

    def table_names(self) -> list[str]:
        with self.txn.cursor() as cur:  # LMDB's main database lists the named databases
            return sorted(cast(bytes, key).decode() for key, _ in cur)


class LmdbEngine(Engine):
    """The tables of one LMDB environment on local disk."""

    scheme = "lmdb"

    def __init__(
        self, path: str | os.PathLike[str], *, readonly: bool = False, create: bool = True
    ) -> None:
        self.env = lmdbenv.open_env(path, readonly=readonly, create=create)
        self.location = self.env.path
        self.readonly = self.env.readonly

    def read(self, fn: Callable[[Tables], T]) -> T:
        write = self.env.current_write()
        if write is not None:
            return fn(LmdbTables(self.env, write, readonly=False))
        return lmdbenv.read(self.env, lambda txn: fn(LmdbTables(self.env, txn, readonly=True)))

    def write(self, fn: Callable[[Tables], T]) -> T:
        return lmdbenv.write(self.env, lambda txn: fn(LmdbTables(self.env, txn, readonly=False)))

    def writing(self) -> bool:
        return self.env.current_write() is not None

    def shares_writes_with(self, other: object) -> bool:
        # Every engine of one path shares the process's one environment, and so its writes.
        return isinstance(other, LmdbEngine) and other.env is self.env

    def close(self) -> None:
        # The environment is shared by every handle of this path in the process (py-lmdb
        # forbids opening it twice): closing it closes it for all of them.
        lmdbenv.close_env(self.location)


def _seek_past(cur: Any, last: bytes, reverse: bool) -> bool:
    """Put ``cur`` on the first key after ``last`` in the scan's direction; False if none."""
    if not cur.set_range(last):  # no key >= last
        return False if not reverse else cur.last()
    if reverse:
        return cur.prev()  # the first key < last
    return cur.next() if cur.key() == last else True
