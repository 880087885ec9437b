"""The dashboard: tokens, cost, latency and errors per time bucket, by model or by source.

Owns: ``DashQuery`` (a time range, or since/until days, and a grouping), ``Bucket`` and
``GroupStats`` (one bucket × group of sums), ``Dashboard`` (every bucket of the window, every
group, and the figures per bucket × group), ``dashboard`` (answers a query) and ``csv_rows``
(the numbers behind one chart, one row per bucket × group).

Invariants:
- Bounded reads: the figures are summed from the call points index (``runtime.indexes.callpoints``,
  one small row per sent call, read by a range scan of its time key) and the sessions list's
  summary table (a session's source); no trace record is decoded.
- Buckets are UTC hours for a window of up to seven days, else UTC days; every bucket of the
  window is listed, empty ones included, so a gap shows as a gap.
- Percentiles are nearest-rank over the bucket × group's timed calls (exact, no sketch).
- Cost is list price from ``runtime.providers.pricing`` (``input_cost`` and ``output_cost``),
  split into uncached input, cache reads, cache writes and output; calls to unpriced models
  are counted apart (a model priced for input only adds no output cost).
- Groups are sorted by calls (most first), then name; past ``MAX_GROUPS`` the rest are summed
  into one ``(other)`` group, so a chart has a bounded number of series.
- Deterministic: the clock is an argument (``now_ms``), every order has a total key.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from runtime.errors import InvalidInput
from runtime.indexes.callpoints import CallPoint, points_between
from runtime.inspect.sessions import SourceKind, summary_table
from runtime.providers.pricing import find_price, input_cost, output_cost
from runtime.providers.usage import Usage
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceStore

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
HOURLY_UP_TO_MS = 7 * DAY_MS
MAX_GROUPS = 8  # series a chart draws; the rest are summed into OTHER
MAX_BUCKETS = 2000  # a window this long (in days) is refused: narrow it with since/until
OTHER = "(other)"
NO_SOURCE = "(none)"


class TimeRange(StrEnum):
    DAY = "24h"
    WEEK = "7d"
    MONTH = "30d"
    ALL = "all"


_SPANS = {TimeRange.DAY: DAY_MS, TimeRange.WEEK: 7 * DAY_MS, TimeRange.MONTH: 30 * DAY_MS}


class Grouping(StrEnum):
    MODEL = "model"
    SOURCE = "source"


@dataclass(frozen=True)
class DashQuery:
    """What the dashboard is asked for; since/until (UTC days, both included) beat ``range``."""

    range: TimeRange = TimeRange.WEEK
    group: Grouping = Grouping.MODEL
    since: dt.date | None = None
    until: dt.date | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise InvalidInput(f"the date range starts ({self.since}) after it ends ({self.until})")

    def window(self, now_ms: int) -> tuple[int | None, int | None]:
        """Return [start, end) in ms (None: from the first call, or up to the last)."""
        if self.since or self.until:
            start = None if self.since is None else _day_ms(self.since)
            end = None if self.until is None else _day_ms(self.until) + DAY_MS
            return start, end
        if self.range is TimeRange.ALL:
            return None, None
        return now_ms - _SPANS[self.range], now_ms


def _day_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


class _Sums:
    """Running sums of one bucket × group (in the order ``GroupStats.of`` reads), and its
    latencies."""

    def __init__(self) -> None:
        self.figures: list[float] = [0] * _SUMMED
        self.latencies: list[float] = []

    def add(self, p: CallPoint) -> None:
        if p.latency_ms is not None:
            self.latencies.append(p.latency_ms)
        price = None if p.failed else find_price(p.model)
        costs = (0.0, 0.0, 0.0, 0.0) if price is None else (
            input_cost(Usage(p.input_tokens, 0), price) or 0.0,
            input_cost(Usage(0, 0, p.cache_read_tokens), price) or 0.0,
            input_cost(Usage(0, 0, 0, p.cache_write_tokens), price) or 0.0,
            output_cost(Usage(0, p.output_tokens), price) or 0.0,
        )  # fmt: skip
        row = (1, int(p.failed), p.input_tokens, p.output_tokens, p.cache_read_tokens,
               p.cache_write_tokens, *costs, int(price is None and not p.failed))  # fmt: skip
        self.figures = [a + b for a, b in zip(self.figures, row, strict=True)]


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Return the nearest-rank ``pct`` percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(pct / 100 * len(ordered)) - 1, 0)]


@dataclass(frozen=True)
class GroupStats:
    """One bucket × group: sums of its calls, and latency percentiles of its timed calls."""

    calls: int = 0
    errors: int = 0
    usage: Usage = Usage(0, 0)  # the counts add up: input_tokens is the uncached input alone
    cost_input_usd: float = 0.0
    cost_cache_read_usd: float = 0.0
    cost_cache_write_usd: float = 0.0
    cost_output_usd: float = 0.0
    unpriced_calls: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None

    @classmethod
    def of(cls, s: _Sums) -> GroupStats:
        calls, errors, i, o, r, w, c_input, c_read, c_write, c_output, unpriced = s.figures
        return cls(int(calls), int(errors), Usage(int(i), int(o), int(r), int(w)),
                   round(c_input, 8), round(c_read, 8), round(c_write, 8), round(c_output, 8),
                   int(unpriced),
                   percentile(s.latencies, 50), percentile(s.latencies, 95))  # fmt: skip

    @property
    def all_input_tokens(self) -> int:
        return self.usage.total_input_tokens

    @property
    def cost_input_all_usd(self) -> float:
        """The input's cost: uncached input, cache reads and cache writes."""
        return round(self.cost_input_usd + self.cost_cache_read_usd + self.cost_cache_write_usd, 8)

    @property
    def cost_usd(self) -> float:
        """The whole cost: every kind of input, and output."""
        return round(self.cost_input_all_usd + self.cost_output_usd, 8)


EMPTY = GroupStats()
_SUMMED = 11  # calls, errors, four token counts, four costs, unpriced calls


@dataclass(frozen=True)
class Bucket:
    start_ms: int
    hourly: bool

    @property
    def label(self) -> str:
        """The bucket's start, UTC: ``YYYY-MM-DD HH:00`` for an hour, ``YYYY-MM-DD`` for a day."""
        when = dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC)
        return when.strftime("%Y-%m-%d %H:00" if self.hourly else "%Y-%m-%d")


@dataclass(frozen=True)
class Dashboard:
    query: DashQuery
    start_ms: int | None  # the window asked for (None: unbounded)
    end_ms: int | None
    hourly: bool
    buckets: tuple[Bucket, ...]
    groups: tuple[str, ...]  # series order: most calls first
    cells: dict[tuple[int, str], GroupStats]  # (bucket start, group) -> figures; absent: none
    totals: GroupStats  # the whole window, every group

    def stats(self, bucket: Bucket, group: str) -> GroupStats:
        return self.cells.get((bucket.start_ms, group), EMPTY)

    @property
    def empty(self) -> bool:
        return self.totals.calls == 0


def _group_of(store: BlockStore, traces: TraceStore, grouping: Grouping) -> dict[str, str] | None:
    if grouping is Grouping.MODEL:
        return None
    rows = summary_table(store, traces).rows
    return {s.session: _source_label(s.source) for s in rows}


def _source_label(source: str) -> str:
    kind = SourceKind.of(source)
    return NO_SOURCE if kind is None else kind.value


def _ranked(
    points: Sequence[CallPoint], key_of: dict[str, str] | None
) -> list[tuple[str, CallPoint]]:
    keyed = [(p.model if key_of is None else key_of.get(p.session, NO_SOURCE), p) for p in points]
    calls: dict[str, int] = {}
    for group, _ in keyed:
        calls[group] = calls.get(group, 0) + 1
    order = sorted(calls, key=lambda g: (-calls[g], g))
    kept = set(order if len(order) <= MAX_GROUPS else order[: MAX_GROUPS - 1])
    return [(g if g in kept else OTHER, p) for g, p in keyed]


def _buckets(start: int, end: int, hourly: bool) -> tuple[Bucket, ...]:
    size = HOUR_MS if hourly else DAY_MS
    first, last = start // size * size, (end - 1) // size * size
    if (last - first) // size >= MAX_BUCKETS:
        raise InvalidInput(
            f"the window holds more than {MAX_BUCKETS} days; narrow it with since and until"
        )
    return tuple(Bucket(ms, hourly) for ms in range(first, last + 1, size))


def dashboard(store: BlockStore, traces: TraceStore, q: DashQuery, *, now_ms: int) -> Dashboard:
    """Return the figures of every bucket × group of ``q``'s window, as of ``now_ms``."""
    start, end = q.window(now_ms)
    points = points_between(store, traces, start, end)
    lo = start if start is not None else (points[0].started_at if points else now_ms)
    hi = end if end is not None else (points[-1].started_at + 1 if points else now_ms + 1)
    hourly = hi - lo <= HOURLY_UP_TO_MS
    size = HOUR_MS if hourly else DAY_MS
    sums: dict[tuple[int, str], _Sums] = {}
    total = _Sums()
    keyed = _ranked(points, _group_of(store, traces, q.group))
    for group, p in keyed:
        sums.setdefault((p.started_at // size * size, group), _Sums()).add(p)
        total.add(p)
    calls: dict[str, int] = {}
    for group, _ in keyed:
        calls[group] = calls.get(group, 0) + 1
    groups = tuple(sorted(calls, key=lambda g: (g == OTHER, -calls[g], g)))
    cells = {key: GroupStats.of(s) for key, s in sorted(sums.items())}
    return Dashboard(q, start, end, hourly, _buckets(lo, max(hi, lo + 1), hourly), groups, cells,
                     GroupStats.of(total))  # fmt: skip
