"""Request bytes in the LMDB trace store as shared content-defined chunks.

Layout (named databases; ``c`` a chunk's SHA-256, ``n`` a node's digest, both 32 raw bytes):

    trace_requests  h -> b"\\x02" + n n n ...   a request: its nodes in order (format 2)
                    h -> codec byte + bytes      a whole request (format 1, still read)
    trace_nodes     n -> c c c ...               a run of chunks (about 64)
    trace_chunks    c -> codec byte + bytes      one chunk (about 10 KiB), zlib when smaller
    trace_refs      n or c -> count (8 BE)       rows naming a node; nodes naming a chunk
    traces          cid -> b"\x02" + n n n ...  a large record (an imported turn's plan lists
                                                 every earlier block, so consecutive records
                                                 share most of their bytes); small ones whole

Invariants: a chunk or node exists exactly while its count is positive, and counts change in
the caller's write transaction together with the request rows that name them, so deleting the
last request that uses a chunk deletes the chunk in the same transaction. Counts are derived:
``rebuild_refs`` recomputes them from the request rows (repair). Reading a request joins its
chunks and checks the SHA-256 of the result against the prompt hash: a mismatch is
``StoreCorrupted``, never wrong bytes returned.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.errors import StoreCorrupted
from runtime.storage.chunking import (
    DIGEST_SIZE,
    RequestParts,
    group_digests,
    node_digest,
    split_digests,
)
from runtime.storage.lmdb.env import DbHandle, Env, Txn
from runtime.tracing.records import prompt_hash

_RAW, _ZLIB, CHUNKED = b"\x00", b"\x01", b"\x02"


def pack_bytes(data: bytes) -> bytes:
    """Return the stored form of ``data``: compressed when that is smaller."""
    packed = zlib.compress(data, 1)  # level 1: nearly the ratio of 6 on JSON, twice as fast
    return _ZLIB + packed if len(packed) < len(data) else _RAW + data


def unpack_bytes(stored: bytes) -> bytes:
    """Return the bytes ``pack_bytes`` stored; raise StoreCorrupted if they are damaged."""
    tag, body = stored[:1], stored[1:]
    if tag == _RAW:
        return body
    if tag == _ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error:
            raise StoreCorrupted(
                "stored trace bytes do not decompress; run `llm386 verify`"
            ) from None
    raise StoreCorrupted(f"stored trace bytes have unknown codec {tag!r}; run `llm386 verify`")


@dataclass(frozen=True)
class ChunkTables:
    """The database handles of the chunk store."""

    chunks: DbHandle
    nodes: DbHandle
    refs: DbHandle

    @classmethod
    def open(cls, env: Env) -> ChunkTables:
        return cls(env.db(b"trace_chunks"), env.db(b"trace_nodes"), env.db(b"trace_refs"))


def _count(txn: Txn, t: ChunkTables, key: bytes) -> int:
    raw = txn.get(key, db=t.refs)
    return 0 if raw is None else int.from_bytes(raw, "big")


def _add_ref(txn: Txn, t: ChunkTables, key: bytes, delta: int) -> int:
    count = _count(txn, t, key) + delta
    if count > 0:
        txn.put(key, count.to_bytes(8, "big"), db=t.refs)
    else:
        txn.delete(key, db=t.refs)
    return count


def _put_node(txn: Txn, t: ChunkTables, children: bytes, data: dict[bytes, bytes]) -> bytes:
    """Store a node (and its new chunks) unless present; count one more use; return its digest."""
    digest = node_digest(children)
    if txn.get(digest, db=t.nodes) is None:
        txn.put(digest, children, db=t.nodes)
        for child in split_digests(children):
            if _add_ref(txn, t, child, +1) == 1:
                txn.put(child, pack_bytes(data[child]), db=t.chunks)
    _add_ref(txn, t, digest, +1)
    return digest


def put_request(txn: Txn, t: ChunkTables, requests: DbHandle, parts: RequestParts) -> None:
    """Store a request as nodes of chunks under its prompt hash, replacing any row there."""
    put_chunked(txn, t, requests, bytes.fromhex(parts.prompt_hash), parts)


def put_chunked(txn: Txn, t: ChunkTables, db: DbHandle, key: bytes, parts: RequestParts) -> None:
    """Store ``parts`` as a row of node digests under ``key`` in ``db``, replacing any row."""
    old = txn.get(key, db=db)
    data = {c.digest: c.data for c in parts.chunks}
    groups = group_digests([c.digest for c in parts.chunks])
    nodes = [_put_node(txn, t, children, data) for children in groups]
    txn.put(key, CHUNKED + b"".join(nodes), db=db)
    if old is not None:
        release_row(txn, t, old)  # after the puts: chunks both rows share stay alive


def release_row(txn: Txn, t: ChunkTables, stored: bytes) -> None:
    """Count one use fewer of every node a row names, deleting what nobody uses."""
    if stored[:1] != CHUNKED:
        return  # a whole request (format 1) or record names no chunks
    for node in split_digests(stored[1:]):
        if _add_ref(txn, t, node, -1) > 0:
            continue
        children = txn.get(node, db=t.nodes)
        txn.delete(node, db=t.nodes)
        for child in split_digests(children or b""):
            if _add_ref(txn, t, child, -1) <= 0:
                txn.delete(child, db=t.chunks)


def load_request(txn: Txn, t: ChunkTables | None, stored: bytes, expected: str) -> bytes:
    """Return a request row's bytes; raise StoreCorrupted unless they hash to ``expected``."""
    data = load_chunked(txn, t, stored) if stored[:1] == CHUNKED else unpack_bytes(stored)
    if prompt_hash(data) != expected:
        raise StoreCorrupted(
            f"the stored request {expected[:12]} no longer hashes to its prompt hash; "
            "run `llm386 verify`"
        )
    return data


def load_chunked(txn: Txn, t: ChunkTables | None, stored: bytes) -> bytes:
    """Return the bytes of a row of node digests (raise StoreCorrupted if a piece is missing)."""
    if t is None:
        raise StoreCorrupted("a row names chunks but the store has no chunk tables")
    nodes = split_digests(stored[1:])
    return b"".join(_chunk(txn, t, c) for n in nodes for c in _node(txn, t, n))


def _node(txn: Txn, t: ChunkTables, node: bytes) -> list[bytes]:
    children = txn.get(node, db=t.nodes)
    if children is None or len(children) % DIGEST_SIZE:
        raise StoreCorrupted(f"request node {node.hex()[:12]} is missing; run `llm386 verify`")
    return list(split_digests(children))


def _chunk(txn: Txn, t: ChunkTables, digest: bytes) -> bytes:
    stored = txn.get(digest, db=t.chunks)
    if stored is None:
        raise StoreCorrupted(f"request chunk {digest.hex()[:12]} is missing; run `llm386 verify`")
    return unpack_bytes(stored)


# -- verify and repair --------------------------------------------------------------------------


def expected_refs(txn: Txn, t: ChunkTables, rows: Sequence[DbHandle]) -> Counter[bytes]:
    """Return the count every node and chunk should have, from the rows that exist."""
    refs: Counter[bytes] = Counter()
    for db in rows:
        with txn.cursor(db=db) as cur:
            for stored in cur.iternext(keys=False, values=True):
                if stored[:1] == CHUNKED:
                    refs.update(split_digests(stored[1:]))
    for node in sorted(k for k in refs if txn.get(k, db=t.nodes) is not None):
        refs.update(split_digests(txn.get(node, db=t.nodes)))
    return refs


def chunk_problems(txn: Txn, t: ChunkTables, rows: Sequence[DbHandle]) -> list[tuple[str, str]]:
    """Return (kind, detail) of every count that differs from the rows' and every orphan."""
    want = expected_refs(txn, t, rows)
    problems: list[tuple[str, str]] = []
    for name, db in (("node", t.nodes), ("chunk", t.chunks)):
        with txn.cursor(db=db) as cur:
            for key in cur.iternext(keys=True, values=False):
                if not want[key]:
                    problems.append(
                        (f"{name}-orphan", f"{name} {key.hex()[:12]} is used by nothing")
                    )
    with txn.cursor(db=t.refs) as cur:
        have = {k: int.from_bytes(v, "big") for k, v in cur}
    for key in sorted(set(have) | {k for k, v in want.items() if v}):
        if have.get(key, 0) != want[key]:
            problems.append(
                ("chunk-count", f"{key.hex()[:12]}: counted {have.get(key, 0)}, used {want[key]}")
            )
    return problems


def rebuild_refs(txn: Txn, t: ChunkTables, rows: Sequence[DbHandle]) -> None:
    """Recompute every count from the rows and delete nodes and chunks nobody uses."""
    want = expected_refs(txn, t, rows)
    for db in (t.nodes, t.chunks):
        with txn.cursor(db=db) as cur:
            unused = [k for k in cur.iternext(keys=True, values=False) if not want[k]]
        for key in unused:
            txn.delete(key, db=db)
    txn.drop(t.refs, delete=False)
    for key in sorted(k for k, v in want.items() if v):
        txn.put(key, want[key].to_bytes(8, "big"), db=t.refs)
