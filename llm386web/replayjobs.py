"""Web replays run in a worker thread, registered by id, so the page can poll and cancel them.

A replay POST starts a :class:`ReplayJob` and answers at once; the page polls the job's status
fragment ("waiting for the model… N s", with a Cancel button) until it is done. Cancelling, or
the job running past ``REPLAY_TIMEOUT_S``, ends the wait at once: the page says so, and the
call is recorded as ``cancelled`` (runtime.replay.resend records every send) with whatever it got
discarded. The HTTP client is not closed under the call: closing it does not interrupt a
blocked read (measured: the read still ran to its timeout) and a retry would then fail on a
closed client instead of being recorded. The worker closes it when the call returns, which the
client's total timeout (REPLAY_TIMEOUT_S) bounds.

Jobs live in this process (runserver is one process); finished ones are forgotten after
``KEEP_FINISHED_S``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.errors import Llm386Error, ModelCallFailed, ModelRetired, ReplayMismatch
from runtime.inspect.replay import ReplayView, replay_view
from runtime.providers import Attempt, ModelClient, ModelResponse, RawResponse
from runtime.replay.resend import NotReplayable, replay
from runtime.tracing.records import TraceStore

CANCELLED = "cancelled"
KEEP_FINISHED_S = 600.0
WAIT_GRACE_S = 5.0
clock: Callable[[], float] = time.monotonic

_lock = threading.Lock()
_jobs: dict[str, ReplayJob] = {}


@dataclass
class ReplayJob:
    """One replay in flight or finished: what the status fragment shows."""

    id: str
    call_id: str
    timeout_s: float
    started: float = field(default_factory=lambda: clock())
    finished: float | None = None
    cancel_reason: str = ""
    result: ReplayView | None = None
    problem: str = ""
    warnings: tuple[str, ...] = ()
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def elapsed_s(self) -> int:
        return int((self.finished if self.finished is not None else clock()) - self.started)

    @property
    def running(self) -> bool:
        return not self.done.is_set() and not self.cancel_reason

    def overdue(self) -> bool:
        return self.running and clock() - self.started > self.timeout_s


class CancellableClient:
    """A model client whose call, once cancelled, is recorded as cancelled whatever it returns."""

    def __init__(self, inner: ModelClient, job: ReplayJob) -> None:
        self.inner, self.job = inner, job
        self.provider = inner.provider

    def send(self, request_bytes: bytes, *, expected_sha256: str | None) -> ModelResponse:
        try:
            response = self.inner.send(request_bytes, expected_sha256=expected_sha256)
        except ModelCallFailed as exc:
            self._raise_if_cancelled(exc.attempts)
            raise
        self._raise_if_cancelled(response.attempts)
        return response

    def send_raw(self, request_bytes: bytes, *, expected_sha256: str | None) -> RawResponse:
        response = self.inner.send_raw(request_bytes, expected_sha256=expected_sha256)
        self._raise_if_cancelled(())
        return response

    def _raise_if_cancelled(self, attempts: tuple[Attempt, ...]) -> None:
        if self.job.cancel_reason:
            raise ModelCallFailed(
                f"{self.job.cancel_reason} after {self.job.elapsed_s} s; whatever the model "
                "sent afterwards was not kept. Replay again to retry",
                error_type=CANCELLED,
                attempts=attempts,
            )

    def close(self) -> None:
        self.inner.close()


def start(traces: TraceStore, call_id: str, client: ModelClient, timeout_s: float) -> ReplayJob:
    """Start replaying ``call_id`` through ``client`` in a worker thread; return its job."""
    job = ReplayJob(secrets.token_urlsafe(12), call_id, timeout_s)
    wrapped = CancellableClient(client, job)
    with _lock:
        _forget_finished()
        _jobs[job.id] = job
    worker = threading.Thread(
        target=_run, args=(job, traces, wrapped), name=f"llm386-replay-{job.id}", daemon=True
    )
    worker.start()
    return job


def _run(job: ReplayJob, traces: TraceStore, client: CancellableClient) -> None:
    try:
        replayed = replay(traces, job.call_id, client)
        job.result, job.warnings = replay_view(replayed), tuple(replayed.warnings)
    except (NotReplayable, ReplayMismatch, ModelRetired) as exc:
        job.problem = str(exc)
    except Llm386Error as exc:  # e.g. the store became read-only: say so on the page
        job.problem = str(exc)
    finally:
        client.close()
        job.finished = clock()
        job.done.set()


def get(job_id: str) -> ReplayJob | None:
    """Return the job, first cancelling it if it ran past its timeout."""
    with _lock:
        job = _jobs.get(job_id)
    if job is not None and job.overdue():
        cancel(job, f"gave up waiting for the model after {job.timeout_s:g} s")
    return job


def cancel(job: ReplayJob, reason: str = "cancelled from the web page") -> None:
    """Stop waiting for ``job``: the page says so at once, and the call is recorded as cancelled."""
    if not job.running:
        return
    job.cancel_reason = reason
    job.finished = clock()
    job.problem = f"The replay was {reason}."


def wait(job: ReplayJob) -> ReplayJob:
    """Block until ``job`` is done (pages without JavaScript wait like this).

    The client's own total timeout ends the call first; the job is given up only if the call
    outlives it by ``WAIT_GRACE_S`` (a client that does not honour it).
    """
    if not job.done.wait(job.timeout_s + WAIT_GRACE_S):
        cancel(job, f"gave up waiting for the model after {job.timeout_s:g} s")
    return job


def _forget_finished() -> None:
    now = clock()
    for job_id in [
        j.id for j in _jobs.values() if j.finished and now - j.finished > KEEP_FINISHED_S
    ]:
        del _jobs[job_id]
