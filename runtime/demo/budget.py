"""Sample-agent sessions under budget pressure: the agent, the pager and demand paging, run with a
model whose context window is cut down, so later turns leave blocks out and say why.

Owns: ``BUDGET_CONVERSATIONS``, ``tight_profile`` and ``load_budget_sessions``.

Invariants: the profile is a real one (its name, tokenizer and abilities) with only its context
window shrunk, recorded as such in each trace; the conversations run with the offline model, so
the records are deterministic and replayable offline.
"""

from __future__ import annotations

from dataclasses import replace

from runtime.agent.core import DEFAULT_MODEL, create_demo_conversations
from runtime.profiles.catalog import ModelProfile, get_profile
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceStore

# Tokens left for the prompt: the system prompt, the tool schemas and a few exchanges fit; a
# long conversation of look-ups does not, so the pager omits what scores least.
TIGHT_INPUT_BUDGET = 1000

BUDGET_CONVERSATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("demo-budget-pressure", "Sample agent under a 1,000-token budget: turns omit blocks",
     ("Show me the profile of user u-1001.", "Who is user u-1002?", "What is 12 * 34?",
      "And who is user u-1003?", "What is 99 + 1?", "Summarise what we talked about.")),
)  # fmt: skip


def tight_profile(name: str = DEFAULT_MODEL, budget: int = TIGHT_INPUT_BUDGET) -> ModelProfile:
    """Return model ``name``'s profile with a context window that leaves ``budget`` for input."""
    base = get_profile(name)
    context = budget + base.reserved_output_tokens + base.safety_margin_tokens
    return replace(base, max_context_tokens=context)


def load_budget_sessions(store: BlockStore, traces: TraceStore) -> str:
    """Run the budget-pressure conversations (idempotent); return a one-line summary."""
    report = create_demo_conversations(store, traces, profile=tight_profile(),
                                       conversations=BUDGET_CONVERSATIONS)  # fmt: skip
    if not report.created:
        return f"budget pressure: all {len(report.sessions)} session(s) already loaded."
    omitted = sum(len(traces.get(cid).plan.get("omitted") or ())
                  for s in report.created for _, cid in traces.turns(s))  # fmt: skip
    return (
        f"budget pressure: {len(report.created)} sample-agent session(s) with a "
        f"{TIGHT_INPUT_BUDGET:,}-token budget ({report.model_calls} calls, {omitted} blocks "
        "omitted with their reasons)."
    )
