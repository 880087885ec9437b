"""Writing request bytes (and large records) as shared content-defined chunks, on any backend.

Layout (tables; ``c`` a chunk's SHA-256, ``n`` a node's digest, both 32 raw bytes):

    trace_requests  h -> b"\\x02" + n n n ...   a request: its nodes in order (format 2)
                    h -> codec byte + bytes      a whole request (format 1, still read)
    trace_nodes     n -> c c c ...               a run of chunks (about 64)
    trace_chunks    c -> codec byte + bytes      one chunk (about 10 KiB), zlib when smaller
    trace_refs      n or c -> count (8 BE)       rows naming a node; nodes naming a chunk
    traces          cid -> b"\x02" + n n n ...  a large record (an imported turn's plan lists
                                                 every earlier block, so consecutive records
                                                 share most of their bytes); small ones whole

Invariants: a chunk or node exists exactly while its count is positive, and counts change in
the caller's write transaction together with the rows that name them, so deleting the last
request that uses a chunk deletes the chunk in the same transaction. Counts are derived:
``rebuild_refs`` recomputes them from the rows (repair). Reading is the trace store's
(``runtime.storage.tracestore``: joining the chunks and checking the hash of the result).
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Sequence

from runtime.storage.chunking import (
    Chunk,
    RequestParts,
    group_digests,
    node_digest,
    split_digests,
)
from runtime.storage.kv import Tables

RAW, ZLIB, CHUNKED = b"\x00", b"\x01", b"\x02"
CHUNKS, NODES, REFS = "trace_chunks", "trace_nodes", "trace_refs"


def pack_bytes(data: bytes) -> bytes:
    """Return the stored form of ``data``: compressed when that is smaller."""
    packed = zlib.compress(data, 1)  # level 1: nearly the ratio of 6 on JSON, twice as fast
    return ZLIB + packed if len(packed) < len(data) else RAW + data


def _count(t: Tables, key: bytes) -> int:
    raw = t.get(REFS, key)
    return 0 if raw is None else int.from_bytes(raw, "big")


def _add_ref(t: Tables, key: bytes, delta: int) -> int:
    count = _count(t, key) + delta
    if count > 0:
        t.put(REFS, key, count.to_bytes(8, "big"))
    else:
        t.delete(REFS, key)
    return count


def _put_node(t: Tables, children: bytes, data: dict[bytes, Chunk]) -> bytes:
    """Store a node (and its new chunks) unless present; count one more use; return its digest."""
    digest = node_digest(children)
    if t.get(NODES, digest) is None:
        t.put(NODES, digest, children)
        for child in split_digests(children):
            if _add_ref(t, child, +1) == 1:
                chunk = data[child]
                t.put(CHUNKS, child, chunk.packed or pack_bytes(chunk.data))
    _add_ref(t, digest, +1)
    return digest


def put_request(t: Tables, table: str, parts: RequestParts) -> None:
    """Store a request as nodes of chunks under its prompt hash, replacing any row there."""
    put_chunked(t, table, bytes.fromhex(parts.prompt_hash), parts)


def put_chunked(t: Tables, table: str, key: bytes, parts: RequestParts) -> None:
    """Store ``parts`` as a row of node digests under ``key`` in ``table``, replacing any row."""
    old = t.get(table, key)
    data = {c.digest: c for c in parts.chunks}
    groups = group_digests([c.digest for c in parts.chunks])
    nodes = [_put_node(t, children, data) for children in groups]
    t.put(table, key, CHUNKED + b"".join(nodes))
    if old is not None:
        release_row(t, old)  # after the puts: chunks both rows share stay alive


def release_row(t: Tables, stored: bytes) -> None:
    """Count one use fewer of every node a row names, deleting what nobody uses."""
    if stored[:1] != CHUNKED:
        return  # a whole request (format 1) or record names no chunks
    for node in split_digests(stored[1:]):
        if _add_ref(t, node, -1) > 0:
            continue
        children = t.get(NODES, node)
        t.delete(NODES, node)
        for child in split_digests(children or b""):
            if _add_ref(t, child, -1) <= 0:
                t.delete(CHUNKS, child)


# -- verify and repair --------------------------------------------------------------------------


def expected_refs(t: Tables, rows: Sequence[str]) -> Counter[bytes]:
    """Return the count every node and chunk should have, from the rows that exist."""
    refs: Counter[bytes] = Counter()
    for table in rows:
        for _, stored in t.scan(table):
            if stored[:1] == CHUNKED:
                refs.update(split_digests(stored[1:]))
    for node in sorted(refs):
        children = t.get(NODES, node)
        if children is not None:
            refs.update(split_digests(children))
    return refs


def chunk_problems(t: Tables, rows: Sequence[str]) -> list[tuple[str, str]]:
    """Return (kind, detail) of every count that differs from the rows' and every orphan."""
    want = expected_refs(t, rows)
    problems: list[tuple[str, str]] = []
    for name, table in (("node", NODES), ("chunk", CHUNKS)):
        for key in t.keys(table):
            if not want[key]:
                problems.append((f"{name}-orphan", f"{name} {key.hex()[:12]} is used by nothing"))
    have = {k: int.from_bytes(v, "big") for k, v in t.scan(REFS)}
    for key in sorted(set(have) | {k for k, v in want.items() if v}):
        if have.get(key, 0) != want[key]:
            problems.append(
                ("chunk-count", f"{key.hex()[:12]}: counted {have.get(key, 0)}, used {want[key]}")
            )
    return problems


def rebuild_refs(t: Tables, rows: Sequence[str]) -> None:
    """Recompute every count from the rows and delete nodes and chunks nobody uses."""
    want = expected_refs(t, rows)
    for table in (NODES, CHUNKS):
        for key in [k for k in t.keys(table) if not want[k]]:
            t.delete(table, key)
    t.clear(REFS)
    t.put_many(REFS, [(key, want[key].to_bytes(8, "big")) for key in sorted(want) if want[key]])
