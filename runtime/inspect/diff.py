"""Diff of two trace records: blocks, reasons, scores, tokens, request text and the prompt cache.

Owns: ``diff_traces`` and ``diff_plans`` and their render-agnostic results (the web and the CLI
render them); ``compare_cache`` (why a prompt cache hit or missed).

Invariants:
- Pure functions of the two records and their stored request bytes; nothing is written.
- Block lists keep plan order (the pager's order is deterministic), so equal inputs give equal
  diffs. A block the plan lists twice (a repeated message) is compared per occurrence.
- The cache verdict and its byte offsets use the order the provider's cache reads a request
  in (model, tools, system, messages), not the stored JSON's sorted-key order: offsets count
  the canonical JSON of each cache unit in that order, so "prefix kept" and "the divergence is
  before the breakpoint" can never both be said. The raw first divergent byte of the stored
  bytes is reported beside them (the context excerpts are taken around it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from runtime.errors import StoreCorrupted
from runtime.inspect.request import CacheUnit, RequestView, cache_units, view_request
from runtime.inspect.textdiff import TextDiff, common_prefix, diff_views
from runtime.pager.collector import collector_paused
from runtime.pager.sections import Section
from runtime.providers import get_provider
from runtime.tracing.records import TraceRecord, TraceStore, json_ready

SECTION_ORDER = tuple(section.value for section in Section)  # the canonical render order


@dataclass(frozen=True)
class PlanItem:
    """One candidate of a plan as the diff reads it (the pager's plan JSON, read tolerantly)."""

    block_id: str
    selected: bool
    section: str = ""
    reason: str = ""
    score: float | None = None
    tokens: int = 0
    kind: str = ""
    scores: tuple[tuple[str, float], ...] = ()  # per retriever, sorted by name
    via: str | None = None  # the block that brought it in (or made it redundant), if any


@dataclass(frozen=True)
class BlockChange:
    """A block in either plan: ``a``/``b`` is its item there (None: not selected there)."""

    block_id: str
    a: PlanItem | None
    b: PlanItem | None
    omitted_a: PlanItem | None = None  # why an added block was left out of A, if it was
    omitted_b: PlanItem | None = None  # why a removed block was left out of B

    @property
    def reason_changed(self) -> bool:
        return self.a is not None and self.b is not None and self.a.reason != self.b.reason

    @property
    def score_changed(self) -> bool:
        return self.a is not None and self.b is not None and self.a.score != self.b.score


@dataclass(frozen=True)
class SectionDelta:
    section: str
    allocated_a: int | None
    allocated_b: int | None
    used_a: int
    used_b: int

    @property
    def delta(self) -> int:
        return self.used_b - self.used_a


@dataclass(frozen=True)
class PlanDiff:
    added: tuple[BlockChange, ...]
    removed: tuple[BlockChange, ...]
    kept: tuple[BlockChange, ...]
    sections: tuple[SectionDelta, ...]
    tokens_a: int
    tokens_b: int

    @property
    def token_delta(self) -> int:
        return self.tokens_b - self.tokens_a

    def summary(self) -> str:
        changed = sum(c.reason_changed for c in self.kept)
        return f"+{len(self.added)} -{len(self.removed)} ~{changed} ({self.token_delta:+} tokens)"


class CacheVerdict(StrEnum):
    IDENTICAL = "identical"  # byte for byte the same request
    PREFIX_KEPT = "prefix-kept"  # changes only after A's last breakpoint: B can read the cache
    PREFIX_CHANGED = "prefix-changed"  # a change before the breakpoint: the cache misses there
    NO_BREAKPOINT = "no-breakpoint"  # A marks no cache_control breakpoint
    # OpenAI caches request prefixes of 1,024+ tokens by itself, with no markers: what B can
    # reuse is the prefix up to the first differing byte (set by diff_traces, which knows it)
    AUTOMATIC_PREFIX = "automatic-prefix"


@dataclass(frozen=True)
class CacheComparison:
    verdict: CacheVerdict
    size_a: int
    size_b: int
    first_divergent_byte: int | None  # in the stored bytes (sorted keys); None when identical
    context_a: str  # up to 40 bytes either side of it, decoded leniently
    context_b: str
    cached_prefix_bytes: int | None  # cache order: A's bytes to the end of its last breakpoint
    first_divergent_unit: str | None  # e.g. "system[0]", "messages[3].content[1]"
    breakpoint_unit: str | None  # A's last breakpoint, same naming
    units_kept: int  # units in cache order equal in both before the first difference
    # Cache order (each unit's canonical JSON, model, tools, system, messages): the first
    # byte that differs; None when identical or when the bytes are not a JSON request.
    cache_divergent_byte: int | None = None
    cache_size_a: int = 0  # A's bytes in cache order
    breakpoint_index: int | None = None  # A's last breakpoint unit, in cache order

    @property
    def shared_prefix_bytes(self) -> int:
        """Bytes A and B share from the start: what an automatic prefix cache could reuse."""
        if self.cache_divergent_byte is not None:
            return self.cache_divergent_byte
        if self.first_divergent_byte is None:
            return self.cache_size_a or self.size_a
        return self.first_divergent_byte

    @property
    def diverges_before_breakpoint(self) -> bool | None:
        """Whether B first differs inside A's cached prefix (cache order: the verdict's own)."""
        if self.first_divergent_byte is None or self.breakpoint_index is None:
            return None
        return self.units_kept <= self.breakpoint_index


@dataclass(frozen=True)
class TraceDiff:
    a: TraceRecord
    b: TraceRecord
    plan: PlanDiff
    text: TextDiff
    cache: CacheComparison
    view_a: RequestView
    view_b: RequestView

    def to_json(self) -> dict[str, Any]:
        """Return the diff as JSON-ready data (the parsed requests left out)."""
        plan = json_ready(self.plan) | {"token_delta": self.plan.token_delta}
        return {
            "a": self.a.call_id,
            "b": self.b.call_id,
            "summary": self.plan.summary(),
            "plan": plan,
            "text": json_ready(self.text),
            "cache": json_ready(self.cache),
            "estimated_input_delta": self.estimated_input_delta,
        }

    @property
    def estimated_input_delta(self) -> int | None:
        if self.a.estimated_input_tokens is None or self.b.estimated_input_tokens is None:
            return None
        return self.b.estimated_input_tokens - self.a.estimated_input_tokens


# -- plans ----------------------------------------------------------------------------------------


def plan_items(plan: Mapping[str, Any], key: str) -> list[PlanItem]:
    """Read ``plan[key]`` ("selected" or "omitted"); entries may be ids or objects."""
    out = []
    for raw in plan.get(key) or ():
        item = raw if isinstance(raw, Mapping) else {"block_id": raw}
        scores = item.get("scores")
        scores = scores if isinstance(scores, Mapping) else {}
        out.append(
            PlanItem(
                block_id=str(item.get("block_id") or item.get("id") or ""),
                selected=key == "selected",
                section=str(item.get("section") or ""),
                reason=str(item.get("reason") or ""),
                score=_number(item.get("score")),
                tokens=int(item.get("tokens") or 0),
                kind=str(item.get("kind") or ""),
                scores=tuple(sorted((str(k), float(v)) for k, v in scores.items())),
                via=str(item["via"]) if item.get("via") else None,
            )
        )
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _keyed(items: Sequence[PlanItem]) -> dict[tuple[str, int], PlanItem]:
    """Key each item by (block id, occurrence) so a block listed twice is two entries."""
    seen: dict[str, int] = {}
    out = {}
    for item in items:
        n = seen.get(item.block_id, 0)
        seen[item.block_id] = n + 1
        out[(item.block_id, n)] = item
    return out


def diff_plans(plan_a: Mapping[str, Any], plan_b: Mapping[str, Any]) -> PlanDiff:
    """Return blocks added, removed and kept between two plans, and per-section token deltas."""
    sel_a, sel_b = _keyed(plan_items(plan_a, "selected")), _keyed(plan_items(plan_b, "selected"))
    omit_a = {i.block_id: i for i in plan_items(plan_a, "omitted")}
    omit_b = {i.block_id: i for i in plan_items(plan_b, "omitted")}
    added = [BlockChange(k[0], None, i, omitted_a=omit_a.get(k[0]))
             for k, i in sel_b.items() if k not in sel_a]  # fmt: skip
    removed = [BlockChange(k[0], i, None, omitted_b=omit_b.get(k[0]))
               for k, i in sel_a.items() if k not in sel_b]  # fmt: skip
    kept = [BlockChange(k[0], sel_a[k], i) for k, i in sel_b.items() if k in sel_a]
    tokens_a = _plan_tokens(plan_a, sel_a.values())
    tokens_b = _plan_tokens(plan_b, sel_b.values())
    sections = _section_deltas(plan_a, plan_b, sel_a.values(), sel_b.values())
    return PlanDiff(tuple(added), tuple(removed), tuple(kept), sections, tokens_a, tokens_b)


def _plan_tokens(plan: Mapping[str, Any], selected: Any) -> int:
    tokens = plan.get("tokens")
    return int(tokens) if isinstance(tokens, int) else sum(item.tokens for item in selected)


def _sections(plan: Mapping[str, Any], selected: Any) -> dict[str, tuple[int | None, int]]:
    """Return section -> (allocated, used) from the plan, or summed from its selected blocks."""
    raw = plan.get("sections")
    rows: Any = ()
    if isinstance(raw, Mapping):
        rows = raw.items()
    elif isinstance(raw, list):
        rows = [(None, row) for row in raw]
    out: dict[str, tuple[int | None, int]] = {}
    for name, row in rows:
        if isinstance(row, Mapping):
            allocated = row.get("allocated")
            out[str(name or row.get("section"))] = (
                allocated if isinstance(allocated, int) else None, int(row.get("used") or 0)
            )  # fmt: skip
    if not out:
        for item in selected:
            _, used = out.get(item.section, (None, 0))
            out[item.section] = (None, used + item.tokens)
    return out


def _section_key(name: str) -> tuple[int, str]:
    return (
        (SECTION_ORDER.index(name), name) if name in SECTION_ORDER else (len(SECTION_ORDER), name)
    )


def _section_deltas(
    plan_a: Mapping[str, Any], plan_b: Mapping[str, Any], sel_a: Any, sel_b: Any
) -> tuple[SectionDelta, ...]:
    a, b = _sections(plan_a, sel_a), _sections(plan_b, sel_b)
    names = sorted(set(a) | set(b), key=_section_key)
    return tuple(
        SectionDelta(n, a.get(n, (None, 0))[0], b.get(n, (None, 0))[0],
                     a.get(n, (None, 0))[1], b.get(n, (None, 0))[1])
        for n in names
    )  # fmt: skip


# -- the prompt cache -------------------------------------------------------------------------


def first_divergence(a: bytes, b: bytes) -> int | None:
    """Return the first index where ``a`` and ``b`` differ (None when equal)."""
    if a == b:
        return None
    lo, hi = 0, min(len(a), len(b))
    step = 1 << 16
    while lo + step <= hi and a[lo : lo + step] == b[lo : lo + step]:
        lo += step  # skip equal 64 KiB chunks, then binary search the one that differs
    return common_prefix(a, b, lo, min(hi, lo + step))


def _context(raw: bytes, at: int) -> str:
    return raw[max(0, at - 40) : at + 40].decode("utf-8", "replace")


def _unit_bytes(unit: CacheUnit) -> bytes:
    # canonical_json refuses NaN and lone surrogates; stored requests are untrusted and json.loads
    # accepts both (a lone surrogate counts 3 bytes here, as it would as UTF-8 text).
    return json.dumps(unit.value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")  # fmt: skip


def cache_offsets(
    units_a: Sequence[CacheUnit], units_b: Sequence[CacheUnit], kept: int, last: int | None
) -> tuple[int | None, int | None, int]:
    """Return, in cache order, the first byte where B differs from A (None if no unit
    differs), the end of A's last breakpoint unit (None without one) and A's size."""
    sizes = [len(_unit_bytes(u)) for u in units_a]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    at = None
    if kept < max(len(units_a), len(units_b)):
        a = _unit_bytes(units_a[kept]) if kept < len(units_a) else b""
        b = _unit_bytes(units_b[kept]) if kept < len(units_b) else b""
        within = first_divergence(a, b)
        at = starts[kept] + (within if within is not None else 0)
    return at, None if last is None else starts[last + 1], starts[-1]


def compare_cache(raw_a: bytes, raw_b: bytes, data_a: Any, data_b: Any) -> CacheComparison:
    """Return where B first differs from A, and whether that keeps A's cached prefix."""
    at = first_divergence(raw_a, raw_b)
    units_a, units_b = cache_units(data_a), cache_units(data_b)
    kept = 0
    while kept < min(len(units_a), len(units_b)) and units_a[kept].value == units_b[kept].value:
        kept += 1
    breakpoints = [i for i, unit in enumerate(units_a) if unit.breakpoint]
    last = breakpoints[-1] if breakpoints else None
    if at is None:
        verdict = CacheVerdict.IDENTICAL
    elif last is None:
        verdict = CacheVerdict.NO_BREAKPOINT
    else:
        verdict = CacheVerdict.PREFIX_KEPT if kept > last else CacheVerdict.PREFIX_CHANGED
    differs = (
        units_a[kept] if kept < len(units_a) else (units_b[kept] if kept < len(units_b) else None)
    )
    cache_at, prefix, cache_size = cache_offsets(units_a, units_b, kept, last)
    return CacheComparison(
        verdict=verdict, size_a=len(raw_a), size_b=len(raw_b), first_divergent_byte=at,
        context_a=_context(raw_a, at) if at is not None else "",
        context_b=_context(raw_b, at) if at is not None else "",
        cached_prefix_bytes=prefix,
        first_divergent_unit=differs.path if differs and at is not None else None,
        breakpoint_unit=units_a[last].path if last is not None else None, units_kept=kept,
        cache_divergent_byte=cache_at if at is not None else None, cache_size_a=cache_size,
        breakpoint_index=last,
    )  # fmt: skip


# -- two records ------------------------------------------------------------------------------


def diff_requests(
    raw_a: bytes, raw_b: bytes, *, context: int = 3, max_lines: int = 5000
) -> tuple[TextDiff, CacheComparison, RequestView, RequestView]:
    """Return the text diff and the cache comparison of two request byte strings.

    The cyclic collector is paused: parsing 1 MB of JSON makes enough objects to trigger full
    collections mid-diff (measured: 14 ms typical, 120+ ms with a collection)."""
    with collector_paused():
        view_a, view_b = view_request(raw_a), view_request(raw_b)
        text = diff_views(view_a, view_b, context=context, max_lines=max_lines)
        return text, compare_cache(raw_a, raw_b, view_a.data, view_b.data), view_a, view_b


def diff_traces(
    a: TraceRecord, b: TraceRecord, raw_a: bytes, raw_b: bytes, *, context: int = 3,
    max_lines: int = 5000,
) -> TraceDiff:  # fmt: skip
    """Return the full diff of two records given their stored request bytes."""
    text, cache, view_a, view_b = diff_requests(raw_a, raw_b, context=context, max_lines=max_lines)
    if (
        get_provider(a.provider).caches_automatically
        and cache.verdict is CacheVerdict.NO_BREAKPOINT
    ):
        cache = replace(cache, verdict=CacheVerdict.AUTOMATIC_PREFIX)
    return TraceDiff(a, b, diff_plans(a.plan, b.plan), text, cache, view_a, view_b)


def diff_stored(traces: TraceStore, call_a: str, call_b: str, **options: int) -> TraceDiff:
    """Return the diff of two stored records (full call ids or unique prefixes)."""
    a, b = traces.get_many([call_a, call_b])
    raw = []
    for record in (a, b):
        stored = traces.request_bytes(record.prompt_hash)
        if stored is None:
            raise StoreCorrupted(
                f"trace {record.call_id} has no stored request bytes; run `llm386 verify`"
            )
        raw.append(stored)
    return diff_traces(a, b, raw[0], raw[1], **options)
