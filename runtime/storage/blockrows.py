"""The block store's block rows, on any engine: content-addressed bodies and their token counts.

    blocks      id(32) -> canonical JSON {k: kind, b: body, p: priority, c: created_at, v: provenance}
    tokens      tokenizer 0x00 id(32) -> count(4 BE)

Invariants: a block is stored once per content (its key is ``content_hash(kind, body)``) and
keeps the metadata of its first put; dropping a block drops its edges and every cached count.
"""

from __future__ import annotations

from runtime.blocks import Block, BlockKind, Provenance, canonical_json, content_hash
from runtime.errors import BlockNotFound, InvalidBlock
from runtime.storage.codec import BLOCKS, TOKENS, decode_block, token_key
from runtime.storage.edgerows import drop_edges
from runtime.storage.kv import Tables


def store_block(
    t: Tables, kind: BlockKind, body: str, priority: float, prov: Provenance, created: int,
    bid: str | None = None,
) -> Block:  # fmt: skip
    """Store a block unless its content is stored already; return the stored block.

    ``bid`` is ``content_hash(kind, body)`` when the caller has it already."""
    bid = content_hash(kind, body) if bid is None else bid
    raw = t.get(BLOCKS, bytes.fromhex(bid))
    if raw is not None:
        return decode_block(bid, raw)
    record = {"k": kind.value, "b": body, "p": priority, "c": created, "v": prov.to_json()}
    t.put(BLOCKS, bytes.fromhex(bid), canonical_json(record))
    return Block(kind, body, bid, priority, created, prov)


def resolve(t: Tables, prefix: str) -> str:
    """Return the full id of the one stored block whose id is or starts with ``prefix``."""
    if len(prefix) == 64:
        if t.get(BLOCKS, bytes.fromhex(prefix)) is None:
            raise BlockNotFound(f"no block {prefix[:12]}…; check the id or list a session")
        return prefix
    found: list[str] = []
    for key in t.keys(BLOCKS, bytes.fromhex(prefix[: len(prefix) // 2 * 2])):
        if key.hex().startswith(prefix):
            found.append(key.hex())
            if len(found) > 1:
                raise InvalidBlock(f"id prefix {prefix} is ambiguous; give more characters")
    if not found:
        raise BlockNotFound(f"no block with id {prefix}; check the id or list a session")
    return found[0]


def drop_block(t: Tables, block_id: str, tokenizers: tuple[str, ...]) -> None:
    """Remove a block row with its edges and the counts of every tokenizer cached for it."""
    raw = bytes.fromhex(block_id)
    drop_edges(t, raw)
    for name in tokenizers + cached_tokenizers(t, tokenizers):
        t.delete(TOKENS, token_key(name, block_id))
    t.delete(BLOCKS, raw)


def cached_tokenizers(t: Tables, known: tuple[str, ...]) -> tuple[str, ...]:
    """Return the tokenizers besides ``known`` the tokens table holds counts of (a seek each)."""
    names: list[str] = []
    key = next(t.keys(TOKENS, limit=1), None)
    while key is not None:
        name = key.split(b"\x00", 1)[0]
        names.append(name.decode())
        key = next(t.keys(TOKENS, lo=name + b"\x01", limit=1), None)
    return tuple(n for n in names if n not in known)
