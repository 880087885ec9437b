"""Variance: send a recorded turn's exact bytes N times and group what came back.

Owns: ``estimate_samples`` (what N sends will cost, shown before anything is sent),
``sample`` (send, record, group) and the grouping (``cluster_outputs``, ``Cluster``,
``VarianceResult`` with its verdict).

Grouping, in this order, each step deterministic:
1. exact: outputs with the same text and tool calls, byte for byte;
2. tool call: outputs that call the same tools with the same arguments, whatever they say;
3. text: outputs without tool calls whose text is within ``SIMILAR`` of a group's first output
   (difflib's ratio, which depends on the two strings alone).
Groups are taken largest first, ties by their text, so the same outputs give the same groups.
The verdict compares the original's own output with the groups: ``flaky`` when what the turn
did (the failing behaviour, if it was flagged) is not what most samples do.

Invariants:
- At most ``MAX_SAMPLES`` sends, at most ``concurrency`` at a time; the caller confirms the
  estimate first (the CLI's ``--yes``, the web page's confirm step).
- Every sample is a child record of the original with its experiment row (change ``none``, one
  group id), and the whole batch is written in one transaction after the last answer: a run
  that stops half-way records nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from typing import Any

from runtime.errors import InvalidInput
from runtime.progress import Progress
from runtime.providers import ModelClient, Usage, get_provider
from runtime.replay.edits import Change, ChangeKind
from runtime.replay.experiment import Prepared, prepare, row_for, send_prepared, stored
from runtime.replay.experimentlog import record_experiments
from runtime.replay.resend import output_text
from runtime.storage.interface import BlockStore
from runtime.tracing.record import SentCall, provider_of
from runtime.tracing.records import TraceRecord, TraceStore

MAX_SAMPLES = 50
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 8  # sends at once, whatever is asked: a provider's rate limit is shared
SIMILAR = 0.8  # difflib ratio at or above which two texts are one behaviour


@dataclass(frozen=True)
class SampleEstimate:
    """What sending a turn N times will cost, before anything is sent: each send's input is the
    recorded request's, and its answer is assumed as long as the recorded one."""

    samples: int
    input_tokens_each: int
    output_tokens_each: int  # the recorded answer's length (reported, else the local estimate)
    cost_usd: float | None  # list-price input and output cost of all N (None: unpriced, offline)
    target: str  # the provider's label and model

    def text(self) -> str:
        cost = (
            "unpriced"
            if self.cost_usd is None
            else f"~${self.cost_usd:.4f} (input and output, list price)"
        )
        each = self.input_tokens_each + self.output_tokens_each
        return (
            f"{self.samples} sends of {self.input_tokens_each:,} input tokens each "
            f"(answers of about {self.output_tokens_each:,} tokens, as recorded) to "
            f"{self.target}: {self.samples * each:,} tokens, {cost}"
        )

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "input_tokens_each": self.input_tokens_each,
                "output_tokens_each": self.output_tokens_each, "cost_usd": self.cost_usd,
                "target": self.target}  # fmt: skip


@dataclass(frozen=True)
class Output:
    """What one record said, as grouping sees it."""

    call_id: str
    text: str
    tools: tuple[str, ...]  # each tool call as "name canonical-input"

    @classmethod
    def of(cls, record: TraceRecord) -> Output:
        if record.error is not None:
            return cls(record.call_id, f"[error {record.error.type}]", ())
        text = output_text(record)
        calls = tuple(line for line in text.splitlines() if line.startswith("[tool_use "))
        return cls(record.call_id, text, calls)


@dataclass(frozen=True)
class Cluster:
    """One behaviour: the samples that did it, how they were grouped, and a representative."""

    members: tuple[str, ...]  # call ids
    text: str  # the first member's output
    tools: tuple[str, ...]
    how: str  # exact | tool call | text

    @property
    def size(self) -> int:
        return len(self.members)

    def to_json(self) -> dict[str, Any]:
        return {"members": list(self.members), "size": self.size, "text": self.text,
                "tools": list(self.tools), "how": self.how}  # fmt: skip


@dataclass(frozen=True)
class VarianceResult:
    """N samples of one turn, grouped, and whether the turn's own behaviour is the majority."""

    original: TraceRecord
    records: tuple[TraceRecord, ...]
    clusters: tuple[Cluster, ...]
    original_cluster: int | None  # the index of the group the original's output falls in
    estimate: SampleEstimate

    @property
    def verdict(self) -> str:
        """``flaky`` when the original's behaviour is not most samples', else ``reproduces``."""
        if self.original_cluster is None:
            return "flaky"
        share = self.clusters[self.original_cluster].size / max(1, len(self.records))
        return "reproduces" if share > 0.5 else "flaky"

    def explanation(self) -> str:
        n = len(self.records)
        what = "the failing behaviour" if self.original.flagged else "the recorded behaviour"
        if self.original_cluster is None:
            return f"no sample of {n} did what the turn did: {what} is not the majority"
        size = self.clusters[self.original_cluster].size
        return f"{size} of {n} samples did what the turn did ({what})"

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.original.call_id, "samples": [r.call_id for r in self.records],
            "clusters": [c.to_json() for c in self.clusters],
            "original_cluster": self.original_cluster, "verdict": self.verdict,
            "explanation": self.explanation(), "estimate": self.estimate.to_json(),
        }  # fmt: skip


def check_samples(n: int) -> int:
    """Return ``n`` if it is a number of samples llm386 sends, else raise InvalidInput."""
    if not 1 <= n <= MAX_SAMPLES:
        raise InvalidInput(f"--samples takes 1 to {MAX_SAMPLES} sends (got {n})")
    return n


def estimate_samples(record: TraceRecord, client: ModelClient, n: int) -> SampleEstimate:
    """Return what sending ``record``'s bytes ``n`` times through ``client`` would cost."""
    provider = get_provider(provider_of(client))
    used = record.usage.total_input_tokens if record.usage else None
    tokens = used or record.estimated_input_tokens or max(1, record.request_size // 4)
    model = (
        record.model
        if provider.name == record.provider.value
        else provider.answering_model(record.model)
    )
    answer = record.usage.output_tokens if record.usage else record.estimated_output_tokens
    out = max(0, answer or 0)
    each = provider.call_price(Usage(tokens, out), model)
    target = f"{provider.label} ({provider.model_label(model)})"
    cost = None if each is None else each * n
    return SampleEstimate(check_samples(n), tokens, out, cost, target)


def sample(
    store: BlockStore, traces: TraceStore, call_id: str, client: ModelClient, n: int,
    *, who: str, concurrency: int = DEFAULT_CONCURRENCY, progress: Progress | None = None,
) -> VarianceResult:  # fmt: skip
    """Send ``call_id``'s bytes ``n`` times (``concurrency`` at once), record them, group them."""
    prepared = prepare(store, traces, call_id, Change(ChangeKind.NONE))
    estimate = estimate_samples(prepared.original, client, n)
    sent = _send_all(
        prepared, client, n, who, max(1, min(concurrency, n, MAX_CONCURRENCY)), progress
    )
    group = sent[0].record.call_id
    rows = [row_for(_numbered(prepared, i, n), s, who, group) for i, s in enumerate(sent)]
    records = record_experiments(traces, [(stored(s), r) for s, r in zip(sent, rows, strict=True)])
    clusters = cluster_outputs([Output.of(r) for r in records])
    where = find_cluster(clusters, Output.of(prepared.original))
    return VarianceResult(prepared.original, tuple(records), clusters, where, estimate)


def _numbered(prepared: Prepared, i: int, n: int) -> Prepared:
    return replace(prepared, notes=(f"sample {i + 1} of {n}",))


def _send_all(
    prepared: Prepared, client: ModelClient, n: int, who: str, workers: int,
    progress: Progress | None,
) -> list[SentCall]:  # fmt: skip
    out: list[SentCall | None] = [None] * n
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm386-sample") as pool:
        futures = {pool.submit(send_prepared, prepared, client, who): i for i in range(n)}
        for future in as_completed(futures):
            out[futures[future]] = future.result()
            if progress is not None:
                progress.advance()
    # Ids are made in send order; the batch is kept in that order for a stable listing.
    return sorted((s for s in out if s is not None), key=lambda s: s.record.call_id)


# -- grouping ------------------------------------------------------------------------------------


def cluster_outputs(outputs: Sequence[Output]) -> tuple[Cluster, ...]:
    """Group outputs: exact-equal first, then by tool calls, then by text distance."""
    exact: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for out in outputs:
        exact.setdefault((out.text, out.tools), []).append(out.call_id)
    ordered = sorted(exact.items(), key=lambda item: (-len(item[1]), item[0]))
    clusters: list[Cluster] = []
    for (text, tools), members in ordered:
        at = _matching(clusters, text, tools)
        if at is None:
            clusters.append(Cluster(tuple(members), text, tools, "exact"))
        else:
            c = clusters[at]
            how = "tool call" if tools else "text"
            clusters[at] = replace(c, members=c.members + tuple(members), how=how)
    return tuple(sorted(clusters, key=lambda c: (-c.size, c.text)))


def _matching(clusters: Sequence[Cluster], text: str, tools: tuple[str, ...]) -> int | None:
    for i, c in enumerate(clusters):
        if c.text == text and c.tools == tools:
            return i
    for i, c in enumerate(clusters):
        if tools and c.tools == tools:
            return i
    for i, c in enumerate(clusters):
        if not tools and not c.tools and similarity(c.text, text) >= SIMILAR:
            return i
    return None


def similarity(a: str, b: str) -> float:
    """Return how alike two texts are, 0 to 1 (difflib's ratio: the same for the same texts)."""
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def find_cluster(clusters: Sequence[Cluster], output: Output) -> int | None:
    """Return the index of the group ``output`` belongs to, by the same rules, or None."""
    return _matching(clusters, output.text, output.tools)
