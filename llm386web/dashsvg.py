"""Geometry of the dashboard's charts: stacked bars and lines per time bucket, as SVG numbers.

The template draws rects, polylines and circles from these numbers; colours come from the CSS
classes ``series-0`` … ``series-7`` (static/llm386web/css/dashboard.css, light and dark), so the
Content-Security-Policy needs no 'unsafe-inline'. Coordinates are in the SVG's viewBox units;
the SVG keeps its aspect ratio and scales to its box, so its labels stay readable at 390 px.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runtime.inspect.dashboard import Bucket, Dashboard
from runtime.inspect.dashcharts import ChartSpec, Series, chart_series

WIDTH, HEIGHT = 800.0, 220.0
LEFT, TOP, BOTTOM = 64.0, 10.0, 22.0  # room for the y labels and the first/last bucket
PLOT_W, PLOT_H = WIDTH - LEFT - 4, HEIGHT - TOP - BOTTOM
GAP = 0.15  # share of each slot left empty between bars


@dataclass(frozen=True)
class Rect:
    """One series' part of a bucket's bar (every bar of a chart is ``SvgChart.bar_width`` wide)."""

    series: int  # colour slot: CSS class series-<series>
    x: float
    y: float
    height: float
    title: str


@dataclass(frozen=True)
class Line:
    css: str
    points: str  # the polyline's "x,y x,y ..." (a run of buckets with a value)
    dots: tuple[tuple[float, float, str], ...]  # (x, y, title) per point


@dataclass(frozen=True)
class Frame:
    """The viewBox and the plot's edges: the same for every chart."""

    width: float = WIDTH
    height: float = HEIGHT
    y_axis: float = LEFT - 2  # x of the axis line
    top: float = TOP
    baseline: float = TOP + PLOT_H  # y of the zero line


FRAME = Frame()


@dataclass(frozen=True)
class SvgChart:
    spec: ChartSpec
    bar_width: float
    shapes: tuple[tuple[Rect, ...], tuple[Line, ...]]  # bars, lines (one of them is empty)
    series: tuple[Series, ...]
    labels: tuple[str, str, str]  # the y axis' top value, the first and the last bucket

    frame = FRAME

    @property
    def rects(self) -> tuple[Rect, ...]:
        return self.shapes[0]

    @property
    def lines(self) -> tuple[Line, ...]:
        return self.shapes[1]

    @property
    def empty(self) -> bool:
        return not self.rects and not self.lines


def _r(value: float) -> float:
    return round(value, 2)


def fmt(value: float, unit: str) -> str:
    """Return ``value`` as the axis and tooltips show it in ``unit``."""
    if unit == "USD":
        return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"
    if unit == "ms":
        return f"{value:,.0f} ms"
    return f"{value:,.0f}"


def _bars(dash: Dashboard, spec: ChartSpec, series: Sequence[Series], top: float) -> list[Rect]:
    slot = PLOT_W / max(len(dash.buckets), 1)
    out = []
    for i, bucket in enumerate(dash.buckets):
        y = TOP + PLOT_H
        for s in series:
            value = s.values[i] or 0.0
            if value <= 0:
                continue
            h = PLOT_H * value / top
            y -= h
            out.append(Rect(s.index, _r(LEFT + i * slot + slot * GAP / 2), _r(y), _r(h),
                            f"{bucket.label} · {s.label}: {fmt(value, spec.unit)}"))  # fmt: skip
    return out


def _lines(dash: Dashboard, spec: ChartSpec, series: Sequence[Series], top: float) -> list[Line]:
    slot = PLOT_W / max(len(dash.buckets), 1)
    out = []
    for s in series:
        run: list[tuple[float, float, str]] = []
        for i, (bucket, value) in enumerate(
            [*zip(dash.buckets, s.values, strict=True), (None, None)]
        ):
            if value is None or not isinstance(bucket, Bucket):
                if run:
                    out.append(Line(f"series-{s.index}", " ".join(f"{x},{y}" for x, y, _ in run),
                                    tuple(run)))  # fmt: skip
                run = []
                continue
            x, y = _r(LEFT + (i + 0.5) * slot), _r(TOP + PLOT_H - PLOT_H * value / top)
            run.append((x, y, f"{bucket.label} · {s.label}: {fmt(value, spec.unit)}"))
    return out


def _top(dash: Dashboard, spec: ChartSpec, series: Sequence[Series]) -> float:
    if spec.lines:
        return max((v or 0.0 for s in series for v in s.values), default=0.0)
    return max((sum(s.values[i] or 0.0 for s in series) for i in range(len(dash.buckets))),
               default=0.0)  # fmt: skip


def svg_chart(dash: Dashboard, spec: ChartSpec) -> SvgChart:
    """Return the shapes ``spec`` draws over ``dash``'s buckets."""
    series = chart_series(dash, spec)
    peak = _top(dash, spec, series)
    top = peak or 1.0
    rects = () if spec.lines else tuple(_bars(dash, spec, series, top))
    lines = tuple(_lines(dash, spec, series, top)) if spec.lines else ()
    first, last = (dash.buckets[0].label, dash.buckets[-1].label) if dash.buckets else ("", "")
    width = _r(PLOT_W / max(len(dash.buckets), 1) * (1 - GAP))
    return SvgChart(spec, width, (rects, lines), series, (fmt(peak, spec.unit), first, last))
