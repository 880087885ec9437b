"""Variance runs from the web: N sends of a turn's bytes in a worker thread, polled by the page.

A confirmed samples POST starts a :class:`SampleJob` and answers at once with a status fragment
("12 of 20 answered") that polls the job until the grouped result is ready. The runtime records
the whole batch in one transaction after the last answer (runtime.replay.variance), so a run
that fails half-way records nothing and the page says why.

Jobs live in this process (runserver is one process); finished ones are forgotten after
``KEEP_FINISHED_S``.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from dataclasses import dataclass, field

from runtime.errors import Llm386Error
from runtime.progress import Progress
from runtime.providers import ModelClient, get_provider
from runtime.replay.variance import VarianceResult, sample
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceStore

KEEP_FINISHED_S = 600.0


@dataclass
class SampleJob:
    """One variance run in flight or finished: what the status fragment shows."""

    id: str
    call_id: str  # the turn sampled
    n: int  # sends asked for
    progress: Progress  # counts the answers (the runtime advances it)
    note: str = ""  # why the offline model answered, when it stood in
    result: VarianceResult | None = None
    problem: str = ""
    finished: float | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    @property
    def answered(self) -> int:
        return self.progress.done

    @property
    def cost_usd(self) -> float | None:
        """The batch's input cost at list price (None: unpriced, e.g. the offline model)."""
        if self.result is None:
            return None
        costs = [get_provider(r.provider).price(r.usage, r.model) for r in self.result.records]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    def summary(self) -> str:
        if self.result is None:
            return "no outcome"
        return f"{self.result.verdict}: {self.result.explanation()}"


_lock = threading.Lock()
_jobs: dict[str, SampleJob] = {}  # by id: the jobs of this process


def start(
    store: BlockStore, traces: TraceStore, call_id: str, client: ModelClient, n: int,
    *, who: str, note: str = "",
) -> SampleJob:  # fmt: skip
    """Start sending ``call_id``'s bytes ``n`` times through ``client``; return its job."""
    progress = Progress("sampling", n, unit="sends", stream=io.StringIO(), mode="off")
    job = SampleJob(secrets.token_urlsafe(12), call_id, n, progress, note)
    with _lock:
        _forget_finished()
        _jobs[job.id] = job
    worker = threading.Thread(target=_run, args=(job, store, traces, client, who),
                              name=f"llm386-samples-{job.id}", daemon=True)  # fmt: skip
    worker.start()
    return job


def _run(
    job: SampleJob, store: BlockStore, traces: TraceStore, client: ModelClient, who: str
) -> None:
    try:
        job.result = sample(store, traces, job.call_id, client, job.n, who=who,
                            progress=job.progress)  # fmt: skip
    except Llm386Error as exc:  # a refusal, or a send that failed outright: nothing recorded
        job.problem = f"{exc} Nothing of this run was recorded."
    finally:
        client.close()
        job.finished = time.monotonic()
        job.done.set()


def get(job_id: str) -> SampleJob | None:
    """Return the job called ``job_id``, or None if there is none (or it was forgotten)."""
    with _lock:
        return _jobs.get(job_id)


def _forget_finished() -> None:
    now = time.monotonic()
    for job_id in [
        j.id for j in _jobs.values() if j.finished and now - j.finished > KEEP_FINISHED_S
    ]:
        del _jobs[job_id]
