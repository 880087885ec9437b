"""What the web shows of demand paging: one turn's accounting, and a session's totals.

Owns: ``TurnPaging`` (tokens by category, full history against packed, saved by eviction,
evictions with their reasons, faults and refaults, read from a trace record's ``paging`` slot),
``ProxyPaging`` (what ``llm386 proxy --page`` did to a captured call) and
``SessionPaging`` (cumulative tokens against the full-history baseline, peaks and estimated
cost with and without prompt caching, over a session's records).

Invariants:
- Read-only over stored JSON: a record without a paging slot (imports, paging off) has no
  ``TurnPaging``; a session with none has no ``SessionPaging``.
- Replays are left out of the session totals: they re-send a turn, they are not a new one.
- Counts are the accounting's own: block bodies under the profile's tokenizer, estimates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.errors import InvalidInput
from runtime.paging.accounting import (
    CategoryTokens,
    SessionAccounting,
    TokenCategory,
    TurnAccounting,
)
from runtime.providers.pricing import Price, estimate_cost, find_price, get_price
from runtime.tracing.aggregates import PagingTotals
from runtime.tracing.records import TraceOrigin, TraceRecord

DEFAULT_PRICE = "claude-sonnet-4-6"  # for models without a list price in pricing.PRICES


@dataclass(frozen=True)
class FaultRow:
    kind: str
    block_id: str
    tool_name: str
    refault: bool


@dataclass(frozen=True)
class EvictionRow:
    """One block the request carried as a placeholder or stub: which, why and what it cost."""

    block_id: str
    kind: str
    reason: str
    tool_name: str
    tokens: int
    placeholder: str


@dataclass(frozen=True)
class RecallRow:
    """One recall call the proxy answered itself: the block asked for and whether it was found."""

    round: int
    block_id: str
    found: bool


@dataclass(frozen=True)
class ProxyPaging:
    """What ``llm386 proxy --page`` did to a call: its preset, the client's original bytes and
    the recall calls it answered, or why it forwarded the call unpaged."""

    preset: str
    client_sha256: str = ""
    client_bytes: int = 0
    recalls: tuple[RecallRow, ...] = ()
    rounds: int = 1
    note: str = ""
    skipped: str = ""


@dataclass(frozen=True)
class TurnPaging:
    """One turn's demand paging, as the turn page shows it."""

    accounting: TurnAccounting
    faults: tuple[FaultRow, ...]  # the faults this request serves (found in the last answer)
    pinned: int
    recall: bool
    evictions: tuple[EvictionRow, ...] = ()

    @property
    def rows(self) -> tuple[CategoryTokens, ...]:
        """The turn's tokens by category, one table row each (full, packed, saved)."""
        return self.accounting.categories

    @property
    def saved_share(self) -> float:
        full = self.accounting.full_tokens
        return self.accounting.saved_tokens / full if full else 0.0


def turn_paging(paging: Mapping[str, Any]) -> TurnPaging | None:
    """Return a record's paging slot as a view, or None when the turn was not demand-paged."""
    data = paging.get("accounting")
    if not isinstance(data, Mapping):
        return None
    try:
        accounting = TurnAccounting.from_json(data)
    except InvalidInput:
        return None  # a damaged slot is shown raw by the page, never guessed at
    faults = tuple(
        FaultRow(str(f.get("kind", "")), str(f.get("block_id", ""))[:12],
                 str(f.get("tool_name", "")), bool(f.get("refault")))
        for f in paging.get("faults", ()) if isinstance(f, Mapping)
    )  # fmt: skip
    plan = paging.get("plan")
    recall = bool(plan.get("recall")) if isinstance(plan, Mapping) else False
    evictions = _evictions(plan.get("evictions", ()) if isinstance(plan, Mapping) else ())
    return TurnPaging(accounting, faults, len(paging.get("pinned", ())), recall, evictions)


def _evictions(raw: Any) -> tuple[EvictionRow, ...]:
    rows = []
    for e in raw if isinstance(raw, list) else ():
        if isinstance(e, Mapping):
            rows.append(EvictionRow(str(e.get("block_id", "")), str(e.get("kind", "")),
                                    str(e.get("reason", "")), str(e.get("tool_name", "")),
                                    _int(e.get("tokens")), str(e.get("placeholder", ""))))  # fmt: skip
    return tuple(rows)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def proxy_paging(paging: Mapping[str, Any]) -> ProxyPaging | None:
    """Return what the proxy's ``--page`` recorded for a call, or None (not proxied with it)."""
    data = paging.get("proxy")
    if not isinstance(data, Mapping):
        return None
    client = data.get("client_request")
    client = client if isinstance(client, Mapping) else {}
    recalls = tuple(
        RecallRow(_int(r.get("round")), str(r.get("block_id", "")), bool(r.get("found")))
        for r in data.get("recalls", ()) if isinstance(r, Mapping)
    )  # fmt: skip
    return ProxyPaging(str(data.get("preset", "")), str(client.get("sha256", "")),
                       _int(client.get("bytes")), recalls, _int(data.get("rounds")) or 1,
                       str(data.get("note", "")), str(data.get("skipped", "")))  # fmt: skip


@dataclass(frozen=True)
class SessionPaging:
    """A session's demand paging: cumulative against full history, and cost."""

    accounting: SessionAccounting
    price_is_default: bool  # the session's model has no list price; DEFAULT_PRICE is used

    @property
    def rows(self) -> tuple[CategoryTokens, ...]:
        """The session's cumulative tokens by category, one table row each."""
        return self.accounting.categories

    @property
    def saved(self) -> int:
        return self.accounting.full_tokens - self.accounting.packed_tokens


def session_paging(
    session: str, records: Sequence[TraceRecord], model: str = ""
) -> SessionPaging | None:
    """Return the session's paging totals over its demand-paged records (turn order)."""
    turns = []
    for record in sorted(records, key=lambda r: (r.turn, r.started_at, r.call_id)):
        view = turn_paging(record.paging) if record.origin is not TraceOrigin.REPLAY else None
        if view is not None:
            turns.append(view.accounting)
    if not turns:
        return None
    price, default = _price(model)
    accounting = SessionAccounting.of(session, turns, price)
    return SessionPaging(accounting, default)


def paging_from_totals(
    session: str, totals: PagingTotals | None, model: str = ""
) -> SessionPaging | None:
    """Return the session's paging totals from its maintained aggregates (no record is read)."""
    if totals is None or not totals.turns:
        return None
    price, default = _price(model)
    sums = {name: (full, packed) for name, full, packed in totals.categories}
    categories = tuple(CategoryTokens(c, *sums.get(c.value, (0, 0))) for c in TokenCategory)
    full = sum(f for f, _ in sums.values())
    packed = sum(p for _, p in sums.values())
    accounting = SessionAccounting(
        session, totals.turns, categories, totals.peak_full, totals.peak_packed,
        totals.evictions, totals.faults, totals.refaults,
        estimate_cost([(full, totals.cached_full)], price),
        estimate_cost([(packed, totals.cached_packed)], price), price,
    )  # fmt: skip
    return SessionPaging(accounting, default)


def _price(model: str) -> tuple[Price, bool]:
    price = find_price(model)
    return (price, False) if price is not None else (get_price(DEFAULT_PRICE), True)
