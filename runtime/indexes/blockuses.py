"""Which turns packed or left out a block, and why: an index from block id to trace records.

Owns: the layout below (tables of the store's engine), keeping it in step
with the trace store (``sync``), and reading a block's uses a page at a time (``block_uses``).

Layout (``bid`` is the block id's 32 raw bytes, ``cid`` the 25-byte ASCII call id)::

    uses_by_block  bid cid -> canonical JSON {"s": session, "t": turn, "o": origin,
                              "u": [[selected 0|1, section, reason, score|null], ...]}
    uses_calls     cid     -> b""           every record indexed so far
    uses_meta      b"generation" -> JSON TraceGeneration the index was last brought up to

Invariants:
- Kept in step with the trace store by ``sync`` (``runtime.indexes.recordindex``): only records
  added since are indexed; any delete or repair drops and rebuilds it, session by session.
- A plan that lists a block twice (a repeated message) keeps both occurrences, in plan order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.blocks import canonical_json
from runtime.indexes.recordindex import RecordIndex
from runtime.inspect.turn import plan_entries
from runtime.storage.codec import json_load
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Engine, Tables
from runtime.tracing.records import CALL_ID_LEN, TraceOrigin, TraceRecord, TraceStore

_USES, _CALLS, _META = "uses_by_block", "uses_calls", "uses_meta"


@dataclass(frozen=True)
class BlockUse:
    """One appearance of a block in one record's plan."""

    call_id: str
    session: str
    turn: int
    origin: TraceOrigin
    selected: bool
    section: str
    reason: str
    score: float | None


@dataclass(frozen=True)
class UsesPage:
    uses: tuple[BlockUse, ...]
    records: int  # records that packed or omitted the block (all pages)
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.records else None

    @property
    def prev_offset(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset else None

    @property
    def range_text(self) -> str:
        end = min(self.offset + self.limit, self.records)
        return f"records {self.offset + 1}–{end} of {self.records}" if end > self.offset else ""


def _rows(rec: TraceRecord) -> dict[bytes, bytes]:
    """Return the index rows of one record: one per distinct block, occurrences in plan order."""
    uses: dict[str, list[list[Any]]] = {}
    for selected in (True, False):
        for e in plan_entries(rec.plan, selected=selected):
            if len(e.block_id) == 64:
                uses.setdefault(e.block_id, []).append(
                    [int(selected), e.section, e.reason, e.score]
                )
    head = {"s": rec.session, "t": rec.turn, "o": rec.origin.value}
    return {bytes.fromhex(bid) + rec.call_id.encode(): canonical_json(head | {"u": u})
            for bid, u in uses.items()}  # fmt: skip


_INDEX = RecordIndex(_USES, _CALLS, _META, _rows)
TABLES = _INDEX.tables


def drop(kv: Engine) -> None:
    """Forget everything indexed (``sync`` then rebuilds it from the trace store)."""
    _INDEX.drop(kv)


def sync(store: BlockStore, traces: TraceStore) -> None:
    """Bring the index up to date with the trace store (a no-op when it already is)."""
    _INDEX.sync(store, traces)


def block_uses(store: BlockStore, traces: TraceStore, block_id: str, *, offset: int = 0,
               limit: int = 50) -> UsesPage:  # fmt: skip
    """Return the records (oldest first) that packed or omitted ``block_id``, one page of them."""
    sync(store, traces)
    prefix = bytes.fromhex(block_id)

    def load(t: Tables) -> tuple[int, list[tuple[bytes, bytes | None]]]:
        count, window = 0, []
        for key in t.keys(_USES, prefix):
            if offset <= count < offset + limit:
                window.append(key)
            count += 1
        return count, list(zip(window, t.get_many(_USES, window), strict=True))

    count, rows = store.kv.read(load)
    uses = [use for key, raw in rows if raw is not None for use in _decode(key, raw)]
    return UsesPage(tuple(uses), count, offset, limit)


def _decode(key: bytes, raw: bytes) -> list[BlockUse]:
    data = json_load(raw)
    cid = key[-CALL_ID_LEN:].decode()
    return [BlockUse(cid, data["s"], data["t"], TraceOrigin(data["o"]), bool(sel), section,
                     reason, score) for sel, section, reason, score in data["u"]]  # fmt: skip
