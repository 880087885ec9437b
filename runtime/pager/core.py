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
  breakdown and its tokens: listed, or counted in ``PagePlan.unlisted`` and made on demand by
  ``PagePlan.every_omission`` (past ``OMITTED_LISTED`` omissions, and past the selection
  horizon of ``runtime.pager.pool``). The planned tokens never exceed the profile's input budget
  in the request's render mode (``runtime.packer.rendering`` defines the costs).
- A user retriever passed in ``extra_retrievers`` adds to ``retrievers``; it never replaces them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

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
    OmissionReason,
    PagePlan,
    SectionUsage,
    Selection,
    SelectionReason,
    omission_key,
    selection_key,
)
from runtime.pager.pool import Beyond, Horizon, Pool, Spread, among, breakdowns, build_pool
from runtime.pager.retrievers import (
    NEIGHBOUR_KERNEL,
    PinnedRetriever,
    RetrievalQuery,
    Weighted,
    default_stack,
    seqs_of,
)
from runtime.pager.sections import VARIABLE_SECTIONS, Section, allocate, section_of
from runtime.pager.selection import (
    TIER_PINNED,
    TIER_REQUIRED,
    TIER_SCORED,
    TIER_STANDING,
    Decision,
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
    limit: int | None = None  # a cap on the horizon's candidates; None: the budget decides
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
    budget = request.profile.input_budget
    limit = candidate_limit(request.options.limit, budget, snapshot)
    query = RetrievalQuery(store, request.session, request.task, terms, snapshot, limit)
    graph = SessionGraph(store, snapshot, tokenizer, request.options)
    ctx = _Context(request, store, snapshot, tokenizer, graph)
    tiers = _tiers(ctx, query)
    spread = Spread(request.options.neighbour_kernel, request.options.neighbour_weight)
    fixed = np.array(sorted(tiers), dtype=np.int64)
    horizon = Horizon(
        HORIZON_BUDGETS * budget, graph.cost_array, MIN_CANDIDATES, request.options.limit
    )
    pool = build_pool(query, request.stack, spread, fixed, horizon)
    inside, outside = _items(ctx, pool, tiers), _outside_items(ctx, pool)
    # Sorted as arrays; with blocks from outside the session (seq None, ties broken by block id)
    # selection sorts the items itself.
    ordered = None if outside else [inside[n] for n in _order(ctx, pool, tiers).tolist()]
    items = inside + outside
    outcome = run_selection(items, _limits(ctx), graph, ordered)
    return _plan(ctx, pool, {i.key: i for i in items} | graph.made, outcome)


HORIZON_BUDGETS = 2  # selection looks this many input budgets of tokens down the merged order
MIN_CANDIDATES = 64  # and at never fewer candidates than this


def candidate_limit(cap: int | None, budget: int, snapshot: Snapshot) -> int:
    """Return how many blocks each retriever proposes: four budgets' worth of blocks of the
    session's average size (estimated from its term counts: about 1.5 tokens per term plus
    framing), never under 64, and never over ``cap`` when one is given.

    Proposals only matter for user retrievers (a block they do not list scores 0): the built-in
    retrievers score every block of the session.
    """
    stats = snapshot.stats
    average = 1.5 * stats.total_length / max(stats.n_docs, 1) + 8
    wanted = int(4 * budget / average)
    return max(MIN_CANDIDATES, wanted if cap is None else min(cap, wanted))


def _check(request: PageRequest) -> None:
    if request.options.limit is not None and request.options.limit < 1:
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
    tier_of = [tiers.get(seq, TIER_SCORED) for seq in seqs.tolist()]
    scores, led = pool.merged.tolist(), pool.recency_led.tolist()
    return ctx.graph.make_many(seqs, ctx.graph.costs(seqs), scores, led, tier_of)


def _order(ctx: _Context, pool: Pool, tiers: Mapping[int, int]) -> np.ndarray:
    """Return the positions of the pool's seqs in ``selection.order_key`` order: tier, merged
    score descending, priority descending, seq descending (seqs differ, so no tie is left)."""
    seqs, size = pool.seqs, pool.seqs.shape[0]
    tier = np.full(size, TIER_SCORED, dtype=np.int64)
    if tiers and size:
        fixed = np.array(sorted(tiers), dtype=np.int64)
        at = np.clip(np.searchsorted(seqs, fixed), 0, size - 1)
        found = seqs[at] == fixed
        tier[at[found]] = [tiers[seq] for seq in fixed[found].tolist()]
    prio = ctx.snapshot.records["prio"][seqs].astype(np.float64)
    return np.lexsort((-seqs, -prio, -pool.merged, tier))


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


OMITTED_LISTED = 256  # omissions a plan lists (the best scored); the rest are made on demand


def _plan(ctx: _Context, pool: Pool, items: Mapping[int, Item], outcome: Any) -> PagePlan:
    chosen: list[tuple[Item, Decision]] = []
    left: list[tuple[Item, Decision]] = []
    for d in outcome.decisions:
        (chosen if d.selected else left).append((items[d.key], d))
    rest: list[tuple[Item, Decision]] = []
    if len(left) > OMITTED_LISTED:
        left.sort(key=lambda pair: (-pair[0].score, -_seq(pair[0]), pair[0].block_id))
        left, rest = left[:OMITTED_LISTED], left[OMITTED_LISTED:]
    selected = [
        Selection(c, cast(SelectionReason, d.reason), d.via) for c, d in _candidates(pool, chosen)
    ]
    omitted = [
        Omission(c, cast(OmissionReason, d.reason), d.via) for c, d in _candidates(pool, left)
    ]
    request = ctx.request
    unlisted = _unlisted(ctx, pool, items, tuple(rest))
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
        unlisted=0 if unlisted is None else unlisted.count,
        beyond=unlisted,
    )


def _seq(item: Item) -> int:
    return -1 if item.seq is None else item.seq


def _candidates(
    pool: Pool, decided: Sequence[tuple[Item, Decision]]
) -> list[tuple[Candidate, Decision]]:
    """Return the candidate of each decided item, with its score breakdown."""
    outside = {o.block_id: o.scores for o in pool.outside}
    inside = pool.breakdowns_of([_seq(item) for item, _ in decided])
    out = []
    for (item, d), scores in zip(decided, inside, strict=True):
        if item.seq is None:
            scores = outside.get(item.block_id, ()) if item.outside else ()
        candidate = Candidate(
            item.block_id, item.seq, item.kind, item.section, item.cost, item.priority,
            item.score, scores,
        )  # fmt: skip
        out.append((candidate, d))
    return out


@dataclass(frozen=True)
class Unlisted:
    """The omissions a plan does not list: blocks past the horizon that selection never
    reached (arrays), and omissions past ``OMITTED_LISTED`` (decided, made into objects here).

    A block past the horizon is ``below-threshold`` if its merged score is under the threshold,
    else ``global-budget``: two budgets' worth of better-scored blocks came before it.
    """

    beyond: Beyond | None
    rest: tuple[tuple[Item, Decision], ...]
    pool: Pool
    graph: SessionGraph
    threshold: float

    @property
    def count(self) -> int:
        return len(self.rest) + (0 if self.beyond is None else self.beyond.count)

    def omissions(self) -> list[Omission]:
        """Return every unlisted omission (costs counted now, if not cached)."""
        out = [
            Omission(c, cast(OmissionReason, d.reason), d.via)
            for c, d in _candidates(self.pool, self.rest)
        ]
        beyond, graph = self.beyond, self.graph
        if beyond is None:
            return out
        pairs = breakdowns(beyond.seqs, beyond.names, beyond.normalised, beyond.seqs)
        rows = zip(
            beyond.seqs.tolist(), graph.costs(beyond.seqs), beyond.merged.tolist(), pairs,
            strict=True,
        )  # fmt: skip
        for seq, cost, merged, scores in rows:
            kind = graph.snapshot.kind(seq)
            prio = float(graph.snapshot.records["prio"][seq])
            candidate = Candidate(
                graph.snapshot.block_id(seq), seq, kind, section_of(kind), cost, prio, merged,
                scores,
            )  # fmt: skip
            below = merged < self.threshold
            reason = OmissionReason.BELOW_THRESHOLD if below else OmissionReason.GLOBAL_BUDGET
            out.append(Omission(candidate, reason))
        return out


def _unlisted(
    ctx: _Context, pool: Pool, items: Mapping[int, Item], rest: tuple[tuple[Item, Decision], ...]
) -> Unlisted | None:
    """Return what the plan does not list, or None when it lists every omission."""
    beyond = pool.beyond
    if beyond is not None:
        decided = np.array([k for k in items if k >= 0], dtype=np.int64)
        beyond = beyond.only(~among(beyond.seqs, decided))
    if not rest and (beyond is None or beyond.count == 0):
        return None
    return Unlisted(beyond, rest, pool, ctx.graph, ctx.request.options.threshold)


def _usage(outcome: Any, frame: int) -> tuple[SectionUsage, ...]:
    used = dict(outcome.used)
    lines = [SectionUsage(Section.SYSTEM, None, used.get(Section.SYSTEM, 0))]
    lines.append(SectionUsage(Section.TASK, None, frame))
    for section in VARIABLE_SECTIONS:
        lines.append(SectionUsage(section, outcome.allocation.of(section), used.get(section, 0)))
    return tuple(lines)
