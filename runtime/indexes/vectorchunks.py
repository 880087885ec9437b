"""Session vector chunks: a large session's block vectors in a few large values, for a cold start.

Owns the derived table ``ix_svec``. The per-block vector cache (``ix_vec``) takes one read per
block, so the first page after opening a store of 100,000 blocks spent most of its time there
(issue 16). Here a session's seqs are cut into chunks of ``CHUNK``; each full chunk whose
vectors are all known is written once as one value, and a cold session table loads them in one
read per chunk. The seqs past the last full chunk still come from ``ix_vec``.

Layout: key = ``session_cache_prefix(session)`` [16] + blake2b(embedder key) [8] + rgen + first
seq (u64 big-endian each);
value = ``_MAGIC`` + blake2b of the chunk's block ids [16] + ``CHUNK`` rows of ``dimensions``
float32 (little-endian), a zero row for an absent seq.

Invariants:
- An entry never goes stale in place: a full chunk's seqs keep their blocks while ``rgen`` stands
  (appends add seqs past it; any removal or rebuild bumps ``rgen``), and the value carries a digest
  of the block ids it was made for, checked on every load. An entry that fails a check is ignored
  (its vectors come from ``ix_vec``) and written again; a write drops the session's entries of
  older ``rgen``s.
- No vector outlives its block: any removal from a session deletes all of the session's entries
  in the same transaction (``sessionindex.on_remove``); the next exact scan writes them again.
- Derived: ``llm386 reindex`` drops the table; nothing is lost without it, only time.
- The vectors are those of ``ix_vec`` bit for bit (copied, never recomputed differently), so a
  plan does not depend on which table its vectors came from.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from typing import TYPE_CHECKING

import numpy as np

from runtime.indexes.sessionindex import ABSENT, SESSION_CACHE_DBS, session_cache_prefix
from runtime.storage.kv import Tables

if TYPE_CHECKING:
    from runtime.indexes.embeddings import Embedder, VectorTable
    from runtime.indexes.snapshot import Snapshot

log = logging.getLogger("llm386.vectors")

SESSION_VECTORS_TABLE = SESSION_CACHE_DBS[0]
CHUNK = 4_096  # seqs a value: 4 MB at 256 dimensions
_MAGIC = b"llm386-svec/1\n"
_KEY = struct.Struct(">QQ")  # rgen, first seq


WANTED_SHARE = 16  # a chunk is read whole for 1/16 of its seqs or more: fewer, one by one


def full_chunks(seqs: np.ndarray, upto: int, least: int = 1) -> list[int]:
    """Return the first seq of each full chunk below ``upto`` that holds at least ``least`` of
    ``seqs`` (distinct)."""
    starts, counts = np.unique(seqs // CHUNK, return_counts=True)
    return [int(s) * CHUNK for s, n in zip(starts, counts, strict=True)
            if n >= least and (int(s) + 1) * CHUNK <= upto]  # fmt: skip


Part = tuple[np.ndarray, np.ndarray]  # seqs, and their vectors one row each


def load(snap: Snapshot, embedder: Embedder, seqs: np.ndarray) -> tuple[list[Part], np.ndarray]:
    """Read every stored full chunk that holds ``CHUNK // WANTED_SHARE`` of ``seqs`` (distinct,
    missing from the session's vector table); return their present seqs with their vectors,
    and the seqs of ``seqs`` that no chunk read gave."""
    starts = full_chunks(seqs, snap.upto, max(1, CHUNK // WANTED_SHARE))
    if not starts or not _readable(snap):
        return [], seqs
    prefix = _prefix(snap.session, embedder)
    keys = [prefix + _KEY.pack(snap.meta.rgen, start) for start in starts]
    raws = snap.reader.kv.read(lambda t: t.get_many(SESSION_VECTORS_TABLE, keys))
    dim, kinds = embedder.dimensions, snap.records["kind"]
    parts: list[Part] = []
    for start, raw in zip(starts, raws, strict=True):
        rows = _decode(raw, _ids_digest(snap, start), dim)
        if rows is None:
            if raw is not None:
                log.warning(
                    "the stored vectors of session %r (seqs %d-%d) do not match its blocks; "
                    "reading them block by block and storing them again",
                    snap.session, start, start + CHUNK - 1,
                )  # fmt: skip
            continue
        present = kinds[start : start + CHUNK] != ABSENT
        if present.all():
            parts.append((np.arange(start, start + CHUNK, dtype=np.int64), rows))
        else:
            parts.append((np.flatnonzero(present).astype(np.int64) + start, rows[present]))
    if not parts:
        return [], seqs
    read = np.asarray([int(p[0][0]) // CHUNK for p in parts if p[0].shape[0]], dtype=np.int64)
    return parts, seqs[~np.isin(seqs // CHUNK, read)]


def save(snap: Snapshot, embedder: Embedder, table: VectorTable, seqs: np.ndarray) -> None:
    """Write each full chunk that holds one of ``seqs`` and whose present seqs all have vectors
    in ``table`` (the caller has just added ``seqs``' vectors: chunks they completed)."""
    kv = snap.reader.kv
    if kv.readonly:
        return
    dim, kinds = embedder.dimensions, snap.records["kind"]
    items = []
    for start in full_chunks(seqs, snap.upto):
        present = np.flatnonzero(kinds[start : start + CHUNK] != ABSENT)
        if table.missing(present.astype(np.int64) + start).shape[0]:
            continue
        rows = np.zeros((CHUNK, dim), dtype="<f4")
        rows[present] = table.rows(present.astype(np.int64) + start)
        value = _MAGIC + _ids_digest(snap, start) + rows.tobytes()
        items.append((_prefix(snap.session, embedder) + _KEY.pack(snap.meta.rgen, start), value))
    if items:
        prefix, rgen = _prefix(snap.session, embedder), snap.meta.rgen
        kv.write(lambda t: _write(t, prefix, rgen, items))


def _write(t: Tables, prefix: bytes, rgen: int, items: list[tuple[bytes, bytes]]) -> None:
    t.put_many(SESSION_VECTORS_TABLE, items)
    current = prefix + struct.pack(">Q", rgen)
    stale = [k for k in t.keys(SESSION_VECTORS_TABLE, prefix=prefix) if not k.startswith(current)]
    for key in stale:
        t.delete(SESSION_VECTORS_TABLE, key)


def _decode(raw: bytes | None, digest: bytes, dim: int) -> np.ndarray | None:
    head = len(_MAGIC) + len(digest)
    if raw is None or len(raw) != head + CHUNK * dim * 4 or not raw.startswith(_MAGIC):
        return None
    if raw[len(_MAGIC) : head] != digest:
        return None
    return np.frombuffer(raw, dtype="<f4", offset=head).reshape(CHUNK, dim)


def _ids_digest(snap: Snapshot, start: int) -> bytes:
    ids = np.ascontiguousarray(snap.records["id"][start : start + CHUNK])
    return hashlib.blake2b(ids.tobytes(), digest_size=16).digest()


def _prefix(session: str, embedder: Embedder) -> bytes:
    space = hashlib.blake2b(embedder.key.encode(), digest_size=8).digest()
    return session_cache_prefix(session) + space


def _readable(snap: Snapshot) -> bool:
    # A read-only store written before this table existed does not have it.
    kv = snap.reader.kv
    return not kv.readonly or kv.read(lambda t: SESSION_VECTORS_TABLE in t.table_names())
