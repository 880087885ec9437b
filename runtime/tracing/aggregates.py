"""Per-session and per-turn aggregates of trace records, kept in the same write as each record.

Owns: ``SessionTraceStats`` (what the sessions list and the session page show of a session's
calls: counts, tokens, cache tokens, latency, the models called and their tokens, demand-paging
totals), ``TurnGroup`` (one turn number of a session: which record is the turn and how many
replays, re-pages and failed replays it has) and how one record changes each of them.

Invariants:
- Every figure is a sum, a count, a minimum or a maximum over the session's records, so adding
  records in any order gives the same aggregates (repair and the migration recompute them from
  the records and compare). Records are only ever removed a whole session at a time, and then
  the aggregates go with them.
- Token totals count answered calls only: a re-page was never sent and a failed call reported
  no usage, so their local estimates would count tokens nobody processed or paid for. They are
  counted apart, in ``repages`` and ``errors`` (failed attempts).
- A turn's record is its first record that is not a replay (by call id), else its first record:
  the same choice the timeline made when it read every record of the turn.
- Prices are applied when a page is shown, never stored: the per-model token sums are enough.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from runtime.errors import InvalidInput
from runtime.paging.accounting import TokenCategory, TurnAccounting
from runtime.tracing.records import (
    REPAGE_KEY,
    Delivery,
    TraceOrigin,
    TraceRecord,
    TraceStatus,
    delivery,
    json_ready,
)


def record_kind(rec: TraceRecord) -> str:
    """Return how a record came to be: live, import, replay, or repage (recorded, not sent)."""
    return REPAGE_KEY if delivery(rec) is Delivery.NOT_SENT else rec.origin.value


@dataclass(frozen=True)
class ModelTokens:
    """The answered calls to one model in a session and the tokens they reported."""

    model: str
    calls: int = 0
    input_tokens: int = 0  # every input token (plain, cache read and cache write)
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0


@dataclass(frozen=True)
class PagingTotals:
    """A session's demand-paging accounting summed over its paged turns (replays left out)."""

    turns: int = 0
    categories: tuple[tuple[str, int, int], ...] = ()  # (category, full, packed) sums
    peak_full: int = 0
    peak_packed: int = 0
    evictions: int = 0
    faults: int = 0
    refaults: int = 0
    cached_full: int = 0
    cached_packed: int = 0

    def adding(self, t: TurnAccounting) -> PagingTotals:
        sums = {name: (full, packed) for name, full, packed in self.categories}
        for c in t.categories:
            full, packed = sums.get(c.category.value, (0, 0))
            sums[c.category.value] = (full + c.full, packed + c.packed)
        order = [c.value for c in TokenCategory]
        return PagingTotals(
            self.turns + 1,
            tuple((name, *sums[name]) for name in sorted(sums, key=_category_rank(order))),
            max(self.peak_full, t.full_tokens), max(self.peak_packed, t.packed_tokens),
            self.evictions + t.evictions, self.faults + t.faults, self.refaults + t.refaults,
            self.cached_full + t.cached_full, self.cached_packed + t.cached_packed,
        )  # fmt: skip


def _category_rank(order: list[str]) -> Any:
    return lambda name: (order.index(name), name) if name in order else (len(order), name)


def paging_of(rec: TraceRecord) -> TurnAccounting | None:
    """Return the paging accounting a record carries (None: not demand-paged, or a replay)."""
    data = rec.paging.get("accounting") if isinstance(rec.paging, Mapping) else None
    if rec.origin is TraceOrigin.REPLAY or not isinstance(data, Mapping):
        return None
    try:
        return TurnAccounting.from_json(data)
    except InvalidInput:
        return None  # a damaged slot is shown raw by the turn page, never summed


@dataclass(frozen=True)
class SessionTraceStats:
    """Per-session aggregates, kept up to date in the same write as each record."""

    session: str
    calls: int = 0
    turns: int = 0  # records that are not replays
    errors: int = 0  # failed attempts
    flagged: int = 0
    input_tokens: int = 0  # answered calls only, cache reads and writes included
    output_tokens: int = 0
    first_at: int | None = None
    last_at: int | None = None
    repages: int = 0  # re-pages recorded, not sent
    turn_numbers: int = 0  # distinct turn numbers (what the timeline pages through)
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    latency_us_sum: int = 0  # whole microseconds, so sums in any order are equal
    latency_ms_max: float = 0.0
    timed_calls: int = 0  # calls with a latency
    models: tuple[ModelTokens, ...] = ()  # by model name
    paging: PagingTotals | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_us_sum / 1000 / self.timed_calls if self.timed_calls else None

    def counting(
        self, rec: TraceRecord, *, flagged: bool = False, new_turn: bool = False
    ) -> SessionTraceStats:
        """Return these aggregates with ``rec`` added (``new_turn``: its turn number is new)."""
        kind = delivery(rec)
        answered = kind is Delivery.ANSWERED
        usage = rec.usage
        tokens_in = usage.total_input_tokens if usage else rec.estimated_input_tokens or 0
        tokens_out = usage.output_tokens if usage else rec.estimated_output_tokens or 0
        cache_read = usage.cache_read_input_tokens if usage and answered else 0
        cache_write = usage.cache_creation_input_tokens if usage and answered else 0
        latency = rec.latency_ms
        turn_paging = paging_of(rec)
        return replace(
            self,
            calls=self.calls + 1,
            turns=self.turns + (rec.origin is not TraceOrigin.REPLAY),
            errors=self.errors + (kind is Delivery.FAILED),
            flagged=self.flagged + flagged,
            input_tokens=self.input_tokens + answered * tokens_in,
            output_tokens=self.output_tokens + answered * tokens_out,
            first_at=rec.started_at if self.first_at is None else min(self.first_at, rec.started_at),
            last_at=rec.started_at if self.last_at is None else max(self.last_at, rec.started_at),
            repages=self.repages + (kind is Delivery.NOT_SENT),
            turn_numbers=self.turn_numbers + new_turn,
            cache_read_tokens=self.cache_read_tokens + cache_read,
            cache_creation_tokens=self.cache_creation_tokens + cache_write,
            latency_us_sum=self.latency_us_sum + round((latency or 0.0) * 1000),
            latency_ms_max=max(self.latency_ms_max, latency or 0.0),
            timed_calls=self.timed_calls + (latency is not None),
            models=self._models_with(rec, tokens_in, tokens_out, cache_read, cache_write)
            if answered else self.models,
            paging=self.paging if turn_paging is None
            else (self.paging or PagingTotals()).adding(turn_paging),
        )  # fmt: skip

    def _models_with(
        self, rec: TraceRecord, tokens_in: int, tokens_out: int, read: int, write: int
    ) -> tuple[ModelTokens, ...]:
        by_model = {m.model: m for m in self.models}
        m = by_model.get(rec.model, ModelTokens(rec.model))
        by_model[rec.model] = ModelTokens(
            m.model, m.calls + 1, m.input_tokens + tokens_in, m.output_tokens + tokens_out,
            m.cache_read_tokens + read, m.cache_creation_tokens + write,
        )  # fmt: skip
        return tuple(by_model[name] for name in sorted(by_model))

    def with_flagged(self, delta: int) -> SessionTraceStats:
        return replace(self, flagged=self.flagged + delta)

    def to_json(self) -> dict[str, Any]:
        return json_ready(self) | {"total_tokens": self.total_tokens}

    def stored(self) -> dict[str, Any]:
        """Return what the store keeps (no session id: it is the key)."""
        data = json_ready(self)
        del data["session"]
        return data

    @classmethod
    def from_stored(cls, session: str, data: Mapping[str, Any]) -> SessionTraceStats:
        """Read what :meth:`stored` wrote (a schema-1 store's rows lack the newer fields)."""
        fields = {k: v for k, v in data.items() if k in _STATS_FIELDS and k != "total_tokens"}
        fields["models"] = tuple(ModelTokens(**m) for m in fields.get("models") or ())
        paging = fields.get("paging")
        if paging is not None:
            cats = tuple((str(n), int(f), int(p)) for n, f, p in paging.get("categories") or ())
            fields["paging"] = PagingTotals(**(dict(paging) | {"categories": cats}))
        return cls(session, **fields)


_STATS_FIELDS = frozenset(SessionTraceStats.__dataclass_fields__)


@dataclass(frozen=True)
class TurnGroup:
    """One turn number of a session: the record that is the turn, and what replays it."""

    head: str  # call id of the turn's record
    head_original: bool  # False: every record of the turn is a replay
    head_kind: str = ""  # record_kind of the head
    head_failed: bool = False
    calls: int = 0
    replay_kinds: Mapping[str, int] = field(default_factory=dict, hash=False)  # of replays
    replay_errors_all: int = 0  # failed records among the replays (head included)

    @classmethod
    def of(cls, rec: TraceRecord) -> TurnGroup:
        return cls(rec.call_id, rec.origin is not TraceOrigin.REPLAY, record_kind(rec),
                   rec.status is TraceStatus.ERROR).adding(rec, as_head=False)  # fmt: skip

    def adding(self, rec: TraceRecord, *, as_head: bool = True) -> TurnGroup:
        """Return the group with ``rec`` added (it becomes the head if it sorts first)."""
        group = self
        original = rec.origin is not TraceOrigin.REPLAY
        if as_head and (not original, rec.call_id) < (not self.head_original, self.head):
            group = replace(self, head=rec.call_id, head_original=original,
                            head_kind=record_kind(rec), head_failed=rec.status is TraceStatus.ERROR)  # fmt: skip
        kinds = dict(group.replay_kinds)
        failed = group.replay_errors_all
        if not original:
            kinds[record_kind(rec)] = kinds.get(record_kind(rec), 0) + 1
            failed += rec.status is TraceStatus.ERROR
        return replace(group, calls=group.calls + 1, replay_kinds=dict(sorted(kinds.items())),
                       replay_errors_all=failed)  # fmt: skip

    def _others(self, kind: str) -> int:
        own = 0 if self.head_original else int(self.head_kind == kind)
        return self.replay_kinds.get(kind, 0) - own

    @property
    def replays(self) -> int:
        """Replays of the turn sent again (the head itself not counted)."""
        return self._others(TraceOrigin.REPLAY.value)

    @property
    def repages(self) -> int:
        return self._others(REPAGE_KEY)

    @property
    def replay_errors(self) -> int:
        own = 0 if self.head_original else int(self.head_failed)
        return self.replay_errors_all - own

    def stored(self) -> dict[str, Any]:
        return json_ready(self) | {"replay_kinds": dict(self.replay_kinds)}

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> TurnGroup:
        return cls(**(dict(data) | {"replay_kinds": dict(data.get("replay_kinds") or {})}))
