"""Byte layouts of the block store's tables, keys and records, kept apart so verify can share them.

Keys sort in the order listings need: a session's entries by seq (8-byte big-endian), a block's
edges by kind then other end. Records are canonical JSON, so equal state is equal bytes.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from runtime.blocks import Block, BlockKind, EdgeKind, EntryRef, Provenance, canonical_json
from runtime.errors import StoreCorrupted

EDGE_BYTE: dict[EdgeKind, int] = {
    EdgeKind.PARENT: 1,
    EdgeKind.DERIVED_FROM: 2,
    EdgeKind.SUPPORTS: 3,
    EdgeKind.CONTRADICTS: 4,
    EdgeKind.TOOL_INVOCATION: 5,
}
BYTE_EDGE: dict[int, EdgeKind] = {v: k for k, v in EDGE_BYTE.items()}
# Entry records are read by the hundred thousand when a long session is paged, so their fixed
# part is packed (id, kind, priority, created_at, size); provenance follows as JSON only when set.
_ENTRY = struct.Struct(">32sBdqI")
KINDS: tuple[BlockKind, ...] = tuple(BlockKind)
KIND_BYTE: dict[BlockKind, int] = {k: i for i, k in enumerate(KINDS)}
_NO_PROVENANCE = Provenance()


def json_load(raw: bytes) -> Any:
    """Decode a stored record, naming corruption as such."""
    try:
        # Records are always UTF-8: decoding first skips json's encoding detection.
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreCorrupted(
            f"a stored record is not valid JSON ({exc}); run `llm386 verify`"
        ) from None


def session_prefix(session: str) -> bytes:
    return session.encode() + b"\x00"


def entry_key(session: str, seq: int) -> bytes:
    return session_prefix(session) + seq.to_bytes(8, "big")


def split_entry_key(key: bytes) -> tuple[str, int]:
    return key[:-9].decode(), int.from_bytes(key[-8:], "big")


def member_key(block_id: str, session: str, seq: int) -> bytes:
    return bytes.fromhex(block_id) + entry_key(session, seq)


def split_member_key(key: bytes) -> tuple[str, int]:
    return split_entry_key(key[32:])


def edge_key(here: str, kind_byte: int, there: str) -> bytes:
    return bytes.fromhex(here) + bytes([kind_byte]) + bytes.fromhex(there)


def token_key(tokenizer: str, block_id: str) -> bytes:
    return tokenizer.encode() + b"\x00" + bytes.fromhex(block_id)


def decode_block(block_id: str, raw: bytes | None) -> Block:
    if raw is None:
        raise StoreCorrupted(f"block {block_id[:12]} is indexed but missing; run `llm386 repair`")
    rec = json_load(raw)
    prov = Provenance.from_json(rec.get("v") or {})
    return Block(BlockKind(rec["k"]), rec["b"], block_id, rec["p"], rec["c"], prov)


def encode_entry(
    block_id: str, kind: BlockKind, priority: float, created: int, size: int, prov: Provenance
) -> bytes:
    head = _ENTRY.pack(bytes.fromhex(block_id), KIND_BYTE[kind], priority, created, size)
    return head if prov == _NO_PROVENANCE else head + canonical_json(prov.to_json())


def entry_block_id(raw: bytes) -> str:
    """Return the block id an entry record points at, without decoding the rest."""
    return raw[:32].hex()


def decode_entry_ref(session: str, seq: int, raw: bytes) -> EntryRef:
    if len(raw) < _ENTRY.size:
        raise StoreCorrupted(f"entry {session}#{seq} is truncated; run `llm386 repair`")
    bid, kind, priority, created, size = _ENTRY.unpack_from(raw)
    prov = (
        Provenance.from_json(json_load(raw[_ENTRY.size :]))
        if len(raw) > _ENTRY.size
        else _NO_PROVENANCE
    )
    return EntryRef(session, seq, bid.hex(), KINDS[kind], priority, created, prov, size)


# The block store's tables. The names are those of the LMDB named databases of schema 1; every
# backend uses the same names, so a store keeps its layout whichever engine holds it.
META, BLOCKS, ENTRIES, MEMBERS = "meta", "blocks", "entries", "members"
SESSIONS, EDGES_OUT, EDGES_IN, TOKENS = "sessions", "edges_out", "edges_in", "tokens"
BLOCK_TABLES = (META, BLOCKS, ENTRIES, MEMBERS, SESSIONS, EDGES_OUT, EDGES_IN, TOKENS)


def member_prefix(block_id: str, session: str | None = None) -> bytes:
    """Return the prefix of a block's ``members`` keys (of one session, when given)."""
    raw = bytes.fromhex(block_id)
    return raw if session is None else raw + session_prefix(session)


def edge_prefix(here: str, kind_byte: int | None = None) -> bytes:
    """Return the prefix of one end's ``edges_out`` / ``edges_in`` keys (of one kind, if given)."""
    raw = bytes.fromhex(here)
    return raw if kind_byte is None else raw + bytes([kind_byte])


def split_edge_key(key: bytes) -> tuple[str, EdgeKind, str]:
    """Return (this end, kind, other end) of an ``edges_out`` or ``edges_in`` key."""
    return key[:32].hex(), BYTE_EDGE[key[32]], key[33:].hex()
