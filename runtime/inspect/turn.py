"""One turn as the model saw it: its sections, the blocks packed and left out, and neighbours.

Owns: ``PlanEntry`` (one candidate of a plan, read tolerantly), ``SectionView`` (a section's
budget, use and counts), ``TurnView`` (everything the turn page shows above the fold) and the
paging of a section's blocks and of the omitted candidates.

Invariants:
- Everything is read from the stored record and its stored bytes; nothing is recomputed with
  today's pager, so the page shows what was decided then.
- Plan entries keep plan order (the pager's deterministic order) and their position in it, so
  a page of a section is a stable slice and a permalink to it stays valid.
- Token figures that come from a local tokenizer are labelled with it; the provider's count is
  reported beside them when the response carried usage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from runtime.blocks import Block
from runtime.errors import BlockNotFound, InvalidBlock, InvalidInput
from runtime.inspect.timeline import (
    TurnSummary,
    priced_input,
    section_rank,
    section_tokens,
    summarize_record,
)
from runtime.pager.sections import Section
from runtime.providers.pricing import Price
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceRecord, TraceStore


@dataclass(frozen=True)
class PlanEntry:
    """One candidate in a plan: where it is, what it is, and why it was (not) packed."""

    position: int  # index in the plan's "selected" or "omitted" list
    block_id: str
    seq: int | None
    kind: str
    section: str
    reason: str
    score: float | None
    scores: tuple[tuple[str, float], ...]  # per retriever, by retriever name
    tokens: int
    selected: bool


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _entry(position: int, raw: Any, selected: bool) -> PlanEntry:
    item = raw if isinstance(raw, Mapping) else {"block_id": raw}
    scores = item.get("scores")
    pairs = scores.items() if isinstance(scores, Mapping) else ()
    seq = item.get("seq")
    tokens = item.get("tokens")
    return PlanEntry(
        position=position, block_id=str(item.get("block_id") or item.get("id") or ""),
        seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        kind=str(item.get("kind") or ""), section=str(item.get("section") or ""),
        reason=str(item.get("reason") or ""), score=_number(item.get("score")),
        scores=tuple(sorted((str(k), v) for k, raw_v in pairs if (v := _number(raw_v)) is not None)),
        tokens=tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0,
        selected=selected,
    )  # fmt: skip


def plan_entries(plan: Mapping[str, Any], *, selected: bool) -> list[PlanEntry]:
    """Return every selected (or omitted) entry of a plan, in plan order."""
    raw = plan.get("selected" if selected else "omitted")
    return [
        _entry(i, item, selected) for i, item in enumerate(raw if isinstance(raw, list) else ())
    ]


SECTION_NAMES = frozenset(s.value for s in Section)  # names safe in URLs, ids and selectors


@dataclass(frozen=True)
class SectionView:
    """A section of one turn: its budget, what it used, and how many blocks were in and out."""

    section: str
    allocated: int | None
    used: int
    blocks: int
    omitted: int
    omitted_tokens: int

    @property
    def fill(self) -> float | None:
        """Used over allocated (may exceed 1 for a required section), None without a budget."""
        return self.used / self.allocated if self.allocated else None

    @property
    def known(self) -> bool:
        """Whether the name is a ``Section``: only then may it go into a URL, id or selector."""
        return self.section in SECTION_NAMES


def _section_sums(plan: Mapping[str, Any], *, selected: bool) -> dict[str, tuple[int, int]]:
    """Return {section: (entries, tokens)} of the plan's selected (or omitted) list, read as
    ``plan_entries`` reads each entry but building none (a big turn has thousands)."""
    raw = plan.get("selected" if selected else "omitted")
    sums: dict[str, tuple[int, int]] = {}
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, Mapping):
            section, tokens = str(item.get("section") or ""), item.get("tokens")
            tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0
        else:
            section, tokens = "", 0
        count, total = sums.get(section, (0, 0))
        sums[section] = (count + 1, total + tokens)
    return sums


def section_views(plan: Mapping[str, Any]) -> tuple[SectionView, ...]:
    """Return every section named by the plan's totals or entries, in canonical order."""
    totals = {s.section: s for s in section_tokens(plan)}
    chosen, left = _section_sums(plan, selected=True), _section_sums(plan, selected=False)
    views = []
    for name in sorted(set(totals) | set(chosen) | set(left), key=section_rank):
        total = totals.get(name)
        blocks, used = chosen.get(name, (0, 0))
        out, out_tokens = left.get(name, (0, 0))
        views.append(
            SectionView(
                name,
                total.allocated if total else None,
                total.used if total else used,
                blocks,
                out,
                out_tokens,
            )
        )
    return tuple(views)


@dataclass(frozen=True)
class EntryPage:
    """A window of a section's (or the omitted list's) entries."""

    entries: tuple[PlanEntry, ...]
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + self.limit
        return end if end < self.total else None

    @property
    def prev_offset(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset else None

    @property
    def range_text(self) -> str:
        if not self.entries:
            return f"none of {self.total}"
        return f"{self.offset + 1}–{self.offset + len(self.entries)} of {self.total}"


def entry_page(
    plan: Mapping[str, Any], *, selected: bool, section: str | None, offset: int, limit: int
) -> EntryPage:
    """Return entries ``offset`` to ``offset + limit`` of one section (or of all sections)."""
    if offset < 0 or limit < 1:
        raise InvalidInput("offset must be 0 or more and limit 1 or more")
    entries = plan_entries(plan, selected=selected)
    if section is not None:
        entries = [e for e in entries if e.section == section]
    return EntryPage(tuple(entries[offset : offset + limit]), len(entries), offset, limit)


@dataclass(frozen=True)
class CostView:
    """Estimated input cost of one call at list price (output is not priced yet)."""

    usd: float
    price: Price
    from_usage: bool  # priced from the provider's token counts (else from the local estimate)


def input_cost(summary: TurnSummary) -> CostView | None:
    """Price the call's input at its model's list price (``timeline.priced_input``)."""
    priced = priced_input(summary)
    return None if priced is None else CostView(*priced, not summary.input_estimated)


def without_plan(rec: TraceRecord) -> TraceRecord:
    """Return ``rec`` with its plan (and nothing else) left out: what a page header needs.

    A 5,000-block plan is megabytes of dicts; pages keep only the window they show.
    """
    return replace(rec, plan={})


@dataclass(frozen=True)
class TurnView:
    record: TraceRecord  # without its plan (see ``without_plan``); the plan is summarized below
    summary: TurnSummary
    sections: tuple[SectionView, ...]
    selected: int
    omitted: int
    previous: str | None  # call id of the previous turn (its original record)
    next: str | None
    replays: tuple[TurnSummary, ...]  # records replaying this one, oldest first
    cost: CostView | None
    note: str  # the plan's own note, if it has one

    @property
    def replay_count(self) -> int:
        """Records that sent this turn again (re-pages are recorded, not sent: not counted)."""
        return sum(1 for r in self.replays if r.kind != "repage")

    @property
    def used_total(self) -> int:
        """Tokens used by every section (the plan's local count of the whole input)."""
        return sum(s.used for s in self.sections)


def neighbours(traces: TraceStore, rec: TraceRecord) -> tuple[str | None, str | None]:
    """Return the call ids of the turns before and after ``rec``'s turn in its session."""
    before, after = traces.adjacent_turns(rec.session, rec.turn)
    return (before[1].head if before else None), (after[1].head if after else None)


def replays_of(traces: TraceStore, rec: TraceRecord) -> tuple[TurnSummary, ...]:
    """Return the records that replayed ``rec``, oldest first (read from its turn only)."""
    ids = [cid for cid in traces.turn_call_ids(rec.session, rec.turn) if cid != rec.call_id]
    return tuple(summarize_record(r) for r in traces.get_many(ids)
                 if r.parent_call_id == rec.call_id)  # fmt: skip


def _listed(plan: Mapping[str, Any], key: str) -> int:
    raw = plan.get(key)
    return len(raw) if isinstance(raw, list) else 0


def turn_view(traces: TraceStore, call_id: str) -> TurnView:
    """Return the turn page's model of the record ``call_id`` (full id or unique prefix)."""
    rec = traces.get(call_id)
    summary = summarize_record(rec)
    previous, following = neighbours(traces, rec)
    sections = section_views(rec.plan)
    note = rec.plan.get("note")
    return TurnView(
        record=without_plan(rec), summary=summary, sections=sections,
        selected=_listed(rec.plan, "selected"), omitted=_listed(rec.plan, "omitted"),
        previous=previous, next=following,
        replays=replays_of(traces, rec), cost=input_cost(summary),
        note=note if isinstance(note, str) else "",
    )  # fmt: skip


@dataclass(frozen=True)
class EntryBlock:
    """A plan entry with its stored block (None: the block was deleted since)."""

    entry: PlanEntry
    block: Block | None


def blocks_by_id(store: BlockStore, ids: Sequence[str]) -> dict[str, Block]:
    """Return the stored blocks among ``ids`` by id (deleted ones are simply absent)."""
    unique = list(dict.fromkeys(ids))
    try:
        return {b.id: b for b in store.get_many(unique)}
    except (BlockNotFound, InvalidBlock):
        present = [bid for bid in unique if store.has(bid)]
        return {b.id: b for b in store.get_many(present)}


def with_blocks(store: BlockStore, entries: Sequence[PlanEntry]) -> list[EntryBlock]:
    """Pair each entry with its block; a block deleted since pairs with None."""
    found = blocks_by_id(store, [e.block_id for e in entries])
    return [EntryBlock(e, found.get(e.block_id)) for e in entries]
