"""The pager: decides which blocks of a session the model sees for one task, and says why.

Owns: ``PageRequest`` and ``PageOptions``, ``page()``, and turning the candidate pool into
selection items (costs, tiers, tool partners) and back into a ``PagePlan``.

Invariants:
- Deterministic: the same store state and request give an equal plan (and equal JSON) in any
  process. No set iteration, clock, randomness or ``hash()`` reaches a decision; every order is
  total (``runtime.pager.selection`` documents the order of consideration).
- ``upto`` pages the session as it was before entry ``upto`` (entries with ``seq < upto``):
  retrievers, BM25 statistics, tool pairs and edges all see only that part, so a trace can be
  re-paged exactly.
- Every candidate ends in the plan exactly once, selected or omitted, with a reason, its score
  breakdown and its tokens; the planned tokens never exceed the profile's input budget in the
  request's render mode (``runtime.packer.rendering`` defines the costs).
- A user retriever passed in ``extra_retrievers`` adds to ``retrievers``; it never replaces them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from runtime.blocks import BlockKind
from runtime.config import BudgetFractions, Config
from runtime.errors import InvalidInput
from runtime.indexes.bm25 import query_terms
from runtime.indexes.snapshot import Snapshot, reader_for
from runtime.packer.rendering import RenderMode, frame_costs, header_costs
from runtime.pager.collector import collector_paused
from runtime.pager.graph import SessionGraph
from runtime.pager.plan import (
    Candidate,
    Omission,
    PagePlan,
    SectionUsage,
    Selection,
    omission_key,
    selection_key,
)
from runtime.pager.pool import Pool, Spread, build_pool
from runtime.pager.retrievers import (
    NEIGHBOUR_KERNEL,
    PinnedRetriever,
    RetrievalQuery,
    Weighted,
    default_stack,
    seqs_of,
)
from runtime.pager.sections import VARIABLE_SECTIONS, Section, allocate
from runtime.pager.selection import (
    TIER_PINNED,
    TIER_REQUIRED,
    TIER_SCORED,
    TIER_STANDING,
    Item,
    Limits,
)
from runtime.pager.selection import select as run_selection
from runtime.profiles.catalog import ModelProfile
from runtime.storage.interface import BlockStore, one_snapshot
from runtime.tokenizers import Tokenizer, get_tokenizer


@dataclass(frozen=True)
class PageOptions:
    """How selection behaves (see ``runtime.pager.selection`` for each rule)."""

    threshold: float = 0.0
    follow_edges: bool = True
    dependency_depth: int = 1
    dependency_fanout: int = 8
    summary_substitution: bool = True
    flow_unused: bool = True
    dedupe: bool = True
    neighbour_kernel: tuple[float, ...] = NEIGHBOUR_KERNEL
    neighbour_weight: float = 3.75
    limit: int = 512  # most candidates each retriever may propose (see candidate_limit)
    render: RenderMode = RenderMode.BOTH

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["neighbour_kernel"] = list(self.neighbour_kernel)
        data["render"] = self.render.value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PageOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["neighbour_kernel"] = tuple(known.get("neighbour_kernel", NEIGHBOUR_KERNEL))
        known["render"] = RenderMode(known.get("render", RenderMode.BOTH))
        return cls(**known)


@dataclass(frozen=True)
class PageRequest:
    """One question to the pager: what to page, for which model, with which retrievers."""

    session: str
    task: str
    profile: ModelProfile
    required: tuple[str, ...] = ()
    pinned: tuple[str, ...] = ()
    retrievers: tuple[Weighted, ...] = field(default_factory=default_stack)
    extra_retrievers: tuple[Weighted, ...] = ()
    budgets: BudgetFractions = field(default_factory=BudgetFractions)
    options: PageOptions = field(default_factory=PageOptions)
    upto: int | None = None

    @classmethod
    def from_config(
        cls, config: Config, session: str, task: str, profile: ModelProfile, **kw: Any
    ) -> PageRequest:
        """Return a request using ``config``'s retriever weights and section budgets."""
        stack = default_stack(config.retrievers)
        neighbours = getattr(config.retrievers, "neighbours", None)
        if neighbours is not None and "options" not in kw:
            kw["options"] = PageOptions(neighbour_weight=neighbours.weight)
        return cls(session, task, profile, retrievers=stack, budgets=config.budgets, **kw)

    @property
    def stack(self) -> tuple[Weighted, ...]:
        """Return every retriever that runs: the stack, then the extras (never instead)."""
        out = []
        for w in (*self.retrievers, *self.extra_retrievers):
            if isinstance(w.retriever, PinnedRetriever) and self.pinned:
                w = replace(w, retriever=replace(w.retriever, ids=w.retriever.ids + self.pinned))
            out.append(w)
        return tuple(out)

    def settings(self) -> dict[str, Any]:
        """Return the retriever stack, budgets and options as JSON-ready data."""
        return {
            "retrievers": [w.describe() for w in self.stack],
            "budgets": dict(self.budgets.items()),
            "options": self.options.to_json(),
            "required": list(self.required),
            "pinned": list(self.pinned),
        }


@dataclass(frozen=True)
class _Context:
    request: PageRequest
    store: BlockStore
    snapshot: Snapshot
    tokenizer: Tokenizer
    graph: SessionGraph


@collector_paused()
@one_snapshot
def page(store: BlockStore, request: PageRequest) -> PagePlan:
    """Return the plan of what ``request.profile`` should see of the session for the task."""
    _check(request)
    snapshot = reader_for(store).snapshot(store, request.session, request.upto)
    tokenizer = get_tokenizer(request.profile.tokenizer)
    terms = tuple(query_terms(request.task))
    limit = candidate_limit(request.options.limit, request.profile.input_budget, snapshot)
    query = RetrievalQuery(store, request.session, request.task, terms, snapshot, limit)
    graph = SessionGraph(store, snapshot, tokenizer, request.options)
    ctx = _Context(request, store, snapshot, tokenizer, graph)
    tiers = _tiers(ctx, query)
    spread = Spread(request.options.neighbour_kernel, request.options.neighbour_weight)
    fixed = np.array(sorted(tiers), dtype=np.int64)
    pool = build_pool(query, request.stack, spread, fixed)
    items = _items(ctx, pool, tiers) + _outside_items(ctx, pool)
    outcome = run_selection(items, _limits(ctx), graph)
    return _plan(ctx, pool, {i.key: i for i in items} | graph.made, outcome)


def candidate_limit(cap: int, budget: int, snapshot: Snapshot) -> int:
    """Return how many candidates each retriever proposes: ``cap``, or fewer for small budgets.

    Proposing many times more blocks than the budget can hold only costs time, so the limit is
    four budgets' worth of blocks of the session's average size (estimated from its term counts:
    about 1.5 tokens per term plus framing), never under 64.
    """
    stats = snapshot.stats
    average = 1.5 * stats.total_length / max(stats.n_docs, 1) + 8
    return max(64, min(cap, int(4 * budget / average)))


def _check(request: PageRequest) -> None:
    if request.options.limit < 1:
        raise InvalidInput("options.limit must be at least 1 candidate per retriever")
    for w in request.stack:
        if w.weight < 0:
            raise InvalidInput(f"retriever {w.name!r} has a negative weight; use 0 to turn it off")
    if request.options.neighbour_weight < 0:
        raise InvalidInput("options.neighbour_weight must be >= 0")


def _tiers(ctx: _Context, query: RetrievalQuery) -> dict[int, int]:
    """Return seq -> tier for the blocks that are candidates whatever their score."""
    snap, tiers = ctx.snapshot, {}
    standing = [snap.seqs_of(BlockKind.SYSTEM), snap.seqs_of(BlockKind.TOOL_SCHEMA)]
    standing += [snap.seqs_of(k)[-1:] for k in (BlockKind.STATE, BlockKind.PLAN)]
    for seq in np.concatenate(standing).tolist():
        tiers[int(seq)] = TIER_STANDING
    pinned = snap.pinned().tolist() + [
        s for b in ctx.request.pinned for s in seqs_of(query, b)[-1:]
    ]
    for seq in pinned:
        tiers[int(seq)] = TIER_PINNED
    for block_id in ctx.request.required:
        for seq in seqs_of(query, block_id)[-1:]:
            tiers[int(seq)] = TIER_REQUIRED
    return tiers


def _items(ctx: _Context, pool: Pool, tiers: Mapping[int, int]) -> list[Item]:
    seqs = pool.seqs
    scores = zip(pool.merged.tolist(), pool.recency_led.tolist(), strict=True)
    tier_of = [tiers.get(seq, TIER_SCORED) for seq in seqs.tolist()]
    return ctx.graph.make_many(seqs, ctx.graph.costs(seqs), list(scores), tier_of)


def _outside_items(ctx: _Context, pool: Pool) -> list[Item]:
    required = [b for b in ctx.request.required if not ctx.graph.in_session(b)]
    scored = {o.block_id: o.merged for o in pool.outside}
    ids = sorted({ctx.store.resolve(b) for b in required} | set(scored))
    tier = {ctx.store.resolve(b): TIER_REQUIRED for b in required}
    return [
        ctx.graph.make_outside(-2 - n, bid, scored.get(bid, 0.0), tier.get(bid, TIER_SCORED))
        for n, bid in enumerate(ids)
    ]


def _limits(ctx: _Context) -> Limits:
    request, mode = ctx.request, ctx.request.options.render
    headers = {s: mode.pick(*header_costs(ctx.tokenizer, s)) for s in Section}
    options = request.options
    return Limits(
        input_budget=request.profile.input_budget,
        frame=mode.pick(*frame_costs(ctx.tokenizer, request.task)),
        header=headers.__getitem__,
        fractions=lambda variable: allocate(request.budgets, variable),
        threshold=options.threshold,
        flow_unused=options.flow_unused,
        dedupe=options.dedupe,
        summary_substitution=options.summary_substitution and options.follow_edges,
        dependency_depth=options.dependency_depth if options.follow_edges else 0,
    )


def _plan(ctx: _Context, pool: Pool, items: Mapping[int, Item], outcome: Any) -> PagePlan:
    breakdowns = dict(zip(pool.seqs.tolist(), pool.breakdowns(), strict=True))
    outside = {o.block_id: o.scores for o in pool.outside}
    selected, omitted = [], []
    for d in outcome.decisions:
        item = items[d.key]
        scores = outside.get(item.block_id, ()) if item.outside else ()
        if item.seq is not None:
            scores = breakdowns.get(item.seq, ())
        candidate = Candidate(
            item.block_id, item.seq, item.kind, item.section, item.cost, item.priority,
            item.score, scores,
        )  # fmt: skip
        if d.selected:
            selected.append(Selection(candidate, d.reason, d.via))
        else:
            omitted.append(Omission(candidate, d.reason, d.via))
    request = ctx.request
    return PagePlan(
        session=request.session,
        task=request.task,
        upto=ctx.snapshot.upto,
        profile=request.profile,
        tokenizer_version=ctx.tokenizer.version,
        render=request.options.render,
        selected=tuple(sorted(selected, key=selection_key)),
        omitted=tuple(sorted(omitted, key=omission_key)),
        sections=_usage(outcome, _limits(ctx).frame),
        budget=request.profile.input_budget,
        tokens=outcome.total,
        settings=request.settings() | {"score_names": list(pool.names)},
    )


def _usage(outcome: Any, frame: int) -> tuple[SectionUsage, ...]:
    used = dict(outcome.used)
    lines = [SectionUsage(Section.SYSTEM, None, used.get(Section.SYSTEM, 0))]
    lines.append(SectionUsage(Section.TASK, None, frame))
    for section in VARIABLE_SECTIONS:
        lines.append(SectionUsage(section, outcome.allocation.of(section), used.get(section, 0)))
    return tuple(lines)
