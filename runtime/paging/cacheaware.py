"""Cache-aware eviction: page out in rare, large batches so the prompt cache keeps paying.

With prompt caching a token already in the cache costs a tenth of a new one, and changing a
block rewrites the cache from that block on. Evicting a little every turn (the per-turn policy)
lowers the token count but moves the prefix, so each turn pays cache writes again. This policy
(``EvictionMode.CACHE_AWARE``, built by ``cache_aware_config``, run by ``turn.page_turn``):

1. Decides the stable prefix once: every tool schema stubbed (``StubScope.ALL``) and the recall
   tool offered from the first request, then the system prompt. Nothing in it depends on the
   turn, so it is byte-stable for the whole session.
2. Carries the previous request's placeholders over unchanged; a new tool output that repeats an
   earlier one becomes a duplicate placeholder when it first appears (at the tail, where it
   moves no cached prefix). A block a fault pinned comes back in full.
3. Evicts nothing else until the request passes ``high_water`` x budget. Then it evicts one batch:
   every cold block (not used in the current user turn) at least ``a`` user turns old, for the
   ``a`` whose estimated cost over the expected rest of the session is lowest:
   ``(write - read) x rewritten x (1 + later batches) + read x tokens left x future calls``,
   where ``rewritten`` is the request after the batch's first block, later batches = growth
   over the horizon / room the batch frees, and the horizon is as many model calls as the
   session has had (a session that has run n calls is expected to run about n more). Only what
   a live system knows goes in: the entries, the previous request, the budget and the prices.
4. Never drops a block: everything paged out is a placeholder (a message too), with its block id
   for ``recall``. If the cold blocks cannot make the request fit, ``fit_budget`` adds pressure
   placeholders, least recently used first, as the per-turn policy does.

``cache_breakpoints`` places the request's ``cache_control`` breakpoints where the prefix stays
stable: after the stable prefix, before the first block a later batch could evict, at the end of
the prefix shared with the previous request, and at the end.

Invariants: pure and deterministic like ``eviction``; the plan only grows between turns except
for blocks a fault pinned; nothing here knows a tool name or any wording of the sessions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from runtime.blocks import BlockKind, Entry
from runtime.paging.accounting import RequestItem
from runtime.paging.eviction import (
    Counter,
    Eviction,
    EvictionConfig,
    EvictionPlan,
    Pins,
    _plan,
    _recall_evictions,
    _result_evictions,
    _schema_evictions,
    fit_budget,
    pressure_placeholder,
    request_tokens,
)
from runtime.paging.history import History
from runtime.paging.presets import cache_aware_config  # noqa: F401 - kept with the presets: config imports them

_MOVABLE = (BlockKind.TOOL_RESULT, BlockKind.USER_MESSAGE, BlockKind.ASSISTANT_MESSAGE)
_CALLS = (BlockKind.ASSISTANT_MESSAGE, BlockKind.TOOL_CALL)
_HEAD = (BlockKind.TOOL_SCHEMA, BlockKind.SYSTEM)


def _carried(s: History, previous: EvictionPlan | None, pins: Pins) -> list[Eviction]:
    """Return the previous request's placeholders for blocks still here and not pinned."""
    if previous is None:
        return []
    by_seq = {e.seq: e for e in s.entries}
    return [
        ev
        for ev in previous.evictions
        if ev.kind is not BlockKind.TOOL_SCHEMA
        and (e := by_seq.get(ev.seq)) is not None
        and e.id == ev.block_id
        and ev.block_id not in pins.pinned
    ]


def _arrivals(
    s: History, config: EvictionConfig, pins: Pins, count: Counter, seen: int, taken: set[int]
) -> list[Eviction]:
    """Return duplicate placeholders for blocks that arrived since the previous request."""
    rules = replace(config, evict_stale=False)
    found = list(_result_evictions(s, rules, pins, count))
    found += _recall_evictions(s, found, rules, pins, count)
    return [e for e in found if e.seq >= seen and e.seq not in taken]


def _horizon(s: History) -> int:
    return max(1, sum(1 for e in s.entries if e.kind in _CALLS))


def _ages(s: History, config: EvictionConfig) -> dict[int, int]:
    """Return each movable entry's age in user turns: from last use for a tool result."""
    ages = s.ages(config.age_unit)
    ages.update(s.result_ages(config.age_unit, config.age_from))
    return ages


def _movable(s: History, done: set[int], pins: Pins, count: Counter, config: EvictionConfig):  # noqa: ANN202
    """Return (age, entry, placeholder) of every block a batch may page out, seq order."""
    ages = _ages(s, config)
    out = []
    for e in s.entries:
        if e.kind not in _MOVABLE or e.seq in done or e.id in pins.pinned:
            continue
        if e.seq == s.latest_user_seq or e.seq >= s.protected_from:
            continue
        ev = pressure_placeholder(s, e, config, count)
        if ev is not None:
            out.append((ages.get(e.seq, 0), e, ev))
    return out


def _prefix_tokens(s: History, plan: EvictionPlan, count: Counter) -> dict[int, int]:
    """Return, per conversation seq, the request tokens before it (cache order)."""
    head = [e for e in s.entries if e.kind in _HEAD]
    at = request_tokens(head, plan, count)
    out: dict[int, int] = {}
    for e in s.entries:
        if e.kind in _HEAD:
            continue
        out[e.seq] = at
        ev = plan.get(e.seq)
        at += count(e.body if ev is None else ev.body)
    return out


def _choose_batch(
    s: History, plan: EvictionPlan, config: EvictionConfig, count: Counter, pins: Pins,
    budget: int, total: int,
) -> list[Eviction]:  # fmt: skip
    """Return the batch with the lowest estimated cost over the horizon (see the module doc);
    when no batch fits the budget, the largest one (``fit_budget`` does the rest).

    A batch is every movable block at least ``a`` user turns old from block ``c`` on, for an
    age ``a`` and a cut point ``c``; its cost adds, per block, the expected cost of faulting it
    back (a rewrite from it and a resend) times a hazard of 1 / (1 + its age)."""
    movable = _movable(s, {e.seq for e in plan.evictions}, pins, count, config)
    before = _prefix_tokens(s, plan, count)
    calls = _horizon(s)
    stable = min(before.values(), default=total)
    growth = max(1.0, (total - stable) / calls)
    w, r, cap = config.cache_write, config.cache_read, budget * config.high_water
    best: tuple[float, int, int] | None = None  # (cost, -age, -cut)
    fallback: tuple[int, int, int] | None = None  # (left, -age, -cut): the largest batch
    for age in sorted({a for a, _, _ in movable}, reverse=True):
        freed, risk = 0, 0.0
        for a, e, ev in reversed(movable):
            if a < age:
                continue
            freed += count(e.body) - count(ev.body)
            risk += ((w - r) * (total - before[e.seq]) + r * total) / (1 + a)
            left = total - freed
            if fallback is None or (left, -age, -e.seq) < fallback:
                fallback = (left, -age, -e.seq)
            if left > budget:
                continue
            later = calls * growth / max(cap - left, growth)
            cost = (w - r) * (left - before[e.seq]) * (1 + later) + r * left * calls + risk
            if best is None or (cost, -age, -e.seq) < best:
                best = (cost, -age, -e.seq)
    pick = best[1:] if best is not None else (fallback[1:] if fallback is not None else None)
    if pick is None:
        return []
    age, cut = -pick[0], -pick[1]
    return [ev for a, e, ev in movable if a >= age and e.seq >= cut]


def plan_cache_aware(
    entries: Sequence[Entry],
    config: EvictionConfig,
    count: Counter,
    pins: Pins,
    budget: int | None,
    previous: EvictionPlan | None,
    seen: int,
) -> EvictionPlan:
    """Return the cache-aware plan for a request; ``previous`` is the plan of the session's
    previous request and ``seen`` the number of entries it held."""
    s = History.of(entries)
    found = [*_schema_evictions(s, config, pins, count), *_carried(s, previous, pins)]
    found += _arrivals(s, config, pins, count, seen, {e.seq for e in found})
    plan = _plan(found, config)
    if budget is None:
        return plan
    total = request_tokens(s.entries, plan, count)
    if total <= budget * config.high_water:
        return plan
    plan = _plan([*found, *_choose_batch(s, plan, config, count, pins, budget, total)], config)
    return fit_budget(s, plan, config, count, pins, budget)


def cache_breakpoints(
    request: Sequence[RequestItem],
    kinds: Mapping[int, BlockKind],
    previous: Sequence[RequestItem] = (),
    limit: int = 4,
) -> tuple[int, ...]:
    """Return up to ``limit`` breakpoints (the items before each marker) where the prefix will
    stay stable: after the stable prefix, before the first block a later batch could page out,
    after the prefix shared with ``previous``, and at the end. ``kinds`` maps seq to kind."""
    stable = sum(1 for i in request if i.seq < 0 or kinds.get(i.seq) in _HEAD)
    movable = next(
        (n for n, i in enumerate(request)
         if n >= stable and not i.evicted and kinds.get(i.seq) in _MOVABLE),
        len(request),
    )  # fmt: skip
    shared = 0
    while shared < min(len(request), len(previous)) and request[shared].key == previous[shared].key:
        shared += 1
    marks = sorted({m for m in (stable, movable, shared, len(request)) if 0 < m <= len(request)})
    return tuple(marks[-limit:])
