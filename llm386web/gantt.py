"""Geometry of a turn's span timeline (a Gantt chart), drawn as SVG without inline styles.

Each span of the turn's tree is a row: its label indented by depth, its bar placed by its
start and end relative to the tree's first span. Colours come from CSS classes by operation
(``op-chat``, ``op-execute_tool``, ``op-invoke_agent``, ``op-other``), so the
Content-Security-Policy needs no 'unsafe-inline'. Coordinates are in the SVG's viewBox units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runtime.otel.genai import MODEL_OPERATIONS
from runtime.otel.spans import SpanNode

WIDTH = 800.0
LABEL = 260.0  # the left column: span names
ROW = 22.0
BAR = 14.0
INDENT = 12.0
AXIS = 18.0  # the time axis under the rows
MIN_BAR = 1.5  # a span too short to see still shows
_OPERATIONS = {"execute_tool": "op-execute_tool", "invoke_agent": "op-invoke_agent",
               "create_agent": "op-invoke_agent"}  # fmt: skip


@dataclass(frozen=True)
class GanttRow:
    """One span's row: its bar from ``x`` for ``width`` units, and its CSS classes."""

    node: SpanNode
    index: int
    x: float
    width: float
    css: str

    @property
    def y(self) -> float:
        return self.index * ROW

    @property
    def bar_y(self) -> float:
        return self.y + (ROW - BAR) / 2

    @property
    def text_y(self) -> float:
        return round(self.y + ROW * 0.68, 2)

    @property
    def label_x(self) -> float:
        return 4 + INDENT * min(self.node.depth, 12)

    @property
    def title(self) -> str:
        what = f" ({self.node.operation})" if self.node.operation else ""
        return f"{self.node.name}{what}: {self.node.duration_ms:,.1f} ms, from +{self.node.start_ms:,.1f} ms"


@dataclass(frozen=True)
class Gantt:
    """The rows, the time they span, and the axis ticks (x, label)."""

    rows: tuple[GanttRow, ...]
    total_ms: float
    ticks: tuple[tuple[float, str], ...]
    width: float = WIDTH
    plot_x: float = LABEL

    @property
    def axis_y(self) -> float:
        return len(self.rows) * ROW

    @property
    def height(self) -> float:
        return self.axis_y + AXIS


def _css(node: SpanNode) -> str:
    kind = "op-chat" if node.operation in MODEL_OPERATIONS else _OPERATIONS.get(node.operation)
    classes = [kind or "op-other"]
    if node.current:
        classes.append("current")
    if node.status == "error":
        classes.append("error")
    return " ".join(classes)


def span_gantt(nodes: Sequence[SpanNode]) -> Gantt | None:
    """Return the timeline of a turn's span tree (None when it has no spans)."""
    if not nodes:
        return None
    total = max(max(n.start_ms + n.duration_ms for n in nodes), 0.001)
    plot = WIDTH - LABEL - 8
    rows = []
    for i, node in enumerate(nodes):
        x = LABEL + plot * node.start_ms / total
        width = min(max(plot * node.duration_ms / total, MIN_BAR), WIDTH - x)
        rows.append(GanttRow(node, i, round(x, 2), round(width, 2), _css(node)))
    ticks = tuple(
        (round(LABEL + plot * f, 2), f"{total * f:,.0f} ms") for f in (0, 0.25, 0.5, 0.75, 1)
    )
    return Gantt(tuple(rows), total, ticks)
