"""Demand paging inside the pager: placeholders and stubs in the plan, and the turn's accounting.

Owns: ``DemandPaging`` (the option on a page: the eviction policy and the fault pins it must
respect, recorded in the plan's settings under ``paging``), ``page_with_paging`` (the pager's
plan with stale results, duplicates and tool schemas replaced by placeholders and stubs, and,
under budget pressure, placeholders rather than dropped conversation), and ``paged_turn`` (the
``paging.PagedTurn`` of a plan: evictions, tokens by category against full history, for the
trace's paging slot and for fault detection).

Invariants:
- Off unless asked for: ``pager.page`` never pages on demand, so plans and prompt hashes made
  without this option (imports, earlier records) re-page exactly as before. A plan made with
  it records the option (config, pins, fault counts) in ``settings["paging"]``; ``repage``
  reads it back, so those re-page exactly too, whatever faults came later.
- Deterministic: the pager's plan, ``eviction.plan_eviction`` (pure) and total orders (plan
  order for full re-adds, seq descending for placeholders).
- Never bigger: stand-ins are used only when they save more than the recall tool costs.
- The budget holds: the plan's tokens only fall when a block becomes its stand-in; blocks are
  added back (in full, or as a placeholder) only while the total stays within the input budget
  minus Slack, with the recall tool (and the Tools header, if it opens the section) charged.
- Tool pairs stay whole: a tool result and its call are added together; an evicted result stays
  a tool result for its call (only its content is the placeholder); calls are never evicted.
- Pinned-by-fault blocks are pinned in the page request (so the pager takes them first) and
  never replaced by a placeholder. Error results never become placeholders.
- Content is sent at least once: a duplicate's stand-in (which points to an earlier copy) is
  used only while that copy is in the plan; a copy whose original the pager left out goes in
  full.
- Every candidate stays in the plan exactly once: a block added back moves from ``omitted`` to
  ``selected`` (reason ``room-freed`` or ``placeholder``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from runtime.blocks import BlockKind, Entry
from runtime.packer.rendering import CONVERSATION_KINDS, block_costs, header_costs
from runtime.pager.core import PageRequest, page
from runtime.pager.plan import (
    Omission,
    OmissionReason,
    PagePlan,
    SectionUsage,
    Selection,
    SelectionReason,
    StandIn,
    omission_key,
    selection_key,
)
from runtime.pager.sections import Section
from runtime.paging.accounting import TokenCounter, categorize
from runtime.paging.eviction import (
    Eviction,
    EvictionConfig,
    EvictionPlan,
    EvictionReason,
    History,
    Pins,
    plan_eviction,
    pressure_placeholder,
)
from runtime.paging.faults import PagingState
from runtime.paging.history import call_key, schema_name
from runtime.paging.placeholders import StubStyle, recall_tool_json
from runtime.paging.turn import PagedTurn, assemble_turn, waste_config
from runtime.storage.interface import BlockStore
from runtime.tokenizers import Tokenizer, get_tokenizer

SETTINGS_KEY = "paging"
_BUDGET_REASONS = (OmissionReason.GLOBAL_BUDGET, OmissionReason.SECTION_BUDGET)


@dataclass(frozen=True)
class DemandPaging:
    """Demand paging for one page: the policy, and what fault history protects at this turn."""

    config: EvictionConfig = field(default_factory=EvictionConfig)
    pinned: tuple[str, ...] = ()  # block ids pinned by faults (sorted)
    faults: tuple[tuple[str, int], ...] = ()  # (block id, fault count): refault backoff
    placeholders: bool = True  # under budget pressure, placeholders rather than dropping

    @classmethod
    def from_state(
        cls, state: PagingState, user_turn: int, config: EvictionConfig | None = None
    ) -> DemandPaging:
        """Return the option for a session whose fault history is ``state``, at ``user_turn``."""
        pins = state.pins(user_turn)
        counts = tuple(sorted(pins.faults.items()))
        return cls(config or EvictionConfig(), tuple(sorted(pins.pinned)), counts)

    def pins(self) -> Pins:
        return Pins(frozenset(self.pinned), dict(self.faults))

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_json(), "pinned": list(self.pinned),
            "faults": [list(f) for f in self.faults], "placeholders": self.placeholders,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DemandPaging:
        return cls(
            EvictionConfig.from_json(data.get("config", {})),
            tuple(str(b) for b in data.get("pinned", ())),
            tuple((str(b), int(n)) for b, n in data.get("faults", ())),
            bool(data.get("placeholders", True)),
        )


def recorded_paging(settings: Mapping[str, Any]) -> DemandPaging | None:
    """Return the demand-paging option a plan's settings record, or None (paged without it)."""
    data = settings.get(SETTINGS_KEY)
    return None if not isinstance(data, Mapping) else DemandPaging.from_json(data)


def page_with_paging(store: BlockStore, request: PageRequest, paging: DemandPaging) -> PagePlan:
    """Return the pager's plan for ``request`` with demand paging applied (see module docs)."""
    pinned = request.pinned + tuple(b for b in paging.pinned if b not in request.pinned)
    plan = page(store, replace(request, pinned=pinned))
    entries = session_entries(store, plan)
    tokenizer = get_tokenizer(plan.profile.tokenizer)
    history = History.of(entries)
    evictions = plan_eviction(entries, paging.config, TokenCounter(tokenizer), paging.pins())
    builder = _Builder(plan, tokenizer, history, evictions, paging)
    return builder.build()


def session_entries(store: BlockStore, plan: PagePlan) -> list[Entry]:
    """Return the session's entries as the plan saw them (seq < upto)."""
    return [e for e in store.entries(plan.session) if e.seq < plan.upto]


class _Builder:
    """Turns a pager plan into a demand-paged one (one use)."""

    def __init__(
        self, plan: PagePlan, tokenizer: Tokenizer, history: History, evictions: EvictionPlan,
        paging: DemandPaging,
    ) -> None:  # fmt: skip
        self.plan, self.tokenizer, self.history, self.paging = plan, tokenizer, history, paging
        self.evictions = {e.seq: e for e in evictions.evictions}
        self.entries = {e.seq: e for e in history.entries}
        self.calls = {call: result for result, call in history.answers.items()}
        self.selected: dict[tuple[int, str], Selection] = {}
        self.planned = frozenset(s.candidate.block_id for s in plan.selected)
        self.used = {u.section: u.used for u in plan.sections}
        self.total = plan.tokens
        slack = plan.usage(Section.SLACK).allocated or 0
        self.limit = plan.budget - slack

    def build(self) -> PagePlan:
        paged = [self._stand_in(s) for s in self.plan.selected]
        saved = sum(s.candidate.tokens - p.candidate.tokens for s, p in zip(
            self.plan.selected, paged, strict=True))  # fmt: skip
        if self.paging.config.recall and saved <= self._recall_cost():
            paged = list(self.plan.selected)  # paging out would cost more than it saves
        for s, p in zip(self.plan.selected, paged, strict=True):
            self._charge(s.candidate.section, p.candidate.tokens - s.candidate.tokens)
            self.selected[_key(p)] = p
        if self._offers_recall():
            self._charge(Section.TOOLS, self._recall_cost())
        omitted = list(self.plan.omitted)
        if self.paging.placeholders:
            omitted = self._add_back(omitted)
        return self._plan(omitted, self._offers_recall())

    # -- stand-ins -------------------------------------------------------------------------
    def _stand_in(self, s: Selection) -> Selection:
        c = s.candidate
        ev = self.evictions.get(c.seq) if c.seq is not None else None
        if ev is None or c.block_id != ev.block_id:
            return s
        if not self._original_sent(ev, self.planned):
            return s  # the pager left the original out: this copy is the only one sent
        return self._stand_in_for(s, ev)

    @staticmethod
    def _original_sent(ev: Eviction, sent: Collection[str]) -> bool:
        """Whether a duplicate's original is in the request (always true for other stand-ins)."""
        return ev.reason is not EvictionReason.DUPLICATE or ev.original_id in sent

    def _cost(self, kind: BlockKind, body: str) -> int:
        return self.plan.render.pick(*block_costs(self.tokenizer, kind, body))

    def _recall_cost(self) -> int:
        unit = self._cost(BlockKind.TOOL_SCHEMA, recall_tool_json().decode())
        opens = self.used.get(Section.TOOLS, 0) == 0
        return unit + (self.plan.render.pick(*header_costs(self.tokenizer, Section.TOOLS)) if
                       opens else 0)  # fmt: skip

    def _charge(self, section: Section, tokens: int) -> None:
        self.used[section] = self.used.get(section, 0) + tokens
        self.total += tokens

    def _offers_recall(self) -> bool:
        return self.paging.config.recall and any(s.stand_in for s in self.selected.values())

    # -- adding back what the budget dropped ------------------------------------------------
    def _add_back(self, omitted: list[Omission]) -> list[Omission]:
        units = self._units([o for o in omitted if o.reason in _BUDGET_REASONS])
        done: set[int] = set()  # membership only
        for unit in units:  # in full (or as their ordinary stand-ins), in plan order
            if self._fits(unit, placeholder=False):
                self._add(unit, SelectionReason.ROOM_FREED, placeholder=False)
                done.update(_seqs(unit))
        # Then placeholders rather than nothing, newest first.
        for unit in sorted(units, key=lambda u: -max(_seqs(u))):
            if not done.intersection(_seqs(unit)) and self._fits(unit, placeholder=True):
                self._add(unit, SelectionReason.PLACEHOLDER, placeholder=True)
                done.update(_seqs(unit))
        return [o for o in omitted if o.candidate.seq is None or o.candidate.seq not in done]

    def _units(self, omitted: Sequence[Omission]) -> list[list[Omission]]:
        """Return conversation omissions grouped with their tool partner, in plan order."""
        by_seq = {o.candidate.seq: o for o in omitted if o.candidate.seq is not None}
        units: list[list[Omission]] = []
        seen: set[int] = set()  # membership only
        for o in omitted:
            seq = o.candidate.seq
            if seq is None or seq in seen or o.candidate.kind not in CONVERSATION_KINDS:
                continue
            partner = self._partner(seq, o.candidate.kind)
            if partner == -1 or (partner is not None and partner not in by_seq):
                continue  # a tool block whose partner cannot come with it
            unit = (
                [o]
                if partner is None
                else sorted([o, by_seq[partner]], key=lambda x: x.candidate.seq or 0)
            )
            seen.update(_seqs(unit))
            units.append(unit)
        return units

    def _partner(self, seq: int, kind: BlockKind) -> int | None:
        if kind is BlockKind.TOOL_RESULT:
            return self.history.answers.get(seq, -1)
        if kind is BlockKind.TOOL_CALL:
            return self.calls.get(seq, -1)
        return None

    def _paged(self, o: Omission, placeholder: bool) -> Selection | None:
        c = o.candidate
        entry = self.entries.get(c.seq) if c.seq is not None else None
        ev: Eviction | None = self.evictions.get(c.seq) if c.seq is not None else None
        if ev is not None and not self._original_sent(ev, self._sent()):
            ev = None
        if placeholder and entry is not None and c.block_id not in self.paging.pinned:
            config = self.paging.config
            ev = ev or pressure_placeholder(self.history, entry, config, self.tokenizer.count)
        if placeholder and ev is None and c.kind is not BlockKind.TOOL_CALL:
            return None  # it has no placeholder: a placeholder unit cannot carry it
        plain = Selection(c, SelectionReason.ROOM_FREED)
        return plain if ev is None else self._stand_in_for(plain, ev)

    def _sent(self) -> frozenset[str]:
        return frozenset(s.candidate.block_id for s in self.selected.values())

    def _stand_in_for(self, s: Selection, ev: Eviction) -> Selection:
        c = s.candidate
        cost = self._cost(c.kind, ev.body)
        if cost >= c.tokens:
            return s
        stand_in = StandIn(ev.reason.value, ev.body, ev.placeholder, c.tokens)
        return replace(s, candidate=replace(c, tokens=cost), stand_in=stand_in)

    def _unit_selections(self, unit: Sequence[Omission], placeholder: bool) -> list[Selection]:
        found = [self._paged(o, placeholder) for o in unit]
        return [] if any(s is None for s in found) else [s for s in found if s is not None]

    def _fits(self, unit: Sequence[Omission], *, placeholder: bool) -> bool:
        picks = self._unit_selections(unit, placeholder)
        if not picks or (placeholder and not any(s.stand_in for s in picks)):
            return False
        cost = sum(s.candidate.tokens for s in picks)
        sections = sorted({s.candidate.section for s in picks}, key=lambda x: x.rank)
        cost += sum(self._header(section) for section in sections)
        recall = self.paging.config.recall and any(s.stand_in for s in picks)
        if recall and not self._offers_recall():
            cost += self._recall_cost()
        return self.total + cost <= self.limit

    def _header(self, section: Section) -> int:
        if self.used.get(section, 0):
            return 0
        return self.plan.render.pick(*header_costs(self.tokenizer, section))

    def _add(self, unit: Sequence[Omission], reason: SelectionReason, *, placeholder: bool) -> None:
        picks = self._unit_selections(unit, placeholder)
        had_recall = self._offers_recall()
        lead = unit[0].candidate.block_id
        for n, s in enumerate(picks):
            why = reason if n == 0 else SelectionReason.TOOL_PAIR
            section = s.candidate.section
            self._charge(section, self._header(section) + s.candidate.tokens)
            chosen = replace(s, reason=why, via=None if n == 0 else lead)
            self.selected[_key(chosen)] = chosen
        if not had_recall and self._offers_recall():
            self._charge(Section.TOOLS, self._recall_cost())

    # -- the plan --------------------------------------------------------------------------
    def _plan(self, omitted: Sequence[Omission], recall: bool) -> PagePlan:
        plan = self.plan
        sections = tuple(
            SectionUsage(u.section, u.allocated, self.used.get(u.section, u.used))
            for u in plan.sections
        )
        settings = {**plan.settings, SETTINGS_KEY: self.paging.to_json()}
        return replace(
            plan, selected=tuple(sorted(self.selected.values(), key=selection_key)),
            omitted=tuple(sorted(omitted, key=omission_key)), sections=sections,
            tokens=self.total, settings=settings, recall=recall,
        )  # fmt: skip


# -- the turn's accounting ------------------------------------------------------------------


def eviction_plan_of(plan: PagePlan, entries: Sequence[Entry]) -> EvictionPlan:
    """Return the plan's stand-ins as an ``eviction.EvictionPlan`` (for faults and accounting)."""
    by_seq = {e.seq: e for e in entries}
    out = []
    for s in plan.stand_ins:
        c, stand_in = s.candidate, s.stand_in
        entry = by_seq.get(c.seq) if c.seq is not None else None
        if entry is None or stand_in is None:
            continue
        out.append(_eviction(entry, stand_in))
    paging = recorded_paging(plan.settings)
    config = paging.config if paging is not None else EvictionConfig()
    return EvictionPlan(tuple(out), plan.recall, config.stub_style is not StubStyle.MINIMAL)


def _eviction(entry: Entry, stand_in: StandIn) -> Eviction:
    name = schema_name(entry) if entry.kind is BlockKind.TOOL_SCHEMA else ""
    return Eviction(
        entry.seq, entry.id, entry.kind, EvictionReason(stand_in.reason), stand_in.text,
        stand_in.body, entry.block.size, stand_in.full_tokens, name,
    )  # fmt: skip


def paged_turn(
    plan: PagePlan, entries: Sequence[Entry], *, turn: int, previous: PagedTurn | None = None
) -> PagedTurn:
    """Return the ``PagedTurn`` of a demand-paged plan: its evictions and its accounting."""
    paging = recorded_paging(plan.settings) or DemandPaging()
    count = TokenCounter(get_tokenizer(plan.profile.tokenizer))
    history = History.of(entries)
    evictions = _with_call_keys(eviction_plan_of(plan, entries), history)
    waste = plan_eviction(entries, waste_config(paging.config), count, paging.pins())
    cats = categorize(entries, waste)
    chosen = {s.candidate.seq for s in plan.selected if s.candidate.seq is not None}
    packed_entries = [e for e in entries if e.seq in chosen]
    head = (turn, history.user_turn(), paging.config, paging.pinned)
    return assemble_turn(head, evictions, packed_entries, entries, cats, count, previous)


def _with_call_keys(plan: EvictionPlan, history: History) -> EvictionPlan:
    out = []
    for ev in plan.evictions:
        call = history.call_for(ev.seq) if ev.kind is BlockKind.TOOL_RESULT else None
        if call is not None:
            ev = replace(ev, tool_name=call.name, call_key=call_key(call))
        out.append(ev)
    return replace(plan, evictions=tuple(out))


def _key(s: Selection) -> tuple[int, str]:
    return (-1 if s.candidate.seq is None else s.candidate.seq, s.candidate.block_id)


def _seqs(unit: Sequence[Omission]) -> list[int]:
    return [o.candidate.seq for o in unit if o.candidate.seq is not None]
