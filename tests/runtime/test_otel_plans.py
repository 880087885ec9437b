"""A turn's plan is the same however many turns of its session were planned before it."""

from __future__ import annotations

from runtime.blocks import canonical_json
from runtime.otel.plans import Plans, splice

KINDS = ["tool-schema", "system", "user-message", "assistant-message", "tool-call", "tool-result"]


def _turns():
    """Inputs of growing turns, then one whose earlier blocks differ (other seqs), then a
    shorter one: (ids, kinds, seqs, tokens, n_input)."""
    ids = [f"{i:064x}" for i in range(40)]
    kinds = [KINDS[min(i, 2) if i < 3 else 2 + i % 4] for i in range(40)]
    seqs, tokens = list(range(40)), [10 + i for i in range(40)]
    growing = [(ids[:n], kinds[:n], seqs[:n], tokens[:n], n - 1) for n in (3, 8, 9, 20, 40)]
    moved = [(ids, kinds, [s + (5 if s > 10 else 0) for s in seqs], tokens, 30)]
    return growing + moved + [(ids[:12], kinds[:12], seqs[:12], tokens[:12], 12)]


def test_a_plan_after_other_turns_equals_the_plan_made_alone():
    plans = Plans("s")
    for ids, kinds, seqs, tokens, n in _turns():
        plan = plans.plan(ids, kinds, seqs, tokens, n)
        alone = Plans("s").plan(ids, kinds, seqs, tokens, n)
        assert plan == alone and canonical_json(plan) == canonical_json(alone)
        assert [e["seq"] for e in plan["selected"]] == seqs[:n]


def test_a_spliced_value_is_the_canonical_json_of_the_whole():
    for obj in ({"a": 1, "plan": [1], "z": None}, {"plan": {}}, {"a": "x", "plan": 2.5},
                {"plan": "p", "q": [True]}):  # fmt: skip
        assert splice(obj, "plan", canonical_json(obj["plan"])) == canonical_json(obj)
