"""Geometry of the small server-rendered SVG charts (no JavaScript, no inline styles).

The template draws rects from these numbers; colours come from CSS classes per section, so the
Content-Security-Policy needs no 'unsafe-inline'. Coordinates are in the SVG's viewBox units.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.inspect.timeline import SessionTimeline

WIDTH = 800.0
HEIGHT = 140.0
GAP = 0.2  # share of each slot left empty between bars
MARK = 4.0  # height of the failing/error marker under a bar


@dataclass(frozen=True)
class Segment:
    section: str
    y: float
    height: float
    tokens: int


@dataclass(frozen=True)
class Bar:
    turn: int
    call_id: str
    x: float
    width: float
    total: int
    segments: tuple[Segment, ...]
    failing: bool
    errored: bool

    @property
    def title(self) -> str:
        parts = ", ".join(f"{s.section} {s.tokens:,}" for s in self.segments)
        flags = (" — failing" if self.failing else "") + (" — error" if self.errored else "")
        return f"Turn {self.turn}: {self.total:,} tokens ({parts}){flags}"


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    plot_height: float
    bars: tuple[Bar, ...]
    max_total: int
    sections: tuple[str, ...]


def _round(value: float) -> float:
    return round(value, 2)


def _column(index: int, count: int) -> tuple[float, float]:
    """Return the x and width of the bar of turn ``index`` of ``count``: one slot a turn across
    WIDTH, GAP of it left empty (the tokens chart and the strips under it share these x)."""
    slot = WIDTH / max(count, 1)
    return _round(index * slot + slot * GAP / 2), _round(slot * (1 - GAP))


def _scaled(extent: float, value: float, top: float) -> float:
    """Return ``value``'s share of the axis ``extent`` whose end stands for ``top`` (unrounded)."""
    return extent * value / top


def stacked_bars(timeline: SessionTimeline) -> Chart:
    """Return one bar per turn of the page, its sections stacked bottom-up in canonical order."""
    totals = [sum(s.used for s in row.sections) for row in timeline.rows]
    top = max(totals, default=0) or 1
    plot = HEIGHT - MARK - 2
    bars = []
    for i, (row, total) in enumerate(zip(timeline.rows, totals, strict=True)):
        y = plot
        segments = []
        for section in row.sections:
            h = _scaled(plot, section.used, top)
            y -= h
            segments.append(Segment(section.section, _round(y), _round(h), section.used))
        x, width = _column(i, len(timeline.rows))
        bars.append(
            Bar(row.turn, row.call_id, x, width, total, tuple(segments), row.flagged, row.errored)
        )
    return Chart(
        WIDTH, HEIGHT, _round(plot + 1), tuple(bars), max(totals, default=0), timeline.sections
    )


#: The cost and latency strips under the tokens chart: one bar a turn, the same x as its bars.
STRIP_HEIGHT = 40.0


@dataclass(frozen=True)
class StripBar:
    turn: int
    call_id: str
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Strip:
    """One value per turn of the page as bars (a turn without a value has none)."""

    width: float
    height: float
    bars: tuple[StripBar, ...]
    top: float  # the largest value, in the strip's unit
    unit: str  # "usd" or "ms"

    @property
    def empty(self) -> bool:
        return not self.bars


def value_strip(timeline: SessionTimeline, unit: str) -> Strip:
    """Return the page's turns as bars of their list-price cost (``usd``) or latency (``ms``)."""
    values = [row.cost_usd if unit == "usd" else row.latency_ms for row in timeline.rows]
    top = max((v for v in values if v is not None), default=0.0)
    bars = []
    for i, (row, value) in enumerate(zip(timeline.rows, values, strict=True)):
        if value is None or top <= 0:
            continue
        h = max(_scaled(STRIP_HEIGHT, value, top), 0.5)  # a tiny value still shows
        shown = f"${value:,.4f}" if unit == "usd" else f"{value:,.0f} ms"
        what = "list-price cost" if unit == "usd" else "latency"
        x, width = _column(i, len(timeline.rows))
        bars.append(StripBar(row.turn, row.call_id, x, _round(STRIP_HEIGHT - h), width,
                             _round(h), f"Turn {row.turn}: {what} {shown}"))  # fmt: skip
    return Strip(WIDTH, STRIP_HEIGHT, tuple(bars), top, unit)
