"""Selection gives exactly the decisions of the reference rules, on random candidates.

``tests/runtime/reference_selection.py`` is the selection module as it was before issue 16's
speed work. Both run over the same random candidates (ties in score, duplicates, tool pairs,
missing partners, dependencies, summaries, every tier) with the same limits; every decision, the
section use, the allocation and the total must be equal, with and without the caller's order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.blocks import BlockKind
from runtime.config import BudgetFractions
from runtime.errors import BudgetTooSmall
from runtime.pager import selection
from runtime.pager.sections import Section, allocate, section_of
from tests.runtime import reference_selection as reference

KINDS = [
    BlockKind.USER_MESSAGE, BlockKind.ASSISTANT_MESSAGE, BlockKind.TOOL_CALL,
    BlockKind.TOOL_RESULT, BlockKind.FACT, BlockKind.SUMMARY, BlockKind.SYSTEM,
    BlockKind.DOCUMENT_CHUNK, BlockKind.STATE,
]  # fmt: skip
TOOLS = (BlockKind.TOOL_CALL, BlockKind.TOOL_RESULT)


@dataclass(frozen=True)
class Row:
    """One block's fields, from which both modules' items are made."""

    key: int
    block_id: str
    kind: BlockKind
    cost: int
    priority: float
    score: float
    tier: int
    recency_led: bool
    partner: int | None


@dataclass
class Graph:
    """A fake session: rows by key, dependency and summary edges; makes either module's items."""

    rows: dict[int, Row]
    deps: dict[int, list[int]]
    sums: dict[int, list[int]]
    module: object = None
    made: dict[int, object] = field(default_factory=dict)

    def make(self, row: Row) -> object:
        return self.module.Item(  # type: ignore[attr-defined]
            row.key, row.block_id, row.key, row.kind, section_of(row.kind), row.cost,
            row.priority, row.score, row.tier, row.recency_led, row.partner, False,
        )  # fmt: skip

    def item(self, key: int) -> object:
        if key not in self.made:
            self.made[key] = self.make(self.rows[key])
        return self.made[key]

    def dependencies(self, item) -> list:
        return [self.item(k) for k in self.deps.get(item.key, [])]

    def summaries(self, item) -> list:
        return [self.item(k) for k in self.sums.get(item.key, [])]

    def summarised(self, item) -> bool:
        return bool(self.sums.get(item.key))


@st.composite
def sessions(draw):
    size = draw(st.integers(1, 60))
    rows: dict[int, Row] = {}
    for key in range(size):
        kind = draw(st.sampled_from(KINDS))
        partner = None
        if kind in TOOLS:
            partner = draw(st.sampled_from([-1, None, key - 1, key + 1]))
            partner = None if partner == size else partner
        rows[key] = Row(
            key,
            f"{draw(st.integers(0, size // 2)):064x}",  # repeats: duplicates
            kind,
            draw(st.integers(0, 400)),
            draw(st.sampled_from([0.2, 0.5, 0.9])),
            draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0])),  # ties in score
            draw(st.sampled_from([0, 1, 2, 3, 3, 3, 3, 3])) if key else 3,
            draw(st.booleans()),
            partner if partner is None or partner < size else None,
        )
    keys = st.sampled_from(sorted(rows))
    deps = draw(st.dictionaries(keys, st.lists(keys, max_size=3), max_size=size // 3))
    sums = draw(st.dictionaries(keys, st.lists(keys, max_size=2), max_size=size // 4))
    listed = draw(st.lists(keys, unique=True, min_size=1))  # the rest only reachable by edges
    return rows, deps, sums, listed


limits = st.fixed_dictionaries(
    {
        "input_budget": st.integers(0, 6000),
        "frame": st.integers(0, 300),
        "headers": st.lists(st.integers(0, 20), min_size=len(Section), max_size=len(Section)),
        "threshold": st.sampled_from([0.0, 0.0, 0.1, 0.3]),
        "flow_unused": st.booleans(),
        "dedupe": st.booleans(),
        "summary_substitution": st.booleans(),
        "dependency_depth": st.integers(0, 2),
    }
)


def _run(module, session, spec, *, ordered: bool):
    rows, deps, sums, listed = session
    graph = Graph(rows, deps, sums, module)
    items = [graph.make(rows[k]) for k in listed]
    headers = dict(zip(Section, spec["headers"], strict=True))
    limits = module.Limits(
        input_budget=spec["input_budget"], frame=spec["frame"], header=headers.__getitem__,
        fractions=lambda variable: allocate(BudgetFractions(), variable),
        threshold=spec["threshold"], flow_unused=spec["flow_unused"], dedupe=spec["dedupe"],
        summary_substitution=spec["summary_substitution"],
        dependency_depth=spec["dependency_depth"],
    )  # fmt: skip
    try:
        if ordered:
            by_order = sorted(items, key=module.order_key)
            outcome = module.select(items, limits, graph, by_order)
        else:
            outcome = module.select(items, limits, graph)
    except BudgetTooSmall as error:
        return ("too small", str(error))
    decisions = [tuple(d) for d in outcome.decisions]
    return decisions, outcome.used, outcome.allocation, outcome.total


@settings(max_examples=400, deadline=None)
@given(session=sessions(), spec=limits)
def test_selection_decides_exactly_as_the_reference_rules(session, spec):
    want = _run(reference, session, spec, ordered=False)
    assert _run(selection, session, spec, ordered=False) == want
    assert _run(selection, session, spec, ordered=True) == want
