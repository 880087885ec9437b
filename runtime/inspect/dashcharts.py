"""The dashboard's charts: what each one plots, its series, and the CSV of its numbers.

Owns: ``ChartSpec`` and ``CHARTS`` (each chart's name, title, unit, whether it stacks bars or
draws lines, its series and its CSV columns), ``chart_series`` (the values a chart draws per
bucket) and ``csv_rows`` / ``csv_cell`` (the numbers behind a chart, one row per bucket × group).

Invariants:
- A chart's CSV holds every number the chart draws: for a chart by group, the value of each
  bucket × group is a column of that row; for the cost chart (stacked by kind: uncached input,
  cache reads, cache writes, output), each kind is a column, and the chart's bar is their sum
  over the groups of the bucket.
- A CSV cell is never a formula: text starting with = + - @ (or a tab or carriage return,
  which spreadsheets also read as a formula start) gets a leading apostrophe.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import InvalidInput
from runtime.inspect.dashboard import Dashboard, GroupStats


@dataclass(frozen=True)
class ChartSpec:
    name: str
    title: str
    unit: str
    lines: bool  # False: stacked bars
    value: str  # the GroupStats figure a series by group plots ("" for the cost chart)
    parts: tuple[tuple[str, str], ...]  # (figure, label) stacked instead of groups
    columns: tuple[str, ...]  # GroupStats figures of the CSV, after bucket and group


_COST_PARTS = (("cost_input_usd", "uncached input"), ("cost_cache_read_usd", "cache reads"),
               ("cost_cache_write_usd", "cache writes"), ("cost_output_usd", "output"))  # fmt: skip
CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("input-tokens", "Input tokens (uncached, cache reads and writes)", "tokens", False,
              "all_input_tokens", (),
              ("calls", "input_tokens", "cache_read_tokens", "cache_write_tokens",
               "all_input_tokens")),
    ChartSpec("output-tokens", "Output tokens", "tokens", False, "output_tokens", (),
              ("calls", "output_tokens")),
    ChartSpec("cost", "Cost, list price: uncached input, cache reads, cache writes, output", "USD",
              False, "", _COST_PARTS,
              ("calls", "cost_input_usd", "cost_cache_read_usd", "cost_cache_write_usd",
               "cost_output_usd", "cost_usd", "unpriced_calls")),
    ChartSpec("latency-p50", "Latency p50", "ms", True, "latency_p50_ms", (),
              ("calls", "latency_p50_ms")),
    ChartSpec("latency-p95", "Latency p95", "ms", True, "latency_p95_ms", (),
              ("calls", "latency_p95_ms")),
    ChartSpec("errors", "Errors (failed calls)", "calls", False, "errors", (),
              ("calls", "errors")),
)  # fmt: skip
BY_NAME = {c.name: c for c in CHARTS}


def chart_spec(name: str) -> ChartSpec:
    """Return the chart named ``name``, or raise InvalidInput listing the charts there are."""
    spec = BY_NAME.get(name)
    if spec is None:
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise InvalidInput(f"no chart {shown!r}; charts: {', '.join(BY_NAME)}")
    return spec


# CSV columns and chart values named for what they count; the token counts live in a Usage.
_IN_USAGE = {"input_tokens": "input_tokens", "output_tokens": "output_tokens",
             "cache_read_tokens": "cache_read_input_tokens",
             "cache_write_tokens": "cache_creation_input_tokens"}  # fmt: skip


def _figure(stats: GroupStats, name: str) -> float | None:
    value: float | None = (getattr(stats.usage, _IN_USAGE[name]) if name in _IN_USAGE
                           else getattr(stats, name))  # fmt: skip
    return value


@dataclass(frozen=True)
class Series:
    label: str
    index: int  # colour slot: CSS class series-<index>
    values: tuple[float | None, ...]  # one per bucket (None: no timed call, a gap in a line)


def chart_series(dash: Dashboard, spec: ChartSpec) -> tuple[Series, ...]:
    """Return the series ``spec`` draws over ``dash``'s buckets, in legend (stacking) order."""
    if spec.parts:
        return tuple(
            Series(label, i, tuple(round(sum(_figure(dash.stats(b, g), part) or 0.0
                                             for g in dash.groups), 8) for b in dash.buckets))
            for i, (part, label) in enumerate(spec.parts)
        )  # fmt: skip
    return tuple(
        Series(g, i, tuple(_figure(dash.stats(b, g), spec.value) for b in dash.buckets))
        for i, g in enumerate(dash.groups)
    )


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """Return ``value`` as CSV text a spreadsheet never runs as a formula."""
    if value is None:
        return ""
    text = repr(value) if isinstance(value, float) else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_rows(dash: Dashboard, spec: ChartSpec) -> list[list[str]]:
    """Return the header and one row per bucket × group of the numbers behind ``spec``."""
    header = ["bucket_start_utc", dash.query.group.value, *spec.columns]
    rows = [header]
    for bucket in dash.buckets:
        for group in dash.groups:
            stats = dash.stats(bucket, group)
            rows.append([csv_cell(bucket.label), csv_cell(group),
                         *(csv_cell(_figure(stats, c)) for c in spec.columns)])  # fmt: skip
    return rows
