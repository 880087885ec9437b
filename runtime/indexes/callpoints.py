"""The dashboard's call points: one small row per sent model call, in time order.

Owns: the layout below (tables of the store's engine), kept in step with the trace store by
``sync`` (``runtime.indexes.recordindex``), and reading the points of a time window
(``points_between``), which the dashboard (``runtime.inspect.dashboard``) sums into buckets.

Layout (``cid`` is the 25-byte ASCII call id)::

    dash_points  started_at(8 BE) cid -> canonical JSON {"s": session, "m": model,
                 "f": failed 0|1, "i": uncached input, "o": output, "r": cache reads,
                 "w": cache writes, "l": latency ms | null}
    dash_calls   cid -> b""                     every record indexed so far
    dash_meta    b"generation" -> JSON TraceGeneration the index was last brought up to

Invariants:
- A point holds only what a record says, so points kept by ``sync`` equal points rebuilt by
  ``llm386 reindex`` (which drops these tables with the other derived ones).
- Tokens count the way the session aggregates do (``runtime.tracing.aggregates``): answered
  calls only, their reported usage, else their local estimate as uncached input. A failed call
  is a point with no tokens; a re-page was never sent and has no point at all.
- Reading a window is a range scan of the time key: no trace record is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.blocks import canonical_json
from runtime.indexes.recordindex import RecordIndex
from runtime.storage.codec import json_load
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Tables
from runtime.tracing.records import CALL_ID_LEN, Delivery, TraceRecord, TraceStore, delivery

_POINTS, _CALLS, _META = "dash_points", "dash_calls", "dash_meta"


@dataclass(frozen=True)
class CallPoint:
    """One sent call as the dashboard counts it."""

    started_at: int  # ms since the epoch
    call_id: str
    session: str
    model: str
    failed: bool
    input_tokens: int  # uncached input only: cache reads and writes are apart
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    latency_ms: float | None


def _rows(rec: TraceRecord) -> dict[bytes, bytes]:
    kind = delivery(rec)
    if kind is Delivery.NOT_SENT:
        return {}
    usage = rec.usage if kind is Delivery.ANSWERED else None
    if usage is not None:
        tokens = (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens,
                  usage.cache_creation_input_tokens)  # fmt: skip
    elif kind is Delivery.ANSWERED:
        tokens = (rec.estimated_input_tokens or 0, rec.estimated_output_tokens or 0, 0, 0)
    else:
        tokens = (0, 0, 0, 0)
    value = {"s": rec.session, "m": rec.model, "f": int(kind is Delivery.FAILED),
             "i": tokens[0], "o": tokens[1], "r": tokens[2], "w": tokens[3], "l": rec.latency_ms}  # fmt: skip
    return {rec.started_at.to_bytes(8, "big") + rec.call_id.encode(): canonical_json(value)}


_INDEX = RecordIndex(_POINTS, _CALLS, _META, _rows)
TABLES = _INDEX.tables


def sync(store: BlockStore, traces: TraceStore) -> None:
    """Bring the points up to date with the trace store (a no-op when they already are)."""
    _INDEX.sync(store, traces)


def _decode(key: bytes, raw: bytes) -> CallPoint:
    d = json_load(raw)
    latency = d["l"]
    return CallPoint(int.from_bytes(key[:8], "big"), key[-CALL_ID_LEN:].decode(), d["s"], d["m"],
                     bool(d["f"]), d["i"], d["o"], d["r"], d["w"],
                     None if latency is None else float(latency))  # fmt: skip


def points_between(
    store: BlockStore, traces: TraceStore, start_ms: int | None, end_ms: int | None
) -> list[CallPoint]:
    """Return the points of calls started in [start_ms, end_ms) (None: unbounded), oldest first."""
    sync(store, traces)
    low = max(start_ms or 0, 0).to_bytes(8, "big")
    high = None if end_ms is None else max(end_ms, 0).to_bytes(8, "big")

    def load(t: Tables) -> list[CallPoint]:
        return [_decode(key, raw) for key, raw in t.scan(_POINTS, lo=low, hi=high)]

    return store.kv.read(load)
