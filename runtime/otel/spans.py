"""Spans as llm386 keeps them: read from protobuf, stored as a trace's tree, shown with timings.

Owns: ``SpanData`` (one span's ids, name, times, status and attributes as plain values),
``span_data`` (from an OTLP ``Span``), the ``otel_spans`` table (``span_row``, ``put_rows``,
``trace_spans``) and ``SpanNode`` / ``span_tree`` (a turn's spans, indented, with durations).

Invariants:
- Rows are keyed ``trace id (16 bytes) span id (8 bytes)``: the same span sent twice is one
  row, and a trace's spans are one prefix scan.
- A row keeps the span's name, parent, kind, times, status and its ``gen_ai.*`` attributes
  apart from message content (that is in the blocks): what the tree shows, never the prompt.
- ``span_tree`` for a turn is its span's ancestors, the span, and the spans that follow it
  under the same parent until the next model call (the tools its answer asked for), each
  with their descendants, in start order (ties by span id): the same tree on every read.
  Parent ids that make a cycle (a span its own ancestor) are cut: each span of the cycle is
  a root, so the tree is finite and holds every span once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.blocks import canonical_json
from runtime.errors import StoreError
from runtime.storage.codec import json_load
from runtime.storage.kv import Engine, Tables

SPANS = "otel_spans"
# What a stored row keeps of the attributes: the prefixes, minus the content keys.
_KEPT = ("gen_ai.", "llm386.")
CONTENT_ATTRIBUTES = (
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.definitions", "gen_ai.prompt", "gen_ai.completion",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result",
)  # fmt: skip


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True)
class SpanData:
    """One span, with its attributes (and its resource's and scope's) as plain values."""

    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    parent_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status: str  # "unset", "ok" or "error"
    status_message: str
    attributes: Mapping[str, Any] = field(hash=False)
    events: tuple[SpanEvent, ...] = ()

    @property
    def key(self) -> str:
        """The span's identity across requests: trace id / span id."""
        return f"{self.trace_id}/{self.span_id}"

    @property
    def duration_ms(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 1e6

    @property
    def operation(self) -> str:
        return str(self.attributes.get("gen_ai.operation.name") or "")

    def row(self) -> dict[str, Any]:
        """Return what the ``otel_spans`` table keeps of this span (no message content)."""
        kept = {k: v for k, v in sorted(self.attributes.items())
                if k.startswith(_KEPT) and not k.startswith(CONTENT_ATTRIBUTES)}  # fmt: skip
        return {"trace": self.trace_id, "span": self.span_id, "parent": self.parent_id,
                "name": self.name, "kind": self.kind, "start": self.start_ns,
                "end": self.end_ns, "status": self.status, "status_message": self.status_message,
                "attributes": kept}  # fmt: skip


_STATUS = {0: "unset", 1: "ok", 2: "error"}


def any_value(value: Any) -> Any:
    """Return an OTLP ``AnyValue`` as a plain value (arrays as lists, kvlists as dicts)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which)


def attributes_of(pairs: Sequence[Any]) -> dict[str, Any]:
    """Return OTLP key-value pairs as a dict (a repeated key: the last one wins, as in the SDK)."""
    return {kv.key: any_value(kv.value) for kv in pairs}


def span_data(span: Any, inherited: Mapping[str, Any]) -> SpanData:
    """Return an OTLP span as ``SpanData``; ``inherited`` are its resource's and scope's."""
    attrs = {**inherited, **attributes_of(span.attributes)}
    events = tuple(
        SpanEvent(e.name, e.time_unix_nano, attributes_of(e.attributes)) for e in span.events
    )
    return SpanData(
        trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex() or None, name=span.name, kind=int(span.kind),
        start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
        status=_STATUS.get(span.status.code, "unset"), status_message=span.status.message,
        attributes=attrs, events=events,
    )  # fmt: skip


# -- the table -------------------------------------------------------------------------------

_ready: weakref.WeakKeyDictionary[Engine, set[str]] = weakref.WeakKeyDictionary()
_ready_lock = threading.Lock()


def ensure_tables(engine: Engine, *names: str) -> None:
    """Make sure ``names`` exist before a read uses them (an engine may create a table only in
    a write: LMDB cannot open a new named database inside a read). Once per engine.

    The write runs without holding this module's lock: a thread inside a write of the engine
    may call this while another waits for that write's lock. Inside a write, nothing is marked
    done (that write may yet roll back, and the table's creation with it)."""
    if engine.readonly:
        return  # a read of a table never written raises StoreError, which callers handle
    with _ready_lock:
        done = _ready.get(engine, set())
        missing = [name for name in names if name not in done]
    if missing:
        ambient = engine.writing()
        engine.write(lambda t: [t.count(name) for name in missing])
        if not ambient:
            with _ready_lock:
                _ready.setdefault(engine, set()).update(missing)


def _key(trace_id: str, span_id: str = "") -> bytes:
    return bytes.fromhex(trace_id) + bytes.fromhex(span_id)


def span_row(span: SpanData) -> tuple[bytes, bytes]:
    """Return the key and the stored row of a span (``put_rows`` writes them)."""
    return _key(span.trace_id, span.span_id), canonical_json(span.row())


def put_rows(t: Tables, rows: Sequence[tuple[bytes, bytes]]) -> None:
    """Store (or replace) span rows made by ``span_row`` in the caller's write."""
    t.put_many(SPANS, list(rows))


def get_span(t: Tables, trace_id: str, span_id: str) -> dict[str, Any] | None:
    """Return the stored row of one span, or None."""
    value = t.get(SPANS, _key(trace_id, span_id))
    return None if value is None else json_load(value)


def trace_spans(t: Tables, trace_id: str) -> list[dict[str, Any]]:
    """Return the stored rows of one trace, in key order."""
    return [json_load(value) for _, value in t.scan(SPANS, _key(trace_id))]


# -- the tree a turn page shows --------------------------------------------------------------


@dataclass(frozen=True)
class SpanNode:
    """One line of a span tree: the span, how deep it sits, and whether it is the turn's."""

    name: str
    span_id: str
    depth: int
    start_ms: float  # after the tree's first span
    duration_ms: float
    operation: str
    status: str
    current: bool


def _order(row: Mapping[str, Any]) -> tuple[int, str]:
    return int(row["start"]), str(row["span"])


def _is_model_call(row: Mapping[str, Any]) -> bool:
    from runtime.otel.genai import MODEL_OPERATIONS

    return str(row["attributes"].get("gen_ai.operation.name", "")) in MODEL_OPERATIONS


def span_tree(rows: Sequence[Mapping[str, Any]], span_id: str) -> list[SpanNode]:
    """Return the tree of the turn whose model call is span ``span_id`` (see the invariants)."""
    by_id = {str(r["span"]): r for r in rows}
    if span_id not in by_id:
        return []
    parents = _parents(by_id)
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for row in sorted(rows, key=_order):
        children.setdefault(parents[str(row["span"])], []).append(row)
    chain = _ancestors(by_id, parents, span_id)
    own = _own_siblings(children.get(parents[span_id], []), span_id)
    picked = chain + [r for r in own for r in _subtree(children, r)]
    origin = min(int(r["start"]) for r in picked)
    return [_node(r, origin, depth, span_id) for r, depth in _depths(picked, parents)]


def _parents(by_id: Mapping[str, Mapping[str, Any]]) -> dict[str, str | None]:
    """Each span's parent in the tree: None when it is not among the rows, or when the span
    is its own ancestor (ids that make a cycle, which no tracer sends: every span of the
    cycle becomes a root, so each span is in the tree once)."""
    parents = {k: (str(r["parent"]) if r["parent"] in by_id else None) for k, r in by_id.items()}
    done: set[str] = set()
    for start in parents:
        path: list[str] = []
        on_path: set[str] = set()
        at: str | None = start
        while at is not None and at not in done and at not in on_path:
            path.append(at)
            on_path.add(at)
            at = parents[at]
        if at is not None and at in on_path:  # the walk came back to ``at``: a cycle from it
            for span in path[path.index(at) :]:
                parents[span] = None
        done.update(path)
    return parents


def _ancestors(
    by_id: Mapping[str, Mapping[str, Any]], parents: Mapping[str, str | None], span_id: str
) -> list[Mapping[str, Any]]:
    chain: list[Mapping[str, Any]] = []
    parent = parents[span_id]
    while parent is not None and len(chain) < 64:
        chain.insert(0, by_id[parent])
        parent = parents[parent]
    return chain


def _own_siblings(siblings: Sequence[Mapping[str, Any]], span_id: str) -> list[Mapping[str, Any]]:
    """Return the turn's span and the siblings after it, up to the next model call."""
    at = next(i for i, r in enumerate(siblings) if r["span"] == span_id)
    out = [siblings[at]]
    for row in siblings[at + 1 :]:
        if _is_model_call(row):
            break
        out.append(row)
    return out


def _subtree(
    children: Mapping[str | None, Sequence[Mapping[str, Any]]], root: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    out, stack = [], [root]
    while stack:
        row = stack.pop()
        out.append(row)
        stack.extend(reversed(children.get(str(row["span"]), ())))
    return out


def _depths(
    picked: Sequence[Mapping[str, Any]], parents: Mapping[str, str | None]
) -> list[tuple[Mapping[str, Any], int]]:
    chosen = {str(r["span"]) for r in picked}
    out = []
    for row in picked:
        depth, parent = 0, parents[str(row["span"])]
        while parent in chosen and depth < 64:
            depth, parent = depth + 1, parents[parent]
        out.append((row, depth))
    return out


def _node(row: Mapping[str, Any], origin: int, depth: int, span_id: str) -> SpanNode:
    start, end = int(row["start"]), int(row["end"])
    return SpanNode(
        name=str(row["name"]), span_id=str(row["span"]), depth=depth,
        start_ms=(start - origin) / 1e6, duration_ms=max(end - start, 0) / 1e6,
        operation=str(row["attributes"].get("gen_ai.operation.name", "")),
        status=str(row["status"]), current=row["span"] == span_id,
    )  # fmt: skip


def turn_span_tree(engine: Engine, config: Mapping[str, Any]) -> list[SpanNode]:
    """Return the span tree of a turn rebuilt from a span (``record.config``), else []."""
    otlp = config.get("otlp")
    if not isinstance(otlp, Mapping) or not isinstance(otlp.get("trace"), str):
        return []
    ensure_tables(engine, SPANS)
    try:
        rows = engine.read(lambda t: trace_spans(t, str(otlp["trace"])))
    except StoreError:
        return []  # a read-only store that never took spans
    return span_tree(rows, str(otlp.get("span", "")))
