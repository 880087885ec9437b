"""The block store's entry rows, on any engine: a session's ordered list, and its reverse index.

    entries     session 0x00 seq(8 BE) -> packed entry record (``codec.encode_entry``)
    members     id(32) session 0x00 seq(8 BE) -> b""

Invariants: an entry row and its member row are written and removed together, in the caller's
write; an entry names a stored block; keys sort a session's entries by seq.
"""

from __future__ import annotations

from typing import Any

from runtime.blocks import Block, Entry, EntryRef, Provenance
from runtime.errors import BlockNotFound
from runtime.storage.codec import (
    BLOCKS,
    ENTRIES,
    MEMBERS,
    decode_block,
    decode_entry_ref,
    encode_entry,
    entry_key,
    member_key,
    session_prefix,
    split_entry_key,
    split_member_key,
)
from runtime.storage.kv import Tables


def append_entry(
    t: Tables, session: str, info: dict[str, Any], block: Block, priority: float,
    prov: Provenance, created: int,
) -> Entry:  # fmt: skip
    """Append ``block`` to ``session`` at its next seq (advancing ``info``, the session record)."""
    seq = info["n"]
    info["n"] = seq + 1
    record = encode_entry(block.id, block.kind, priority, created, block.size, prov)
    t.put(ENTRIES, entry_key(session, seq), record)
    t.put(MEMBERS, member_key(block.id, session, seq), b"")
    return Entry(session, seq, block, priority, created, prov)


def load_entry(t: Tables, session: str, seq: int) -> Entry:
    """Return one entry with its block; raise BlockNotFound if the session has no such seq."""
    raw = t.get(ENTRIES, entry_key(session, seq))
    if raw is None:
        raise BlockNotFound(f"session {session!r} has no entry #{seq}")
    ref = decode_entry_ref(session, seq, raw)
    return with_block(ref, t.get(BLOCKS, bytes.fromhex(ref.id)))


def remove_entry(t: Tables, session: str, seq: int) -> Entry:
    """Remove one entry and its member row; return what it was."""
    entry = load_entry(t, session, seq)
    t.delete(ENTRIES, entry_key(session, seq))
    t.delete(MEMBERS, member_key(entry.id, session, seq))
    return entry


def session_seqs(t: Tables, session: str) -> list[int]:
    """Return every seq the session holds, in order."""
    return [split_entry_key(k)[1] for k in t.keys(ENTRIES, session_prefix(session))]


def entry_refs(
    t: Tables, session: str, start: int, limit: int | None, reverse: bool
) -> list[EntryRef]:
    """Return entries from seq ``start`` (newest first: those before ``start``, or all)."""
    bound = entry_key(session, start) if start else None
    lo, hi = (None, bound) if reverse else (bound, None)
    found = t.scan(ENTRIES, session_prefix(session), lo=lo, hi=hi, reverse=reverse, limit=limit)
    return [decode_entry_ref(session, split_entry_key(key)[1], raw) for key, raw in found]


def load_entries(t: Tables, refs: list[EntryRef]) -> list[Entry]:
    """Return the entries of ``refs`` with their blocks (one batched read of the blocks)."""
    raws = t.get_many(BLOCKS, [bytes.fromhex(ref.id) for ref in refs])
    return [with_block(ref, raw) for ref, raw in zip(refs, raws, strict=True)]


def memberships(t: Tables, block_id: str) -> list[tuple[str, int]]:
    """Return every (session, seq) that holds the block with this full id, sorted."""
    return [split_member_key(k) for k in t.keys(MEMBERS, bytes.fromhex(block_id))]


def with_block(ref: EntryRef, raw: bytes | None) -> Entry:
    block = decode_block(ref.id, raw)
    return Entry(ref.session, ref.seq, block, ref.priority, ref.created_at, ref.provenance)
