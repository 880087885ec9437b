"""Fast line diff of two sectioned request views, with changes highlighted inside lines.

Owns: ``diff_views`` and its render-agnostic result (``TextDiff`` of ``Hunk``s of ``DiffLine``s).

How it stays fast on 200,000-token requests: units (a tool, the system prompt, a message) are
aligned first, by their whole text, after trimming the common prefix and suffix; only units that
changed are diffed line by line. Both alignments run ``rapidfuzz``'s bit-parallel Indel over
integer ids (equal text, equal id), not Python's difflib. difflib is used only inside a pair of
changed lines, on the short middle left after trimming their common prefix and suffix.

Invariants: the output is a pure function of the two views (no clock, no hash seeds: ids come
from first appearance); every line of A and B is accounted for exactly once as same, removed or
added, so the ``same + removed`` lines rebuild A and ``same + added`` rebuild B.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import AnyStr

from rapidfuzz.distance import Indel

from runtime.inspect.request import RequestView

Opcode = tuple[str, int, int, int, int]
# Above this many cells an exact alignment would need too much memory (the bit matrix is
# cells/8 bytes); such a block is shown as replaced outright.
MAX_ALIGN_CELLS = 400_000_000
SHORT_MIDDLE = 400  # characters: difflib inside a line only below this
MIN_SIMILARITY = 0.5  # changed middles less alike than this are highlighted whole
MAX_PAIRED_LINES = 32  # a replacement larger than this is shown without in-line spans


class LineOp(StrEnum):
    SAME = "same"
    REMOVED = "removed"
    ADDED = "added"


@dataclass(frozen=True)
class DiffLine:
    """One line of a hunk; ``a``/``b`` are 0-based line numbers, ``spans`` changed characters."""

    op: LineOp
    text: str
    a: int | None
    b: int | None
    spans: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Hunk:
    label: str  # the request unit of its first change, e.g. "messages[12] user"
    a_start: int
    a_end: int
    b_start: int
    b_end: int
    lines: tuple[DiffLine, ...]


@dataclass(frozen=True)
class TextDiff:
    hunks: tuple[Hunk, ...]
    same: int
    removed: int
    added: int
    truncated: bool = False  # the hunks stop early; the counts are still complete

    @property
    def identical(self) -> bool:
        return not self.removed and not self.added


def diff_views(
    va: RequestView, vb: RequestView, *, context: int = 3, max_lines: int = 5000
) -> TextDiff:
    """Return the line diff of two request views, grouped into hunks with ``context`` lines."""
    ops = aligned_opcodes(va, vb)
    same = sum(i2 - i1 for tag, i1, i2, _, _ in ops if tag == "equal")
    removed = sum(i2 - i1 for tag, i1, i2, _, _ in ops if tag != "equal")
    added = sum(j2 - j1 for tag, _, _, j1, j2 in ops if tag != "equal")
    hunks, truncated = _hunks(ops, va, vb, context, max_lines)
    return TextDiff(tuple(hunks), same, removed, added, truncated)


def aligned_opcodes(va: RequestView, vb: RequestView) -> list[Opcode]:
    """Return line opcodes (difflib's tags) aligning units first, then lines inside changes."""
    ids: dict[str, int] = {}
    ua = [ids.setdefault("\n".join(va.lines[u.start : u.end]), len(ids)) for u in va.units]
    ub = [ids.setdefault("\n".join(vb.lines[u.start : u.end]), len(ids)) for u in vb.units]
    starts_a = [u.start for u in va.units] + [len(va.lines)]
    starts_b = [u.start for u in vb.units] + [len(vb.lines)]
    out: list[Opcode] = []
    for tag, i1, i2, j1, j2 in sequence_opcodes(ua, ub):
        a1, a2, b1, b2 = starts_a[i1], starts_a[i2], starts_b[j1], starts_b[j2]
        if tag == "replace":
            out.extend(_shift(line_opcodes(va.lines[a1:a2], vb.lines[b1:b2]), a1, b1))
        else:
            out.append((tag, a1, a2, b1, b2))
    return _merge(out)


def line_opcodes(a: Sequence[str], b: Sequence[str]) -> list[Opcode]:
    """Return opcodes aligning two lists of lines."""
    ids: dict[str, int] = {}
    return sequence_opcodes([ids.setdefault(x, len(ids)) for x in a],
                            [ids.setdefault(y, len(ids)) for y in b])  # fmt: skip


def sequence_opcodes(a: Sequence[int], b: Sequence[int]) -> list[Opcode]:
    """Return opcodes for two id sequences: common ends trimmed, the middle aligned by Indel."""
    lo, n, m = 0, len(a), len(b)
    while lo < n and lo < m and a[lo] == b[lo]:
        lo += 1
    hi_a, hi_b = n, m
    while hi_a > lo and hi_b > lo and a[hi_a - 1] == b[hi_b - 1]:
        hi_a, hi_b = hi_a - 1, hi_b - 1
    ops: list[Opcode] = [("equal", 0, lo, 0, lo)] if lo else []
    if hi_a - lo and hi_b - lo and (hi_a - lo) * (hi_b - lo) <= MAX_ALIGN_CELLS:
        middle = Indel.opcodes(a[lo:hi_a], b[lo:hi_b])
        ops += [(o.tag, o.src_start + lo, o.src_end + lo, o.dest_start + lo, o.dest_end + lo)
                for o in middle]  # fmt: skip
    elif hi_a > lo or hi_b > lo:
        ops.append(("replace", lo, hi_a, lo, hi_b))
    if hi_a < n:
        ops.append(("equal", hi_a, n, hi_b, m))
    return _merge([op for op in ops if op[2] > op[1] or op[4] > op[3]])


def _shift(ops: list[Opcode], da: int, db: int) -> list[Opcode]:
    return [(t, i1 + da, i2 + da, j1 + db, j2 + db) for t, i1, i2, j1, j2 in ops]


def _merge(ops: list[Opcode]) -> list[Opcode]:
    """Join neighbours of one kind; a delete next to an insert becomes one replace."""
    out: list[Opcode] = []
    for op in ops:
        if out:
            tag, i1, _, j1, _ = out[-1]
            changed = {tag, op[0]} <= {"delete", "insert", "replace"}
            if tag == op[0] or (changed and tag != "equal"):
                new_tag = tag if tag == op[0] else "replace"
                out[-1] = (new_tag, i1, op[2], j1, op[4])
                continue
        out.append(op)
    return out


def _groups(ops: list[Opcode], context: int) -> list[list[Opcode]]:
    """Group changes with up to ``context`` equal lines around each (difflib's grouping)."""
    if not ops:
        return []
    codes = list(ops)
    tag, i1, i2, j1, j2 = codes[0]
    if tag == "equal":  # keep only the last ``context`` lines of a leading run
        codes[0] = (tag, max(i1, i2 - context), i2, max(j1, j2 - context), j2)
    tag, i1, i2, j1, j2 = codes[-1]
    if tag == "equal":  # and the first ``context`` of a trailing one
        codes[-1] = (tag, i1, min(i2, i1 + context), j1, min(j2, j1 + context))
    groups: list[list[Opcode]] = []
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * context:
            group.append((tag, i1, i1 + context, j1, j1 + context))
            groups.append(group)
            group = []
            i1, j1 = i2 - context, j2 - context
        group.append((tag, i1, i2, j1, j2))
    groups.append(group)
    return [g for g in groups if any(op[0] != "equal" for op in g)]


def _hunks(
    ops: list[Opcode], va: RequestView, vb: RequestView, context: int, max_lines: int
) -> tuple[list[Hunk], bool]:
    hunks: list[Hunk] = []
    budget = max_lines
    for group in _groups(ops, context):
        lines: list[DiffLine] = []
        for op in group:
            lines += _op_lines(op, va.lines, vb.lines, budget - len(lines))
        first = next(op for op in group if op[0] != "equal")
        unit = vb.unit_at(first[3]) if first[4] > first[3] else va.unit_at(first[1])
        hunk = Hunk(unit.label if unit else "", group[0][1], group[-1][2], group[0][3],
                    group[-1][4], tuple(lines))  # fmt: skip
        hunks.append(hunk)
        budget -= len(lines)
        if budget <= 0:
            return hunks, True
    return hunks, False


def _op_lines(op: Opcode, a: Sequence[str], b: Sequence[str], limit: int) -> list[DiffLine]:
    """Return up to ``limit`` lines of one opcode; pairs of changed lines get in-line spans."""
    tag, i1, i2, j1, j2 = op
    if tag == "equal":
        return [DiffLine(LineOp.SAME, a[i], i, j1 + i - i1) for i in range(i1, min(i2, i1 + limit))]
    removed = [DiffLine(LineOp.REMOVED, a[i], i, None) for i in range(i1, min(i2, i1 + limit))]
    limit -= len(removed)
    added = [DiffLine(LineOp.ADDED, b[j], None, j) for j in range(j1, min(j2, j1 + limit))]
    # Pair lines only in small replacements: in a big one, line k of each side is unrelated.
    pairs = min(len(removed), len(added)) if max(i2 - i1, j2 - j1) <= MAX_PAIRED_LINES else 0
    for k in range(pairs):
        spans_a, spans_b = char_spans(removed[k].text, added[k].text)
        removed[k] = DiffLine(LineOp.REMOVED, removed[k].text, removed[k].a, None, spans_a)
        added[k] = DiffLine(LineOp.ADDED, added[k].text, None, added[k].b, spans_b)
    return removed + added


def common_prefix(x: AnyStr, y: AnyStr, lo: int = 0, hi: int | None = None) -> int:
    """Return the length of the common prefix of ``x`` and ``y``, known to be ``lo`` or more
    and ``hi`` or less (a binary search on C-level slice compares)."""
    hi = min(len(x), len(y)) if hi is None else hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if x[lo:mid] == y[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def char_spans(x: str, y: str) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """Return the changed character ranges of ``x`` and of ``y``."""
    p = common_prefix(x, y)
    s = common_prefix(x[p:][::-1], y[p:][::-1])
    xe, ye = len(x) - s, len(y) - s
    whole = (((p, xe),) if xe > p else ()), (((p, ye),) if ye > p else ())
    if xe - p > SHORT_MIDDLE or ye - p > SHORT_MIDDLE or not (xe - p and ye - p):
        return whole
    # Unrelated middles would come out as confetti of single matching letters: mark them whole.
    # rapidfuzz decides that cheaply before difflib does the readable alignment.
    if Indel.normalized_similarity(x[p:xe], y[p:ye]) < MIN_SIMILARITY:
        return whole
    matcher = difflib.SequenceMatcher(None, x[p:xe], y[p:ye], autojunk=False)
    spans_x, spans_y = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            if i2 > i1:
                spans_x.append((p + i1, p + i2))
            if j2 > j1:
                spans_y.append((p + j1, p + j2))
    return tuple(spans_x), tuple(spans_y)
