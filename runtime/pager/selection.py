"""Greedy selection under section and global budgets, following edges, with a reason for each.

Owns: the order in which candidates are considered, the budget arithmetic, tool-pair units,
dependencies, summary substitution and duplicates. Pure: it sees items and an ``Expander``
that reads edges; it never touches the store itself.

The rules, in order:
1. Required blocks (and their tool partners) are taken first, whatever the sections say. If
   they, the task and the fixed framing exceed the input budget, ``BudgetTooSmall`` says by how
   many tokens.
2. System blocks are fixed content: taken against the input budget only.
3. The rest of the input budget is the *variable* budget; each variable section gets
   ``floor(variable * fraction)`` (``runtime.pager.sections.allocate``).
4. Everything else is considered once, in a total order: tier (pinned, then standing, then
   scored), then merged score descending, then priority descending, then seq descending (newer
   first), then block id. Pass 1 takes a unit when it fits its section's allocation and the
   optional limit, which is the input budget minus Slack. Pass 2 (when unused budget may flow,
   the default) offers what did not fit its section to whatever the other sections left unused,
   in the same order, against the optional limit only. Slack is never filled.
5. A tool call and its result are one unit: both or neither. A tool block whose partner is not
   in the session (as of ``upto``) is omitted as ``unpaired``.
6. A selected block pulls in its parent and supports targets (depth and fan-out bounded) as
   dependencies, against the optional limit; a pulled tool block brings its partner.
7. A block that does not fit may be replaced by a summary derived from it (a ``derived-from``
   edge from the summary): the summary is selected once (even if it scored under the threshold
   on its own: the blocks it stands for justify it), each block it covers is omitted as
   ``replaced-by-summary``.
8. The same block (same kind and body) twice in a session is packed once; the others are
   ``duplicate``. Conversation turns are exempt: a user saying "yes" twice said it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from runtime.blocks import BlockKind
from runtime.errors import BudgetTooSmall
from runtime.packer.rendering import CONVERSATION_KINDS
from runtime.pager.plan import OmissionReason, SelectionReason
from runtime.pager.sections import Allocation, Section

TIER_REQUIRED, TIER_PINNED, TIER_STANDING, TIER_SCORED = 0, 1, 2, 3


class Item(NamedTuple):
    """One candidate as selection sees it (a NamedTuple: thousands are made per page).

    ``key`` is the seq for a block of the session and a number below -1 for a block from
    outside it, so a partner or dependency found later has a key before it has an item.
    """

    key: int
    block_id: str
    seq: int | None
    kind: BlockKind
    section: Section
    cost: int
    priority: float
    score: float
    tier: int
    recency_led: bool
    partner: int | None  # tool blocks: the partner's key (its seq), or -1 when it is missing
    outside: bool


class Expander(Protocol):
    """Reads edges for selection, making items for blocks not yet among the candidates."""

    def dependencies(self, item: Item) -> list[Item]: ...

    def summaries(self, item: Item) -> list[Item]: ...

    def summarised(self, item: Item) -> bool: ...

    def item(self, key: int) -> Item: ...


@dataclass(frozen=True)
class Limits:
    """The numbers selection works within."""

    input_budget: int
    frame: int  # the task and fixed framing, always charged
    header: Callable[[Section], int]  # cost of opening a section
    fractions: Callable[[int], Allocation]  # variable budget -> allocation
    threshold: float = 0.0
    flow_unused: bool = True
    dedupe: bool = True
    summary_substitution: bool = True
    dependency_depth: int = 1


class Decision(NamedTuple):
    """What selection decided for one item (a NamedTuple: thousands are made per page)."""

    key: int
    selected: bool
    reason: SelectionReason | OmissionReason
    via: str | None


@dataclass(frozen=True)
class Outcome:
    decisions: tuple[Decision, ...]
    used: tuple[tuple[Section, int], ...]
    allocation: Allocation
    total: int


def order_key(item: Item) -> tuple[int, float, float, int, str]:
    """Return the total order of consideration (documented in rule 4)."""
    seq = -1 if item.seq is None else item.seq
    return (item.tier, -item.score, -item.priority, -seq, item.block_id)


class _Unit:
    """Items that are selected together (a tool call and its result), with their cost."""

    __slots__ = ("items", "lead", "section", "cost", "sections")

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self.lead = items[0]
        self.section: Section | None
        if len(items) == 1:  # most units: skip the general bookkeeping
            self.cost, self.section = self.lead.cost, self.lead.section
            self.sections = [self.lead.section]
            return
        self.cost = sum(i.cost for i in items)
        if len(items) == 2 and items[0].section is items[1].section:  # a tool pair, mostly
            self.section = items[0].section
            self.sections = [self.section]
            return
        self.sections = sorted({i.section for i in items}, key=lambda s: s.rank)
        self.section = self.sections[0] if len(self.sections) == 1 else None

    @property
    def unpaired(self) -> bool:
        return self.lead.partner is not None and self.lead.partner < 0


class Selector:
    """One run of the rules over one page's items."""

    def __init__(
        self,
        items: Sequence[Item],
        limits: Limits,
        expander: Expander,
        ordered: Sequence[Item] | None = None,
    ) -> None:
        self.items = {item.key: item for item in items}
        self.ordered = ordered  # ``items`` in ``order_key`` order, when the caller has it
        self.limits = limits
        self.expander = expander
        self.decided: dict[int, Decision] = {}
        self.used: dict[Section, int] = {}
        self.headers = {s: limits.header(s) for s in Section}
        self.total = limits.frame
        self.allocation = limits.fractions(0)
        self.allocated = dict.fromkeys(Section, 0)
        self.optional_limit = limits.input_budget
        self.kept: dict[str, str] = {}  # block id -> block id kept (duplicates)
        # Why the second pass omits what it cannot fit: the page is full, or, when unused room
        # does not flow between sections, the block's own section is.
        self.out_of_room = (
            OmissionReason.GLOBAL_BUDGET if limits.flow_unused else OmissionReason.SECTION_BUDGET
        )

    # -- entry point --------------------------------------------------------------------
    def run(self) -> Outcome:
        ordered = self.ordered
        if ordered is None:
            ordered = sorted(self.items.values(), key=order_key)
        required = self._take_required([i for i in ordered if i.tier == TIER_REQUIRED])
        self._take_system([i for i in ordered if i.section is Section.SYSTEM])
        variable = self.limits.input_budget - self.total
        self.allocation = self.limits.fractions(variable)
        self.allocated = {s: self.allocation.of(s) for s in Section}
        self.optional_limit = self.limits.input_budget - self.allocation.slack
        # Dependencies of required blocks are optional: they come after the system blocks
        # and within the optional limit, so they can never push out a system prompt.
        for unit in required:
            for item in unit.items:
                self._pull_dependencies(item, self.limits.dependency_depth)
        pending = self._first_passes(self._units(ordered))
        cheapest, summarised = self._suffixes(pending)
        for n, waiting in enumerate(pending):
            if cheapest[n] > self.optional_limit - self.total and not summarised[n]:
                self._omit_rest(pending[n:])  # nothing left can fit or be summarised
                break
            self._second_pass(waiting)
        for key in sorted(self.items):  # dependencies that were tried and did not fit
            if key not in self.decided:
                self._omit(_Unit([self.items[key]]), OmissionReason.GLOBAL_BUDGET)
        used = tuple((s, self.used[s]) for s in Section if s in self.used)
        decisions = tuple(self.decided[k] for k in sorted(self.decided))
        return Outcome(decisions, used, self.allocation, self.total)

    # -- units --------------------------------------------------------------------------
    def _unit(self, item: Item) -> _Unit:
        if item.partner is None or item.partner < 0:
            return _Unit([item])  # an unpaired tool block is refused by the caller
        partner = self.items.get(item.partner)
        if partner is None:
            partner = self.items[item.partner] = self.expander.item(item.partner)
        return _Unit([item, partner])

    def _units(self, ordered: Sequence[Item]) -> list[_Unit | Item]:
        """Return the units in order; a block that is a unit on its own stays its item (most
        are, and pass 1 decides most of them without making a unit)."""
        units: list[_Unit | Item] = []
        seen: set[int] = set()
        decided = self.decided
        for item in ordered:
            key = item.key
            if key in seen or key in decided:
                continue
            if item.partner is None:
                units.append(item)  # keys are unique, so no later unit can lead with it
                continue
            unit = self._unit(item)
            seen.update(i.key for i in unit.items)
            units.append(unit)
        return units

    def _cost(self, unit: _Unit) -> int:
        if unit.section is not None:
            return unit.cost + (0 if unit.section in self.used else self.headers[unit.section])
        return unit.cost + sum(self.headers[s] for s in unit.sections if s not in self.used)

    def _is_decided(self, unit: _Unit) -> bool:
        items = unit.items  # one block, or a tool pair
        return items[0].key in self.decided or (len(items) == 2 and items[1].key in self.decided)

    # -- rules 1 and 2 ------------------------------------------------------------------
    def _take_required(self, required: Sequence[Item]) -> list[_Unit]:
        taken: list[_Unit] = []
        for item in required:
            if item.key in self.decided:
                continue
            unit = self._unit(item)
            if unit.unpaired:
                raise BudgetTooSmall(
                    f"required block {item.block_id[:12]} is a {item.kind.value} whose "
                    "partner is not in the session; the API rejects one without the other. "
                    "Require both, or page a later turn"
                )
            self._select(unit, SelectionReason.REQUIRED, depth=0)
            taken.append(unit)
        if self.total > self.limits.input_budget:
            over = self.total - self.limits.input_budget
            raise BudgetTooSmall(
                f"the task and required blocks need {self.total} tokens but the input budget "
                f"is {self.limits.input_budget}: {over} tokens too many. Require fewer blocks, "
                "shorten the task, or use a model with a larger context"
            )
        return taken

    def _take_system(self, system: Sequence[Item]) -> None:
        for item in system:
            if item.key in self.decided:
                continue
            unit = _Unit([item])
            if self._duplicate(item):
                self._omit(unit, OmissionReason.DUPLICATE, self.kept[item.block_id])
            elif self.total + self._cost(unit) <= self.limits.input_budget:
                self._select(unit, self._reason(item))
            else:
                self._omit(unit, OmissionReason.GLOBAL_BUDGET)

    # -- rule 4: the two passes ---------------------------------------------------------
    def _first_passes(self, units: Sequence[_Unit | Item]) -> list[_Unit | Item]:
        """Run pass 1 over ``units``; return those left for pass 2, in order.

        A lone block is decided here inline, by the same tests as ``_first_pass`` in the same
        order: this loop runs once per candidate, so it avoids making objects it can skip.
        """
        pending: list[_Unit | Item] = []
        decided, kept, used = self.decided, self.kept, self.used
        headers, allocated = self.headers, self.allocated
        threshold, dedupe = self.limits.threshold, self.limits.dedupe
        for unit in units:
            if isinstance(unit, _Unit):
                if not self._first_pass(unit):
                    pending.append(unit)
                continue
            key = unit.key
            if key in decided:
                continue
            if unit.tier == TIER_SCORED and unit.score < threshold:
                decided[key] = Decision(key, False, OmissionReason.BELOW_THRESHOLD, None)
                continue
            if dedupe and unit.block_id in kept and unit.kind not in CONVERSATION_KINDS:
                decided[key] = Decision(key, False, OmissionReason.DUPLICATE, kept[unit.block_id])
                continue
            section = unit.section
            base = used.get(section)
            header = headers[section] if base is None else 0
            if self.total + unit.cost + header > self.optional_limit:
                alone = _Unit([unit])
                if not self._substitute(alone):
                    self._omit(alone, OmissionReason.GLOBAL_BUDGET)
            elif unit.cost + (header if base is None else base) <= allocated[section]:
                self._select_one(unit, self._reason(unit), header if base is None else base)
            else:
                pending.append(unit)
        return pending

    def _first_pass(self, unit: _Unit) -> bool:
        """Decide ``unit`` if pass 1 can; return False to offer it to pass 2."""
        lead = unit.lead
        if self._is_decided(unit):
            return True
        if unit.unpaired:
            self._omit(unit, OmissionReason.UNPAIRED)
        elif lead.tier == TIER_SCORED and lead.score < self.limits.threshold:
            self._omit(unit, OmissionReason.BELOW_THRESHOLD)
        elif self._duplicate(lead):
            self._omit(unit, OmissionReason.DUPLICATE, self.kept[lead.block_id])
        elif not self._fits(unit):
            if not self._substitute(unit):
                self._omit(unit, OmissionReason.GLOBAL_BUDGET)
        elif self._fits_section(unit):
            self._select(unit, self._reason(lead))
        else:
            return False
        return True

    def _suffixes(self, units: Sequence[_Unit | Item]) -> tuple[list[int], list[bool]]:
        """Return, from each position on, the cheapest unit cost and whether any may have a
        summary (unit costs leave out headers, so they bound the real cost from below)."""
        cheapest, summarised = [0] * len(units), [False] * len(units)
        low, any_summary = 1 << 62, False
        for n in range(len(units) - 1, -1, -1):
            unit = units[n]
            low = min(low, unit.cost)
            lead = unit.lead if isinstance(unit, _Unit) else unit
            any_summary = any_summary or self.expander.summarised(lead)
            cheapest[n], summarised[n] = low, any_summary
        return cheapest, summarised

    def _omit_rest(self, rest: Sequence[_Unit | Item]) -> None:
        reason = self.out_of_room
        decided = self.decided
        for unit in rest:
            if isinstance(unit, _Unit):
                if not self._is_decided(unit):
                    self._omit(unit, reason)
            elif unit.key not in decided:
                decided[unit.key] = Decision(unit.key, False, reason, None)

    def _second_pass(self, unit: _Unit | Item) -> None:
        if not isinstance(unit, _Unit):
            self._second_pass_one(unit)
            return
        if self._is_decided(unit):
            return
        if self.limits.flow_unused and self._fits(unit):
            self._select(unit, self._reason(unit.lead))
        elif not self._substitute(unit):
            self._omit(unit, self.out_of_room)

    def _second_pass_one(self, item: Item) -> None:
        """``_second_pass`` of a lone block, without making a unit unless it needs a summary."""
        if item.key in self.decided:
            return
        section = item.section
        base = self.used.get(section)
        header = self.headers[section] if base is None else 0
        if self.limits.flow_unused and self.total + item.cost + header <= self.optional_limit:
            self._select_one(item, self._reason(item), header if base is None else base)
            return
        alone = _Unit([item])
        if not self._substitute(alone):
            self._omit(alone, self.out_of_room)

    def _fits(self, unit: _Unit) -> bool:
        return self.total + self._cost(unit) <= self.optional_limit

    def _fits_section(self, unit: _Unit) -> bool:
        section = unit.section
        if section is not None:
            used = self.used.get(section)
            need = unit.cost + (self.headers[section] if used is None else used)
            return need <= self.allocated[section]
        needs: dict[Section, int] = {}
        for item in unit.items:
            header = self.headers[item.section] if item.section not in self.used else 0
            needs[item.section] = needs.get(item.section, header) + item.cost
        return all(self.used.get(s, 0) + n <= self.allocated[s] for s, n in needs.items())

    def _duplicate(self, item: Item) -> bool:
        if not self.limits.dedupe or item.kind in CONVERSATION_KINDS:
            return False
        return item.block_id in self.kept

    def _reason(self, item: Item) -> SelectionReason:
        if item.tier == TIER_PINNED:
            return SelectionReason.PINNED
        if item.tier == TIER_STANDING:
            return SelectionReason.STANDING
        if item.outside:
            return SelectionReason.GLOBAL_FACT
        return SelectionReason.RECENCY if item.recency_led else SelectionReason.RELEVANCE

    # -- rule 7: summaries --------------------------------------------------------------
    def _substitute(self, unit: _Unit) -> bool:
        if not self.limits.summary_substitution or len(unit.items) != 1:
            return False
        item = unit.lead
        for summary in self.expander.summaries(item):
            self.items.setdefault(summary.key, summary)
            done = self.decided.get(summary.key)
            if done is not None and done.selected:
                self._omit(unit, OmissionReason.REPLACED_BY_SUMMARY, summary.block_id)
                return True
            stand_in = _Unit([summary])
            # The blocks it stands for justify it: a summary too weak on its own still serves.
            open_ = done is None or done.reason is OmissionReason.BELOW_THRESHOLD
            if open_ and self._fits(stand_in):
                self._select(stand_in, SelectionReason.SUMMARY_SUBSTITUTE, item.block_id)
                self._omit(unit, OmissionReason.REPLACED_BY_SUMMARY, summary.block_id)
                return True
        return False

    # -- recording ----------------------------------------------------------------------
    def _select(
        self, unit: _Unit, reason: SelectionReason, via: str | None = None, depth: int = -1
    ) -> None:
        self.total += self._cost(unit)
        lead_id = unit.lead.block_id
        for n, item in enumerate(unit.items):
            used = self.used.get(item.section)
            base = self.headers[item.section] if used is None else used
            self.used[item.section] = base + item.cost
            why, by = (reason, via) if n == 0 else (SelectionReason.TOOL_PAIR, lead_id)
            self.decided[item.key] = Decision(item.key, True, why, by)
            self.kept.setdefault(item.block_id, item.block_id)
        depth = self.limits.dependency_depth if depth < 0 else depth
        for item in unit.items:
            self._pull_dependencies(item, depth)

    def _select_one(self, item: Item, reason: SelectionReason, base: int) -> None:
        """``_select`` of a lone block with no ``via``; ``base`` is its section's use so far,
        or the section's opening cost when nothing is in it yet."""
        section = item.section
        self.total += item.cost + (base if section not in self.used else 0)
        self.used[section] = base + item.cost
        self.decided[item.key] = Decision(item.key, True, reason, None)
        self.kept.setdefault(item.block_id, item.block_id)
        self._pull_dependencies(item, self.limits.dependency_depth)

    def _omit(self, unit: _Unit, reason: OmissionReason, via: str | None = None) -> None:
        for item in unit.items:
            self.decided[item.key] = Decision(item.key, False, reason, via)

    # -- rule 6: dependencies -----------------------------------------------------------
    def _pull_dependencies(self, item: Item, depth: int) -> None:
        if depth <= 0:
            return
        for dep in self.expander.dependencies(item):
            self.items.setdefault(dep.key, dep)
            if dep.key in self.decided:
                continue
            unit = self._unit(dep)
            if unit.unpaired or self._is_decided(unit) or not self._fits(unit):
                continue
            self._select(unit, SelectionReason.DEPENDENCY, item.block_id, depth - 1)


def select(
    items: Sequence[Item],
    limits: Limits,
    expander: Expander,
    ordered: Sequence[Item] | None = None,
) -> Outcome:
    """Apply the module's rules to ``items`` and return every decision (``ordered``: the same
    items sorted by ``order_key``, if the caller sorted them already)."""
    return Selector(items, limits, expander, ordered).run()
