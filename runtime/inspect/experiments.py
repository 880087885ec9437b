"""What a page shows of experiments: the tree under a turn, and an original beside its child.

Owns: ``TreeNode`` / ``experiment_tree`` (original -> children, depth first, with who ran each,
what changed, cost and tokens), ``OutcomeView`` / ``outcome_view`` (the two outputs side by
side: the text diff, the tool calls each chose, the usage of each and the difference),
``recorded_diff`` / ``request_region`` (a recorded experiment's byte diff, re-derived from the
stored bytes of both requests, and the bytes around it) and ``playground_json`` (the recorded
request as the playground's editor shows it).

Invariants:
- ``playground_json`` is the request's canonical JSON indented: its keys and values are the
  stored ones, so parsing it and writing canonical JSON again gives the stored bytes (the
  playground's round trip; tests/web/test_experiments.py checks it).
- Everything here is read from records and rows; nothing is sent or written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.blocks import canonical_json
from runtime.errors import Llm386Error
from runtime.inspect.compare import Row, diff_rows
from runtime.inspect.request import parse_request
from runtime.providers import get_provider
from runtime.replay.edits import Change, ChangeKind, apply_change
from runtime.replay.experimentlog import ExperimentLog, ExperimentRow
from runtime.replay.isolation import ByteDiff, byte_diff, edit_diff
from runtime.replay.resend import diff_outputs
from runtime.tracing.records import TraceRecord


@dataclass(frozen=True)
class TreeNode:
    depth: int
    row: ExperimentRow


def experiment_tree(log: ExperimentLog, record: TraceRecord) -> tuple[TreeNode, ...]:
    """Return the experiments under ``record`` (depth first, oldest first at each level)."""
    return tuple(TreeNode(depth, row) for depth, row in log.tree(record.call_id))


@dataclass(frozen=True)
class ToolCallRow:
    """One tool call position: what each side called (None: that side made no call there)."""

    original: str | None
    child: str | None

    @property
    def same(self) -> bool:
        return self.original == self.child


@dataclass(frozen=True)
class UsageRow:
    label: str
    original: int | float | None
    child: int | float | None

    @property
    def delta(self) -> int | float | None:
        if self.original is None or self.child is None:
            return None
        return self.child - self.original


@dataclass(frozen=True)
class OutcomeView:
    """An original and its child side by side."""

    original: TraceRecord
    child: TraceRecord
    rows: tuple[Row, ...]  # the text diff, line by line
    added: int
    removed: int
    tool_calls: tuple[ToolCallRow, ...]
    usage: tuple[UsageRow, ...]
    diff: ByteDiff | None  # the request's byte diff, when the experiment was just prepared
    notes: tuple[str, ...] = ()

    @property
    def same_text(self) -> bool:
        return not self.added and not self.removed

    @property
    def same_tools(self) -> bool:
        return all(t.same for t in self.tool_calls)


def _parts(record: TraceRecord) -> tuple[str, list[str]]:
    """Return a record's text and its tool calls (``name canonical-input``)."""
    if record.error is not None:
        return f"[error {record.error.type}] {record.error.message}", []
    if not isinstance(record.response, Mapping):
        return "", []
    texts, calls = [], []
    for block in get_provider(record.provider).content(record.response):
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append(f"{block.get('name')} {canonical_json(block.get('input', {})).decode()}")
    return "\n".join(texts), calls


def _usage(record: TraceRecord) -> dict[str, int | float | None]:
    u = record.usage
    cost = get_provider(record.provider).price(u, record.model)
    return {
        "Input tokens": u.input_tokens if u else record.estimated_input_tokens,
        "Cache read": u.cache_read_input_tokens if u else None,
        "Cache write": u.cache_creation_input_tokens if u else None,
        "Output tokens": u.output_tokens if u else None,
        "Input cost (USD)": cost,
        "Latency (ms)": record.latency_ms,
    }


def outcome_view(
    original: TraceRecord, child: TraceRecord, diff: ByteDiff | None = None,
    notes: tuple[str, ...] = (),
) -> OutcomeView:  # fmt: skip
    """Return the side-by-side view of ``original``'s and ``child``'s outputs."""
    text_a, calls_a = _parts(original)
    text_b, calls_b = _parts(child)
    lines = diff_outputs(text_a, text_b)
    width = max(len(calls_a), len(calls_b))
    calls = tuple(ToolCallRow(calls_a[i] if i < len(calls_a) else None,
                              calls_b[i] if i < len(calls_b) else None) for i in range(width))  # fmt: skip
    ua, ub = _usage(original), _usage(child)
    usage = tuple(UsageRow(label, ua[label], ub[label]) for label in ua)
    return OutcomeView(original, child, tuple(diff_rows(lines.lines)), lines.added,
                       lines.removed, calls, usage, diff, notes)  # fmt: skip


def playground_json(raw: bytes) -> str:
    """Return request bytes as the playground edits them: indented, keys as stored."""
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return raw.decode("utf-8", "replace")


def parent_of(log: ExperimentLog, record: TraceRecord) -> ExperimentRow | None:
    """Return the row that made ``record`` if it is an experiment's child, else None."""
    return log.row_of(record.call_id) if record.parent_call_id else None


_ON_THE_JSON = (ChangeKind.EDIT, ChangeKind.DROP, ChangeKind.INSERT, ChangeKind.PARAM,
                ChangeKind.MODEL)  # fmt: skip
REGION_CONTEXT = 80  # bytes shown on each side of the differing region
REGION_MAX = 4000  # bytes of each side's differing region shown


def recorded_diff(original: bytes, child: bytes, change: Change) -> ByteDiff | None:
    """Re-derive a recorded experiment's byte diff from the stored bytes of both requests.

    A change made on the request JSON is made again on the original to learn which units it
    touched; the proof then cuts those units out of both stored requests and compares what is
    left. A playground edit is proved on the units whose values differ when it kept every unit
    in place (``runtime.replay.isolation.edit_diff``); a re-page is measured, not proved.
    None: a side is not a JSON object."""
    data_a, data_b = parse_request(original), parse_request(child)
    if data_a is None or data_b is None:
        return None
    if change.kind in (ChangeKind.NONE, ChangeKind.PROVIDER):
        return byte_diff(data_a, data_b, (), "both")
    if change.kind in _ON_THE_JSON:
        try:
            applied = apply_change(data_a, change)
        except Llm386Error:  # the original no longer takes the change: measure only
            return byte_diff(data_a, data_b, (), "")
        return byte_diff(data_a, data_b, applied.paths, applied.sides)
    if change.kind is ChangeKind.REQUEST:
        return edit_diff(data_a, data_b)
    return byte_diff(data_a, data_b, (), "")


@dataclass(frozen=True)
class RequestRegion:
    """The bytes around where a child's request differs from its original's, as text."""

    start: int  # the first differing byte
    before: str  # up to REGION_CONTEXT bytes before it (the same on both sides)
    removed: str  # the original's bytes of the region (clipped to REGION_MAX)
    added: str  # the child's
    after: str  # up to REGION_CONTEXT bytes after the region (the same on both sides)
    clipped: bool


def request_region(original: bytes, child: bytes, diff: ByteDiff) -> RequestRegion | None:
    """Return the differing region of two requests with its context (None: the same bytes)."""
    at = diff.first_divergent_byte
    if at is None:
        return None

    def text(raw: bytes) -> str:
        return raw.decode("utf-8", "replace")

    removed, added = original[at : diff.original_end], child[at : diff.child_end]
    return RequestRegion(
        at, text(original[max(0, at - REGION_CONTEXT) : at]), text(removed[:REGION_MAX]),
        text(added[:REGION_MAX]),
        text(original[diff.original_end : diff.original_end + REGION_CONTEXT]),
        max(len(removed), len(added)) > REGION_MAX,
    )  # fmt: skip
