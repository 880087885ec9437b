"""Demand paging for one turn: the paged request, the faults in the answer, and the accounting.

Owns: ``page_turn`` (plan evictions for a request under the session's pins and a budget, count
the request by category), ``finish_turn`` (detect faults in the model's answer, record them,
pin the blocks), and ``PagedTurn``, whose ``to_json`` is what the tracer stores in a record's
``paging`` slot and the web shows. The pieces live in ``eviction``, ``faults`` and
``accounting``; this module composes them in the one order every caller needs.

Invariants:
- ``page_turn`` is pure: entries, config, state, counter, turn and budget determine the result
  (and, in ``EvictionMode.CACHE_AWARE``, the previous turn, whose placeholders carry over).
- Waste categories use the config's thresholds with every rule on, so turns packed by different
  policies are measured against the same definition of waste.
- Over budget is never silent and never unpaged: when the request cannot fit, ``page_turn``
  raises ``TurnOverBudget`` holding the turn with the smallest plan found, for a caller that
  must send it anyway (flagged over budget).
- A turn's faults are the ones found in the answer to that turn's request; they pin from the
  next request on (the same fault cannot repeat while the pin holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from runtime.blocks import Entry, ToolCall
from runtime.errors import BudgetTooSmall
from runtime.paging.accounting import (
    RequestItem,
    TokenCategory,
    TurnAccounting,
    account_turn,
    categorize,
    request_items,
)
from runtime.paging.cacheaware import plan_cache_aware
from runtime.paging.eviction import (
    Counter,
    EvictionConfig,
    EvictionMode,
    EvictionPlan,
    History,
    PagedItem,
    PlanOverBudget,
    StubScope,
    paged_view,
    plan_eviction,
)
from runtime.paging.faults import PageFault, PagingState, detect_faults


def waste_config(config: EvictionConfig) -> EvictionConfig:
    """Return the config that defines waste: ``config``'s thresholds with every rule on."""
    return replace(config, evict_stale=True, dedup=True, stub_schemas=StubScope.UNUSED)


@dataclass(frozen=True)
class PagedTurn:
    """One request after paging: its plan, what goes in it, and its accounting."""

    turn: int
    user_turn: int
    config: EvictionConfig
    pinned: tuple[str, ...]
    plan: EvictionPlan
    items: tuple[PagedItem, ...]  # the entries as packed, seq order
    request: tuple[RequestItem, ...]  # packed, prompt-cache order
    full: tuple[RequestItem, ...]  # the same entries without paging
    accounting: TurnAccounting
    faults: tuple[PageFault, ...] = ()  # found in the answer (set by finish_turn)

    @property
    def tokens(self) -> int:
        return self.accounting.packed_tokens

    def to_json(self) -> dict[str, object]:
        """Return the record of this turn's paging for a trace (canonical-JSON ready)."""
        return {
            "turn": self.turn,
            "user_turn": self.user_turn,
            "config": self.config.to_json(),
            "pinned": list(self.pinned),
            "plan": self.plan.to_json(),
            "accounting": self.accounting.to_json(),
            "faults": [f.to_json() for f in self.faults],
        }


class TurnOverBudget(BudgetTooSmall):
    """``page_turn`` could not fit the budget; ``paged`` is the turn with the smallest plan found
    (everything evictable paged out, tight), to send flagged over budget when it must go."""

    def __init__(self, message: str, paged: PagedTurn) -> None:
        super().__init__(message)
        self.paged = paged


def page_turn(
    entries: Sequence[Entry],
    config: EvictionConfig,
    state: PagingState,
    count: Counter,
    *,
    turn: int,
    budget: int | None = None,
    previous: PagedTurn | None = None,
) -> PagedTurn:
    """Return the paged request for ``entries`` (everything before the model call); raise
    ``TurnOverBudget`` when it cannot fit ``budget``."""
    user_turn = History.of(entries).user_turn()
    pins = state.pins(user_turn)
    over: PlanOverBudget | None = None
    try:
        if config.mode is EvictionMode.CACHE_AWARE:
            seen = max((i.entry.seq for i in previous.items), default=-1) + 1 if previous else 0
            last = previous.plan if previous else None
            plan = plan_cache_aware(entries, config, count, pins, budget, last, seen)
        else:
            plan = plan_eviction(entries, config, count, pins, budget)
    except PlanOverBudget as exc:
        over, plan = exc, exc.plan
    waste = waste_config(config)
    waste_plan = plan if waste == config and budget is None else plan_eviction(
        entries, waste, count, pins
    )  # fmt: skip
    cats = categorize(entries, waste_plan)
    head = (turn, user_turn, config, tuple(sorted(pins.pinned)))
    paged = assemble_turn(head, plan, entries, entries, cats, count, previous)
    if over is not None:
        raise TurnOverBudget(str(over), paged) from None
    return paged


def assemble_turn(
    head: tuple[int, int, EvictionConfig, tuple[str, ...]],
    plan: EvictionPlan,
    packed_entries: Sequence[Entry],
    entries: Sequence[Entry],
    cats: dict[int, TokenCategory],
    count: Counter,
    previous: PagedTurn | None,
) -> PagedTurn:
    """Return the PagedTurn for a decided plan: its request items against full history, and
    the turn's accounting. ``head`` is (turn, user turn, config, pinned block ids)."""
    turn = head[0]
    packed = request_items(packed_entries, plan, cats, count)
    full = request_items(entries, EvictionPlan(), cats, count)
    accounting = account_turn(
        turn, full, packed,
        previous_full=previous.full if previous else (),
        previous_packed=previous.request if previous else (),
    )  # fmt: skip
    view = paged_view(packed_entries, plan)
    return PagedTurn(*head, plan, view, packed, full, accounting)


def finish_turn(
    paged: PagedTurn, calls: Sequence[ToolCall], state: PagingState
) -> tuple[PagedTurn, PagingState]:
    """Find the faults in the model's tool calls, record them, and return both updated."""
    found = detect_faults(paged.plan, calls, turn=paged.turn, user_turn=paged.user_turn)
    new_state = state.record(found, paged.config)
    recorded = new_state.faults[len(state.faults) :]
    accounting = replace(
        paged.accounting, faults=len(recorded), refaults=sum(1 for f in recorded if f.refault)
    )
    return replace(paged, faults=recorded, accounting=accounting), new_state
