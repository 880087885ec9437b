"""Copy a whole store between engines (LMDB ⇄ PostgreSQL), verified by hash at the end.

The copy works below the block and trace stores, on the key-value seam: every table, every key,
every value, byte for byte, so what arrives is the same store (blocks, edges, sessions, traces
with their exact request and response bytes, derived indexes, paging state) whatever the engines.

Invariants:
- The destination must be empty: a copy never merges into, or overwrites, a store.
- Tables are copied in name order and keys in key order, in batches of bounded size, each batch
  one write transaction; the ``meta`` table (which holds the marker that makes a folder or
  database a store) is written last, so a copy that stops half-way leaves no valid store behind
  (opening it says it is not an llm386 store; copy again into a fresh one).
- The source is read in one snapshot, so writers may keep running: the copy is the store as it
  was when the copy began. Both sides are digested table by table (SHA-256 over length-prefixed
  keys and values in key order: the source while copying, the destination afterwards from a
  fresh read); any difference raises ``StoreCorrupted``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from runtime.errors import StoreCorrupted, StoreError
from runtime.progress import Progress
from runtime.storage.kv import Engine, Tables

BATCH_BYTES = 8 * 1024 * 1024
BATCH_KEYS = 2_000
LAST_TABLE = "meta"


@dataclass(frozen=True)
class TableDigest:
    """How many keys a table holds and the SHA-256 of its contents in key order."""

    name: str
    keys: int
    sha256: str


@dataclass(frozen=True)
class CopyReport:
    """What a copy moved and the digests both sides agreed on."""

    source: str
    destination: str
    tables: tuple[TableDigest, ...]

    @property
    def keys(self) -> int:
        return sum(table.keys for table in self.tables)


class _Digester:
    def __init__(self, name: str) -> None:
        self.name, self.sha, self.keys = name, hashlib.sha256(), 0

    def add(self, key: bytes, value: bytes) -> None:
        self.sha.update(len(key).to_bytes(4, "big") + key + len(value).to_bytes(8, "big") + value)
        self.keys += 1

    def result(self) -> TableDigest:
        return TableDigest(self.name, self.keys, self.sha.hexdigest())


def copy_order(names: list[str]) -> list[str]:
    """Return the table names in the order a copy writes them (``meta`` last)."""
    return sorted(names, key=lambda name: (name == LAST_TABLE, name))


def digest_table(t: Tables, name: str) -> TableDigest:
    """Return the key count and content digest of one table."""
    seen = _Digester(name)
    for key, value in t.scan(name):
        seen.add(key, value)
    return seen.result()


def digest(engine: Engine) -> tuple[TableDigest, ...]:
    """Return the digests of every non-empty table of ``engine``, in name order."""

    def load(t: Tables) -> tuple[TableDigest, ...]:
        found = (digest_table(t, name) for name in t.table_names())
        return tuple(d for d in found if d.keys)

    return engine.read(load)


def _check_empty(dst: Engine) -> None:
    def filled(t: Tables) -> list[str]:
        return [name for name in t.table_names() if t.count(name)]

    used = dst.read(filled)
    if used:
        raise StoreError(
            f"{dst.location} already holds data (tables: {', '.join(used)}): a copy never merges"
            " into a store. Copy into a new, empty folder or database."
        )


def _copy_table(t: Tables, dst: Engine, name: str, progress: Progress) -> TableDigest:
    seen = _Digester(name)
    batch: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in t.scan(name):
        seen.add(key, value)
        batch.append((key, value))
        size += len(key) + len(value)
        if len(batch) >= BATCH_KEYS or size >= BATCH_BYTES:
            _flush(dst, name, batch, progress)
            batch, size = [], 0
    _flush(dst, name, batch, progress)
    return seen.result()


def _flush(dst: Engine, name: str, batch: list[tuple[bytes, bytes]], progress: Progress) -> None:
    if batch:
        dst.write(lambda t: t.put_many(name, batch))
        progress.advance(len(batch))


def _copy_all(t: Tables, dst: Engine, label: str) -> tuple[TableDigest, ...]:
    names = copy_order([name for name in t.table_names() if t.count(name)])
    total = sum(t.count(name) for name in names)
    with Progress(label, total, unit="keys") as progress:
        digests = [_copy_table(t, dst, name, progress) for name in names]
    return tuple(sorted(digests, key=lambda d: d.name))


def copy_store(src: Engine, dst: Engine) -> CopyReport:
    """Copy every table of ``src`` into the empty ``dst`` and check both digests agree."""
    if dst.readonly:
        raise StoreError(f"{dst.location} is read-only: copy into a store you can write.")
    _check_empty(dst)
    # One read snapshot of the source for the whole copy: what arrives is one consistent state,
    # and its digest is taken from the same snapshot, so a writer running meanwhile is harmless.
    label = f"copy {src.location} -> {dst.location}"
    before = src.read(lambda t: _copy_all(t, dst, label))
    after = digest(dst)
    if before != after:
        differ = sorted({d.name for d in set(before) ^ set(after)})
        raise StoreCorrupted(
            f"the copy in {dst.location} does not match {src.location} (tables: "
            f"{', '.join(differ)}): was the destination written during the copy? Delete it "
            "and copy again."
        )
    return CopyReport(src.location, dst.location, after)
