"""The session graph as selection sees it: items, their costs, tool partners and edges.

Owns: making selection ``Item``s for seqs of a snapshot (kind, section, cost, partner), the
per-session cost arrays, and the edge walks selection asks for (``dependencies`` and
``summaries``), all restricted to the snapshot (``seq < upto``).

Invariants:
- A block's place is a seq of this session as of ``upto``; an edge whose other end is not in
  the snapshot is not followed (blocks of other sessions enter only through retrievers).
- When a block sits at several seqs, an edge resolves to the one nearest before the block that
  follows it (a parent precedes its child), else the first after it.
- Tool partners come from the index's pair column (same call id); a tool block without one
  falls back to ``tool-invocation`` edges, which bind both ways. No partner means unpaired,
  except for a tool block that is not CONVENTIONS.md JSON: the packer sends it as plain text,
  which the API accepts alone, so it needs no partner.
- Edge lists are read sorted and cut to ``dependency_fanout`` per edge kind, so the walk is
  bounded and deterministic. Edges are read only for rows the index flags as having them,
  straight from the store's edge and membership tables (``runtime.storage.codec`` layouts).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np

from runtime.blocks import BlockKind, EdgeKind
from runtime.indexes.sessionindex import (
    ABSENT,
    FLAG_DEPENDS,
    FLAG_PLAIN_TOOL,
    FLAG_SUMMARISED,
    FLAG_TOOL_EDGE,
    KIND_CODES,
)
from runtime.indexes.snapshot import Snapshot
from runtime.packer.rendering import CostCache, RenderMode
from runtime.pager.sections import DEFAULT_SECTION as SECTION
from runtime.pager.sections import section_of
from runtime.pager.selection import TIER_SCORED, Item
from runtime.storage.codec import (
    EDGE_BYTE,
    edge_prefix,
    member_prefix,
    split_edge_key,
    split_member_key,
)
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Engine, EngineCache
from runtime.tokenizers import Tokenizer

TOOL_KINDS = (BlockKind.TOOL_CALL, BlockKind.TOOL_RESULT)
_cost_caches = EngineCache(CostCache)


def cost_cache(kv: Engine) -> CostCache:
    """Return the process-wide cost cache of a store's engine."""
    return _cost_caches.get(kv)


class SessionGraph:
    """Items and edges of one snapshot, for one page (implements ``selection.Expander``)."""

    def __init__(self, store: BlockStore, snapshot: Snapshot, tokenizer: Tokenizer, options: Any):
        self.store = store
        self.snapshot = snapshot
        self.tokenizer = tokenizer
        self.mode = options.render
        self.fanout = options.dependency_fanout
        self.known: dict[int, Item] = {}
        self.made: dict[int, Item] = {}
        self._flags = snapshot.records["flags"]  # read once per candidate: keep the column

    # -- costs --------------------------------------------------------------------------
    def cost_rows(self, seqs: np.ndarray) -> np.ndarray:
        """Return (string, chat) costs of each seq, computing and caching what is missing."""
        table = self._cost_table()
        missing = seqs[table[seqs, 0] < 0]
        if missing.shape[0]:
            records = self.snapshot.records[missing]
            hexed = records["id"].tobytes().hex()
            ids = [hexed[n : n + 64] for n in range(0, len(hexed), 64)]
            kinds = [KIND_CODES[code] for code in records["kind"].tolist()]
            found = cost_cache(self.snapshot.reader.kv).costs(
                self.tokenizer, ids, kinds, self._bodies
            )
            table[missing] = [(c.string, c.chat) for c in found]
        return table[seqs]

    def costs(self, seqs: np.ndarray) -> list[int]:
        """Return each seq's cost under the page's render mode."""
        return self.cost_array(seqs).tolist()

    def cost_array(self, seqs: np.ndarray) -> np.ndarray:
        """Return each seq's cost under the page's render mode, as an int64 array."""
        rows = self.cost_rows(seqs)
        if self.mode is RenderMode.STRING:
            return rows[:, 0]
        if self.mode is RenderMode.CHAT:
            return rows[:, 1]
        return rows.max(axis=1)

    def _cost_table(self) -> np.ndarray:
        key = f"costs:{self.tokenizer.version}"
        cache, size = self.snapshot.cache, self.snapshot.cache.records.shape[0]
        with self.snapshot.reader.lock:
            table = cache.extras.get(key)
            if table is None or table.shape[0] < size:
                grown = np.full((size, 2), -1, dtype=np.int64)
                if table is not None:
                    grown[: table.shape[0]] = table
                table = cache.extras[key] = grown
            return table

    def _bodies(self, ids: Sequence[str]) -> list[str]:
        return [block.body for block in self.store.get_many(list(ids))]

    # -- items --------------------------------------------------------------------------
    def make(self, seq: int, cost: int, score: float, tier: int, recency_led: bool) -> Item:
        """Return the item of a seq in the pool and remember it."""
        kind = self.snapshot.kind(seq)
        item = Item(
            seq, self.snapshot.block_id(seq), seq, kind, section_of(kind), cost,
            float(self.snapshot.records["prio"][seq]), score, tier, recency_led,
            self.partner(seq, kind), False,
        )  # fmt: skip
        self.known[seq] = item
        return item

    def make_many(
        self,
        seqs: np.ndarray,
        costs: Sequence[int],
        scores: Sequence[float],
        recency_led: Sequence[bool],
        tiers: Sequence[int],
    ) -> list[Item]:
        """Return the items of many pool seqs at once (the page's hot path)."""
        rows = self.snapshot.records[seqs]
        hexed = rows["id"].tobytes().hex()
        kinds = [KIND_CODES[k] for k in rows["kind"].tolist()]
        order = seqs.tolist()
        columns = zip(
            order, [hexed[n : n + 64] for n in range(0, 64 * len(order), 64)], order, kinds,
            [SECTION[k] for k in kinds], costs, rows["prio"].tolist(), scores, tiers,
            recency_led, self._partners(seqs, rows, kinds), repeat(False),
        )  # fmt: skip
        items = list(map(Item._make, columns))
        self.known.update(zip(order, items, strict=True))
        return items

    def _partners(self, seqs: np.ndarray, rows: np.ndarray, kinds: Sequence[BlockKind]) -> list:
        pair = rows["pair"].astype(np.int64) - 1
        ok = (pair >= 0) & (pair < self.snapshot.upto)
        ok[ok] = self.snapshot.records["kind"][pair[ok]] != ABSENT
        out: list[int | None] = []
        for seq, kind, partner, valid in zip(
            seqs.tolist(), kinds, pair.tolist(), ok.tolist(), strict=False
        ):
            if kind not in TOOL_KINDS:
                out.append(None)
            elif valid:
                out.append(partner)
            else:
                out.append(self._partner_by_edges(seq, kind) if partner < 0 else -1)
                if out[-1] == -1 and self._flagged(seq, FLAG_PLAIN_TOOL):
                    out[-1] = None
        return out

    def make_outside(self, key: int, block_id: str, score: float, tier: int) -> Item:
        """Return the item of a block from outside the session (never a tool pair)."""
        block = self.store.get(block_id)
        found = cost_cache(self.snapshot.reader.kv).costs(
            self.tokenizer, [block.id], [block.kind], lambda _ids: [block.body]
        )[0]
        partner = -1 if block.kind in TOOL_KINDS else None
        cost = self.mode.pick(found.string, found.chat)
        item = Item(
            key, block.id, None, block.kind, section_of(block.kind), cost, block.priority,
            score, tier, False, partner, True,
        )  # fmt: skip
        self.known[key] = item
        return item

    def item(self, key: int) -> Item:
        """Return the item for ``key`` (a seq), making one with no score if it is new."""
        found = self.known.get(key) or self.made.get(key)
        if found is not None:
            return found
        cost = self.costs(np.array([key], dtype=np.int64))[0]
        item = self.make(key, cost, 0.0, TIER_SCORED, False)
        del self.known[key]
        self.made[key] = item
        return item

    def in_session(self, block_id: str) -> bool:
        return bool(self._seqs(self.store.resolve(block_id)))

    # -- tool partners ------------------------------------------------------------------
    def partner(self, seq: int, kind: BlockKind) -> int | None:
        """Return the partner seq of a tool block, -1 if it has none; None for other kinds."""
        if kind not in TOOL_KINDS:
            return None
        pair = int(self.snapshot.records["pair"][seq]) - 1
        if pair >= 0:
            return pair if self.snapshot.has(pair) else -1
        found = self._partner_by_edges(seq, kind)
        return None if found == -1 and self._flagged(seq, FLAG_PLAIN_TOOL) else found

    def _partner_by_edges(self, seq: int, kind: BlockKind) -> int:
        if not self._flagged(seq, FLAG_TOOL_EDGE):
            return -1
        table = "edges_out" if kind is BlockKind.TOOL_CALL else "edges_in"
        others = self._ends(self.snapshot.block_id(seq), table, EdgeKind.TOOL_INVOCATION)
        for other in others:
            found = self._nearest(other, seq, after=kind is BlockKind.TOOL_CALL)
            if found is not None:
                return found
        return -1

    # -- edges (selection.Expander) -----------------------------------------------------
    def dependencies(self, item: Item) -> list[Item]:
        """Return the in-session parent and supports targets of ``item``."""
        if item.seq is None or not self._flagged(item.seq, FLAG_DEPENDS):
            return []
        out: list[Item] = []
        for kind in (EdgeKind.PARENT, EdgeKind.SUPPORTS):
            for dst in self._ends(item.block_id, "edges_out", kind)[: self.fanout]:
                seq = self._nearest(dst, item.seq, after=False)
                if seq is not None and seq != item.seq:
                    out.append(self.item(seq))
        return out

    def summarised(self, item: Item) -> bool:
        """Return whether some block was derived from ``item`` (it may have a summary)."""
        return item.seq is not None and self._flagged(item.seq, FLAG_SUMMARISED)

    def summaries(self, item: Item) -> list[Item]:
        """Return in-session blocks derived from ``item``, newest first."""
        if item.seq is None or not self._flagged(item.seq, FLAG_SUMMARISED):
            return []
        seqs = []
        for src in self._ends(item.block_id, "edges_in", EdgeKind.DERIVED_FROM)[: self.fanout]:
            found = self._seqs(src)
            if found:
                seqs.append(found[-1])
        return [self.item(seq) for seq in sorted(set(seqs), reverse=True)]

    def _flagged(self, seq: int, flag: int) -> bool:
        return bool(int(self._flags[seq]) & flag)

    def _ends(self, block_id: str, table: str, kind: EdgeKind) -> list[str]:
        """Return the other ends of ``block_id``'s edges of ``kind`` in ``table``, sorted."""
        start = edge_prefix(block_id, EDGE_BYTE[kind])
        return [split_edge_key(key)[2] for key in self._keys(table, start)]

    def _keys(self, table: str, start: bytes) -> list[bytes]:
        return self.snapshot.reader.kv.read(lambda t: list(t.keys(table, start)))

    def _seqs(self, block_id: str) -> list[int]:
        """Return the seqs of ``block_id`` in this snapshot (the store's members table)."""
        start = member_prefix(block_id, self.snapshot.session)
        seqs = [split_member_key(key)[1] for key in self._keys("members", start)]
        return [seq for seq in seqs if self.snapshot.has(seq)]

    def _nearest(self, block_id: str, seq: int, *, after: bool) -> int | None:
        seqs = self._seqs(block_id)
        if not seqs:
            return None
        before = [s for s in seqs if s < seq]
        later = [s for s in seqs if s > seq]
        if after:
            return later[0] if later else (before[-1] if before else None)
        return before[-1] if before else (later[0] if later else None)
