"""A replay and an experiment for the demo, made by the product's own replay and experiment code
and sent to the offline model (nothing is spent).

Owns: ``load_derived``, ``demo_replays`` and ``demo_experiments`` (what the web's demo command
writes audit rows for).

Which turns: the budget-pressure session's last turn is replayed unchanged (the Replay button's
path, ``runtime.replay.resend.replay``); the turn before it is re-sent with one request parameter
changed (``runtime.replay.experiment.run_experiment``, as ``llm386 replay ID --set`` does).

Invariants: runs after ``runtime.demo.budget`` (it needs that session; without it nothing is
made and the summary says so); idempotent: a turn that already has its demo replay or experiment
gets no other.
"""

from __future__ import annotations

from runtime.demo.budget import BUDGET_CONVERSATIONS
from runtime.providers import OfflineModel
from runtime.replay.edits import Change, ChangeKind
from runtime.replay.experiment import EXPERIMENT_KEY, run_experiment
from runtime.replay.experimentlog import ExperimentLog, ExperimentRow
from runtime.replay.resend import replay, replays_of
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceRecord, TraceStore

WHO = "llm386 demo"
SESSION = BUDGET_CONVERSATIONS[0][0]
EXPERIMENT = Change(ChangeKind.PARAM, "temperature", 0.0)


def _targets(traces: TraceStore) -> tuple[str, str] | None:
    """Return the (replayed, experimented) call ids: the session's last two recorded turns."""
    live = [cid for _, cid in sorted(traces.turns(SESSION))
            if traces.get(cid).parent_call_id is None]  # fmt: skip
    return (live[-1], live[-2]) if len(live) >= 2 else None


def demo_replays(traces: TraceStore) -> list[TraceRecord]:
    """Return the demo's replays (records re-sent unchanged from its replayed turn)."""
    targets = _targets(traces)
    if targets is None:
        return []
    return [r for r in replays_of(traces, targets[0]) if EXPERIMENT_KEY not in r.config]


def demo_experiments(traces: TraceStore) -> list[ExperimentRow]:
    """Return the experiment rows of the demo's experimented turn."""
    targets = _targets(traces)
    return [] if targets is None else ExperimentLog(traces).children(targets[1])


def load_derived(store: BlockStore, traces: TraceStore) -> str:
    """Replay one demo turn and experiment on another, if not done yet; return a summary."""
    targets = _targets(traces)
    if targets is None:
        return f"replay and experiment: skipped, session {SESSION} has fewer than two turns."
    if demo_replays(traces) and demo_experiments(traces):
        return "replay and experiment: already made."
    made = []
    if not demo_replays(traces):
        result = replay(traces, targets[0], OfflineModel())
        made.append(f"turn {result.original.turn} replayed "
                    f"({'bytes identical' if result.bytes_matched else 'bytes differ'})")  # fmt: skip
    if not demo_experiments(traces):
        done = run_experiment(store, traces, targets[1], EXPERIMENT, OfflineModel(), who=WHO)
        made.append(f"turn {done.prepared.original.turn}: {done.row.description}")
    return f"replay and experiment with the offline model: {'; '.join(made)}."
