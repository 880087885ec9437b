"""The policies the paging benchmark replays, and what it records about each request.

- ``Simple``: picks entries (and an eviction plan) per turn and learns nothing: full history,
  the last N user turns, the paper's age-based eviction.
- ``Ours``: ``runtime.paging.turn`` under the budget with fault-driven pinning; a soft miss is
  simulated as a recall fault and charged as one more request.
- ``RuntimePager``: ``runtime.pager.core`` + ``runtime.packer.core`` without demand paging: real
  selection, real request bytes and hash.
- ``RuntimeDemand``: the same with ``runtime.paging.demand`` (placeholders, stubs, recall, fault pins):
  the real pager + packer path of the sample agent; a soft miss is simulated as a recall fault
  and charged as one more request, as in ``Ours``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bench.paging_replay import MissTally, render_request
from runtime.blocks import BlockKind, Entry, ToolCall
from runtime.packer.core import pack
from runtime.pager.core import PageRequest, page
from runtime.paging.accounting import (
    RequestItem,
    TokenCategory,
    TokenCounter,
    TurnAccounting,
    account_turn,
    common_prefix_tokens,
    request_items,
)
from runtime.paging.cacheaware import cache_breakpoints
from runtime.paging.contextedit import ClearToolUses, clear_tool_uses
from runtime.paging.demand import DemandPaging, page_with_paging, paged_turn
from runtime.paging.eviction import (
    EvictionConfig,
    EvictionMode,
    EvictionPlan,
    PagedItem,
    paged_view,
)
from runtime.paging.faults import FaultKind, PagingState, detect_faults
from runtime.paging.history import History
from runtime.paging.turn import PagedTurn, TurnOverBudget, finish_turn, page_turn
from runtime.profiles.catalog import ModelProfile


@dataclass(frozen=True)
class TurnInput:
    """What every policy sees for one model call."""

    session: str
    model: str
    turn: int
    entries: tuple[Entry, ...]
    calls: tuple[ToolCall, ...]  # the recorded answer's tool calls
    categories: dict[int, TokenCategory]
    full: tuple[RequestItem, ...]
    previous_full: tuple[RequestItem, ...]


@dataclass(frozen=True)
class Request:
    """One request a policy sent: its tokens, tokens a cache could serve, and its hash."""

    tokens: int
    cached: int
    sha256: str
    fault_round_trip: bool = False
    where: str = ""  # "session#turn", to find a request that differs between runs
    items: tuple[RequestItem, ...] = ()  # the request in cache order, for cache pricing
    breakpoints: tuple[int, ...] | None = None  # None: the default breakpoints


@dataclass
class Outcome:
    items: tuple[PagedItem, ...]
    request: tuple[RequestItem, ...]
    accounting: TurnAccounting
    plan: EvictionPlan
    paged: PagedTurn | None = None
    over_budget: bool = False
    sha256: str = ""  # set when a real packer made the bytes
    packer_tokens: int | None = None  # the packer's own count of its request
    breakpoints: tuple[int, ...] | None = None  # cache_control breakpoints; None: the default


@dataclass
class Stats:
    """Everything measured for one policy over all sessions."""

    requests: list[Request] = field(default_factory=list)
    turns: int = 0
    violations: int = 0
    categories: dict[str, list[int]] = field(default_factory=dict)
    misses: MissTally = field(default_factory=MissTally)
    strict: MissTally = field(default_factory=MissTally)
    numeric: MissTally = field(default_factory=MissTally)
    faults: dict[str, int] = field(default_factory=lambda: {k.value: 0 for k in FaultKind})
    refaults: int = 0
    evicted: set[tuple[str, str]] = field(default_factory=set)
    faulted: set[tuple[str, str]] = field(default_factory=set)
    packer_tokens: list[int] = field(default_factory=list)

    def add_accounting(self, a: TurnAccounting) -> None:
        for c in a.categories:
            pair = self.categories.setdefault(c.category.value, [0, 0])
            pair[0] += c.full
            pair[1] += c.packed


def finish_with_recalls(
    t: TurnInput, out: Outcome, soft: Sequence[str], state: PagingState, s: Stats
) -> tuple[PagedTurn, PagingState, tuple[ToolCall, ...]]:
    """Finish ``out``'s turn with the recorded calls and a recall of each of ``soft``.

    Counts the turn's faults into ``s``; returns the finished turn, the new paging state and
    the recalls made.
    """
    assert out.paged is not None
    recalls = tuple(
        ToolCall(f"recall-{t.turn}-{i}", "recall", {"block_id": bid[:12]})
        for i, bid in enumerate(soft)
    )
    paged, state = finish_turn(out.paged, (*recalls, *t.calls), state)
    out.accounting = paged.accounting
    for f in paged.faults:
        s.faults[f.kind.value] += 1
        s.refaults += f.refault
        s.faulted.add((t.session, f.block_id))
    return paged, state, recalls


class Simple:
    """A policy that picks entries and a plan per turn and never learns from faults."""

    def __init__(self, name: str, select: Callable[[Sequence[Entry]], tuple[Any, EvictionPlan]]):
        self.name, self.select = name, select
        self.previous: tuple[RequestItem, ...] = ()

    def begin(self) -> None:
        self.previous = ()

    def pack(self, t: TurnInput, count: TokenCounter) -> Outcome:
        subset, plan = self.select(t.entries)
        request = request_items(subset, plan, t.categories, count)
        acct = account_turn(
            t.turn, t.full, request, previous_full=t.previous_full, previous_packed=self.previous
        )
        self.previous = request
        return Outcome(paged_view(subset, plan), request, acct, plan)

    def answer(self, t: TurnInput, out: Outcome, soft: Sequence[str], s: Stats) -> list[Request]:
        # Faults are counted (the recorded model re-ran a call whose result was paged out) but
        # nothing is pinned: the paper's age policy has no memory of them.
        for f in detect_faults(out.plan, t.calls, turn=t.turn, user_turn=0):
            s.faults[f.kind.value] += 1
            s.faulted.add((t.session, f.block_id))
        return []


class ContextEditing(Simple):
    """Anthropic's ``clear_tool_uses_20250919`` over the full history, simulated: each request
    keeps the previous one's clearings (``runtime.paging.contextedit``)."""

    def __init__(self, name: str, settings: ClearToolUses, count: TokenCounter):
        super().__init__(name, self._select)
        self.settings, self.count = settings, count
        self.plan: EvictionPlan | None = None

    def begin(self) -> None:
        super().begin()
        self.plan = None

    def _select(self, entries: Sequence[Entry]) -> tuple[Any, EvictionPlan]:
        self.plan = clear_tool_uses(entries, self.settings, self.count, self.plan)
        return entries, self.plan


def last_user_turns(n: int) -> Callable[[Sequence[Entry]], tuple[Any, EvictionPlan]]:
    def select(entries: Sequence[Entry]) -> tuple[Any, EvictionPlan]:
        users = [i for i, e in enumerate(entries) if e.kind is BlockKind.USER_MESSAGE]
        start = users[-n] if len(users) >= n else 0
        fixed = (BlockKind.TOOL_SCHEMA, BlockKind.SYSTEM)
        kept = [e for i, e in enumerate(entries) if i >= start or e.kind in fixed]
        return kept, EvictionPlan()

    return select


class Ours:
    """runtime.paging.turn under a budget, with fault-driven pinning and simulated recalls."""

    def __init__(
        self,
        name: str,
        config: EvictionConfig,
        budget: int,
        count: TokenCounter,
        *,
        recall_misses: bool = True,
    ):
        self.name = name
        self.config, self.budget, self.count = config, budget, count
        self.recall_misses = recall_misses
        self.state = PagingState()
        self.previous: PagedTurn | None = None

    def begin(self) -> None:
        self.state, self.previous = PagingState(), None

    def _page(self, t: TurnInput, count: TokenCounter, reserve: int = 0) -> tuple[PagedTurn, bool]:
        """Page the turn under the budget less ``reserve``; if it cannot fit, the smallest plan
        found (a violation, as a live proxy would send it)."""
        args = (t.entries, self.config, self.state, count)
        budget = self.budget - reserve
        try:
            return page_turn(*args, turn=t.turn, budget=budget, previous=self.previous), False
        except TurnOverBudget as exc:
            return exc.paged, True

    def breakpoints(self, paged: PagedTurn, before: PagedTurn | None) -> tuple[int, ...] | None:
        """Return the cache-aware breakpoints, or None (the default ones) for other modes."""
        if self.config.mode is not EvictionMode.CACHE_AWARE:
            return None
        kinds = {i.entry.seq: i.entry.kind for i in paged.items}
        return cache_breakpoints(paged.request, kinds, before.request if before else ())

    def pack(self, t: TurnInput, count: TokenCounter) -> Outcome:
        paged, over = self._page(t, count)
        return Outcome(paged.items, paged.request, paged.accounting, paged.plan, paged, over,
                       breakpoints=self.breakpoints(paged, self.previous))  # fmt: skip

    def answer(self, t: TurnInput, out: Outcome, soft: Sequence[str], s: Stats) -> list[Request]:
        wanted = soft if self.recall_misses else ()
        paged, self.state, recalls = finish_with_recalls(t, out, wanted, self.state, s)
        self.previous = paged
        if not any(f.kind is FaultKind.RECALL for f in paged.faults):
            return []
        return [self._round_trip(t, paged, recalls, s)]

    def _round_trip(
        self, t: TurnInput, paged: PagedTurn, recalls: Sequence[ToolCall], s: Stats
    ) -> Request:
        """Send the turn again with the recalled blocks paged in (pinned): the fault's cost."""
        count = self.count
        calls = sum(count(c.body()) for c in recalls)  # the recall tool_use blocks, sent too
        again, over = self._page(t, count, reserve=calls)
        tokens = again.tokens + calls
        s.violations += over or tokens > self.budget
        cached = common_prefix_tokens(paged.request, again.request)
        digest = sha256_hex(render_request(t.model, again.items, again.plan.offers_recall))
        bps = self.breakpoints(again, paged)
        self.previous = again
        return Request(tokens, cached, digest, True, f"{t.session}#{t.turn}", again.request, bps)


def sha256_hex(data: bytes) -> str:
    """Return the SHA-256 hex of ``data``."""
    return hashlib.sha256(data).hexdigest()


class RuntimePager:
    """The runtime pager and packer as they are: selection under the budget, real bytes."""

    def __init__(self, name: str, store: Any, profile: ModelProfile, budget: int):
        # The pager plans against the profile's input budget, so the profile is resized to it.
        extra = profile.reserved_output_tokens + profile.safety_margin_tokens
        self.name, self.store = name, store
        self.profile = replace(profile, max_context_tokens=budget + extra)
        self.previous: tuple[RequestItem, ...] = ()

    def begin(self) -> None:
        self.previous = ()

    def _request(self, t: TurnInput) -> PageRequest:
        # As the sample agent pages: a new user message is the task; after tool results the
        # session is paged with no task and the latest user message required.
        last = t.entries[-1]
        if last.kind is BlockKind.USER_MESSAGE:
            return PageRequest(t.session, last.body, self.profile, upto=last.seq)
        users = [e.id for e in t.entries if e.kind is BlockKind.USER_MESSAGE][-1:]
        return PageRequest(t.session, "", self.profile, required=tuple(users), upto=len(t.entries))

    def pack(self, t: TurnInput, count: TokenCounter) -> Outcome:
        request = self._request(t)
        plan = page(self.store, request)
        packed = pack(self.store, plan)
        chosen = {s.candidate.seq for s in plan.selected}
        task_seq = request.upto if request.task else None
        subset = [e for e in t.entries if e.seq in chosen or e.seq == task_seq]
        items = request_items(subset, EvictionPlan(), t.categories, count)
        acct = account_turn(
            t.turn, t.full, items, previous_full=t.previous_full, previous_packed=self.previous
        )
        self.previous = items
        view = paged_view(subset, EvictionPlan())
        return Outcome(view, items, acct, EvictionPlan(), sha256=packed.prompt_hash,
                       packer_tokens=packed.chat_tokens)  # fmt: skip

    def answer(self, t: TurnInput, out: Outcome, soft: Sequence[str], s: Stats) -> list[Request]:
        return []


class RuntimeDemand(RuntimePager):
    """The runtime pager and packer with demand paging: what the sample agent sends."""

    def __init__(self, name: str, store: Any, profile: ModelProfile, budget: int,
                 config: EvictionConfig, count: TokenCounter):  # fmt: skip
        super().__init__(name, store, profile, budget)
        self.config, self.count, self.budget = config, count, budget
        self.state = PagingState()

    def begin(self) -> None:
        super().begin()
        self.state = PagingState()

    def _outcome(self, t: TurnInput, count: TokenCounter, previous: tuple) -> Outcome:
        request = self._request(t)
        user_turn = History.of(t.entries).user_turn()
        option = DemandPaging.from_state(self.state, user_turn, self.config)
        plan = page_with_paging(self.store, request, option)
        packed = pack(self.store, plan)
        seen = [e for e in t.entries if e.seq < plan.upto]
        evictions = paged_turn(plan, seen, turn=t.turn).plan
        chosen = {s.candidate.seq for s in plan.selected}
        task_seq = request.upto if request.task else None
        subset = [e for e in t.entries if e.seq in chosen or e.seq == task_seq]
        items = request_items(subset, evictions, t.categories, count)
        acct = account_turn(
            t.turn, t.full, items, previous_full=t.previous_full, previous_packed=previous
        )
        paged = PagedTurn(t.turn, user_turn, self.config, option.pinned, evictions,
                          paged_view(subset, evictions), items, t.full, acct)  # fmt: skip
        return Outcome(paged.items, items, acct, evictions, paged, sha256=packed.prompt_hash,
                       packer_tokens=packed.chat_tokens)  # fmt: skip

    def pack(self, t: TurnInput, count: TokenCounter) -> Outcome:
        out = self._outcome(t, count, self.previous)
        self.previous = out.request
        return out

    def answer(self, t: TurnInput, out: Outcome, soft: Sequence[str], s: Stats) -> list[Request]:
        paged, self.state, recalls = finish_with_recalls(t, out, soft, self.state, s)
        if not any(f.kind is FaultKind.RECALL for f in paged.faults):
            return []
        # The turn again with the recalled blocks pinned: the fault's cost, real bytes.
        again = self._outcome(t, self.count, out.request)
        calls = sum(self.count(c.body()) for c in recalls)
        tokens = again.accounting.packed_tokens + calls
        s.violations += tokens > self.budget
        self.previous = again.request
        cached = again.accounting.cached_packed
        return [Request(tokens, cached, again.sha256, True, f"{t.session}#{t.turn}", again.request)]
