"""Two turns side by side: the text diff laid out in two columns, grouped by request section.

Owns: ``side_by_side`` (a ``TextDiff`` -> rows of left/right lines with their changed
characters split out), ``CompareView`` (what the compare page shows of a ``TraceDiff``) and
``turn_pairs`` / ``previous_turn`` (the default pair for a turn, and the pairs before and
after it, for keyboard navigation).

Invariants:
- Pure layout of the runtime diff: every line of every hunk appears exactly once, on its side,
  in order; a removed run and the added run after it share rows (line k beside line k), and
  the shorter side is padded with empty cells, never with invented text.
- Highlight segments cover each line exactly: joined, they give the line's text back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from runtime.inspect.diff import BlockChange, CacheComparison, SectionDelta, TraceDiff
from runtime.inspect.request import RequestView
from runtime.inspect.textdiff import DiffLine, Hunk, LineOp, TextDiff
from runtime.inspect.timeline import group_turns
from runtime.inspect.turn import without_plan
from runtime.tracing.cacheread import CacheReadCheck, check_cache_read
from runtime.tracing.records import TraceOrigin, TraceRecord, TraceStore


@dataclass(frozen=True)
class Segment:
    text: str
    changed: bool


@dataclass(frozen=True)
class Cell:
    """One side of a row: a line number (1-based, None for padding), its op and segments."""

    number: int | None
    op: str  # same | removed | added | empty
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Row:
    left: Cell
    right: Cell


@dataclass(frozen=True)
class SideHunk:
    label: str  # the request unit of the hunk's first change, e.g. "messages[12] user"
    section: str  # params | tools | system | messages | text
    rows: tuple[Row, ...]


EMPTY = Cell(None, "empty", ())


def segments(text: str, spans: Sequence[tuple[int, int]]) -> tuple[Segment, ...]:
    """Split ``text`` into unchanged and changed pieces at ``spans`` (sorted, disjoint)."""
    out: list[Segment] = []
    at = 0
    for start, end in spans:
        if start > at:
            out.append(Segment(text[at:start], False))
        out.append(Segment(text[start:end], True))
        at = end
    if at < len(text) or not out:
        out.append(Segment(text[at:], False))
    return tuple(out)


def _cell(line: DiffLine, number: int | None) -> Cell:
    return Cell(None if number is None else number + 1, line.op.value,
                segments(line.text, line.spans))  # fmt: skip


def diff_rows(lines: Sequence[DiffLine]) -> list[Row]:
    """Return diff lines as two-column rows (removed beside added, same on both sides)."""
    rows: list[Row] = []
    i = 0
    while i < len(lines):
        if lines[i].op is LineOp.SAME:
            rows.append(Row(_cell(lines[i], lines[i].a), _cell(lines[i], lines[i].b)))
            i += 1
            continue
        removed, added = [], []
        while i < len(lines) and lines[i].op is LineOp.REMOVED:
            removed.append(lines[i])
            i += 1
        while i < len(lines) and lines[i].op is LineOp.ADDED:
            added.append(lines[i])
            i += 1
        for k in range(max(len(removed), len(added))):
            left = _cell(removed[k], removed[k].a) if k < len(removed) else EMPTY
            right = _cell(added[k], added[k].b) if k < len(added) else EMPTY
            rows.append(Row(left, right))
    return rows


def _section(hunk: Hunk, view_a: RequestView, view_b: RequestView) -> str:
    first = next((line for line in hunk.lines if line.op is not LineOp.SAME), None)
    if first is not None and first.b is not None:
        unit = view_b.unit_at(first.b)
    else:
        unit = view_a.unit_at(
            first.a if first is not None and first.a is not None else hunk.a_start
        )
    return unit.section if unit else ""


def side_by_side(text: TextDiff, view_a: RequestView, view_b: RequestView) -> tuple[SideHunk, ...]:
    """Return the diff's hunks as two-column rows, each labelled with its request section."""
    return tuple(SideHunk(h.label, _section(h, view_a, view_b), tuple(diff_rows(h.lines)))
                 for h in text.hunks)  # fmt: skip


@dataclass(frozen=True)
class TurnPairs:
    """The turns around a compared pair: what j (next) and k (previous) move to."""

    previous: tuple[str, str] | None
    next: tuple[str, str] | None


def _heads(traces: TraceStore, session: str) -> list[str]:
    """Return the call id of each turn of ``session`` (its first non-replay record), in order."""
    groups = group_turns(traces.turns(session))
    multi = [cid for _, cids in groups if len(cids) > 1 for cid in cids]
    origin = {r.call_id: r.origin for r in traces.get_many(multi)}
    heads = []
    for _, cids in groups:
        originals = [c for c in cids if origin.get(c) is not TraceOrigin.REPLAY]
        heads.append((originals or cids)[0])
    return heads


def turn_pairs(traces: TraceStore, a: TraceRecord, b: TraceRecord) -> TurnPairs:
    """Return the adjacent pairs before and after (a, b) when both are turns of one session."""
    if a.session != b.session:
        return TurnPairs(None, None)
    heads = _heads(traces, a.session)
    if a.call_id not in heads or b.call_id not in heads:
        return TurnPairs(None, None)
    i, j = heads.index(a.call_id), heads.index(b.call_id)
    previous = (heads[i - 1], heads[i]) if i > 0 else None
    following = (heads[j], heads[j + 1]) if j + 1 < len(heads) else None
    return TurnPairs(previous, following)


def previous_turn(traces: TraceStore, rec: TraceRecord) -> str | None:
    """Return the call id of the turn before ``rec``'s turn, if there is one."""
    heads = _heads(traces, rec.session)
    at = heads.index(rec.call_id) if rec.call_id in heads else None
    if at is None:  # a replay: compare it with the turn it replayed's predecessor
        turns = [t for t, _ in group_turns(traces.turns(rec.session))]
        at = turns.index(rec.turn)
    return heads[at - 1] if at else None


@dataclass(frozen=True)
class CompareView:
    """What the compare page shows: figures, a window of each change list, and the hunks.

    Built from a ``TraceDiff`` and holding none of its bulk (the parsed requests, the plans),
    so a page keeps only what it renders.
    """

    a: TraceRecord  # without its plan
    b: TraceRecord
    summary: str
    tokens_a: int
    tokens_b: int
    sections: tuple[SectionDelta, ...]
    cache: CacheComparison
    cache_read: CacheReadCheck  # the cache verdict beside B's reported cache reads
    text: TextDiff
    added: tuple[BlockChange, ...]
    removed: tuple[BlockChange, ...]
    changed: tuple[BlockChange, ...]  # kept blocks whose reason changed
    added_total: int
    removed_total: int
    changed_total: int
    hunks: tuple[SideHunk, ...]

    @property
    def cut(self) -> bool:
        """Whether some change list shows only its first entries."""
        shown = len(self.added) + len(self.removed) + len(self.changed)
        return shown < self.added_total + self.removed_total + self.changed_total


def compare_view(diff: TraceDiff, limit: int | None) -> CompareView:
    """Return the page's view of ``diff``, each change list cut to ``limit`` (None: all)."""
    changed = [c for c in diff.plan.kept if c.reason_changed]
    return CompareView(
        a=without_plan(diff.a), b=without_plan(diff.b), summary=diff.plan.summary(),
        tokens_a=diff.plan.tokens_a, tokens_b=diff.plan.tokens_b, sections=diff.plan.sections,
        cache=diff.cache, cache_read=check_cache_read(diff.cache, diff.a, diff.b),
        text=replace(diff.text, hunks=()),
        added=diff.plan.added[:limit], removed=diff.plan.removed[:limit],
        changed=tuple(changed[:limit]), added_total=len(diff.plan.added),
        removed_total=len(diff.plan.removed), changed_total=len(changed),
        hunks=side_by_side(diff.text, diff.view_a, diff.view_b),
    )  # fmt: skip
