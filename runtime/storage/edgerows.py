"""The block store's typed-edge graph, on any engine: every edge kept once in each direction.

    edges_out   src(32) kind(1) dst(32) -> b""
    edges_in    dst(32) kind(1) src(32) -> b""

Invariants: both rows of an edge are written and removed together, in the caller's write; both
ends are stored blocks; an edge never joins a block to itself; re-adding an edge is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence

from runtime.blocks import Edge, EdgeKind
from runtime.errors import InvalidEdge
from runtime.storage.codec import BLOCKS, BYTE_EDGE, EDGE_BYTE, EDGES_IN, EDGES_OUT, edge_key
from runtime.storage.kv import Tables


def prefetch_edges(t: Tables, edges: Sequence[Edge]) -> None:
    """Tell the engine the rows ``add_edge`` will read for ``edges``: both ends' block rows and
    the edges' own rows (a round trip per table on PostgreSQL, not one per edge)."""
    ends = dict.fromkeys(end for e in edges for end in (e.src, e.dst) if len(end) == 64)
    t.prefetch(BLOCKS, [bytes.fromhex(end) for end in ends])
    t.prefetch(EDGES_OUT, [edge_key(e.src, EDGE_BYTE[e.kind], e.dst) for e in edges])


def add_edge(t: Tables, edge: Edge) -> bool:
    """Store both rows of ``edge``; return whether it is new."""
    if edge.src == edge.dst:
        raise InvalidEdge(f"an edge from block {edge.src[:12]} to itself is not allowed")
    for end in (edge.src, edge.dst):
        if len(end) != 64 or t.get(BLOCKS, bytes.fromhex(end)) is None:
            raise InvalidEdge(f"edge end {end[:12]} is not a stored block; put it first")
    kb = EDGE_BYTE[edge.kind]
    out_key = edge_key(edge.src, kb, edge.dst)
    new = t.get(EDGES_OUT, out_key) is None
    if new:
        t.put(EDGES_OUT, out_key, b"")
    t.put(EDGES_IN, edge_key(edge.dst, kb, edge.src), b"")
    return new


def mirror_key(key: bytes) -> bytes:
    """Return the other direction's row of an edge row: here kind there -> there kind here."""
    return key[33:] + key[32:33] + key[:32]


def drop_edges(t: Tables, raw_id: bytes) -> None:
    """Remove every edge touching the block with this raw id, in both directions."""
    for table, mirror in ((EDGES_OUT, EDGES_IN), (EDGES_IN, EDGES_OUT)):
        for key in list(t.keys(table, raw_id)):
            t.delete(table, key)
            t.delete(mirror, mirror_key(key))


def list_edges(
    t: Tables, block_id: str, kind: EdgeKind | str | None, *, outgoing: bool
) -> list[Edge]:
    """Return the edges leaving (``outgoing``) or reaching a stored block's full id, sorted."""
    prefix = bytes.fromhex(block_id)
    if kind is not None:
        prefix += bytes([EDGE_BYTE[EdgeKind.parse(kind)]])
    edges = []
    for key in t.keys(EDGES_OUT if outgoing else EDGES_IN, prefix):
        here, edge_kind, there = key[:32].hex(), BYTE_EDGE[key[32]], key[33:].hex()
        edges.append(Edge(here, edge_kind, there) if outgoing else Edge(there, edge_kind, here))
    return sorted(edges)
