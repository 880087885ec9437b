"""The audit log of actions that spend or record: who replayed, re-paged or experimented on which
turn, when, with what outcome and cost. Rows live in llm386web.models.Action (the login database).

A replay's row is written when it starts and completed when its outcome is first shown (the
POST that waited for it, or the poll that found it done); a row whose outcome nobody saw reads
"not seen" until the job is looked up again. The demo's replay and experiment (made by
``manage.py llm386_demo``, not from a page) get one finished row each, keyed by the record made.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils import timezone

from llm386web import replayjobs, samplejobs
from llm386web.models import Action
from runtime.providers import get_provider


def replay_started(request: HttpRequest, job: replayjobs.ReplayJob, target: str) -> None:
    """Record that the request's user started replay ``job`` to ``target``."""
    Action.objects.create(
        kind=Action.REPLAY, user=_user(request), username=request.user.get_username(),
        at=timezone.now(), call_id=job.call_id, target=target, job_id=job.id,
    )  # fmt: skip


def replay_finished(job: replayjobs.ReplayJob) -> None:
    """Complete ``job``'s row with its outcome and cost (once: later calls change nothing)."""
    if job.running:
        return
    fields: dict[str, Any] = {"outcome": _outcome(job)[:200]}
    if job.result is not None:
        fields |= {"result_call_id": job.result.summary.call_id,
                   "cost_usd": job.result.input_cost_usd}  # fmt: skip
    Action.objects.filter(job_id=job.id, outcome="").update(**fields)


def repaged(request: HttpRequest, call_id: str, profile: str, result_call_id: str) -> None:
    """Record that the request's user re-paged ``call_id`` for ``profile`` (nothing was sent)."""
    Action.objects.create(
        kind=Action.REPAGE, user=_user(request), username=request.user.get_username(),
        at=timezone.now(), call_id=call_id, target=profile, result_call_id=result_call_id,
        outcome="recorded, not sent", cost_usd=0.0,
    )  # fmt: skip


def _outcome(job: replayjobs.ReplayJob) -> str:
    if job.result is not None:
        if job.result.errored:
            error = job.result.summary.error
            return f"error: {error.type if error else 'failed'}"
        return "bytes identical" if job.result.bytes_matched else "sent, bytes differ"
    return job.problem or job.cancel_reason or "no outcome"


def _user(request: HttpRequest) -> Any:
    return request.user if request.user.is_authenticated else None


def experimented(request: HttpRequest, call_id: str, description: str, row: Any) -> None:
    """Record that the request's user ran an experiment on ``call_id`` (``row``: its
    runtime.replay.experimentlog.ExperimentRow)."""
    Action.objects.create(
        kind=Action.EXPERIMENT, user=_user(request), username=request.user.get_username(),
        at=timezone.now(), call_id=call_id, target=description[:64], result_call_id=row.child,
        outcome=f"{row.status}: {row.provider} {row.model}"[:200], cost_usd=row.cost_usd,
    )  # fmt: skip


def samples_started(request: HttpRequest, job: samplejobs.SampleJob) -> None:
    """Record that the request's user started sending ``job.call_id``'s bytes ``job.n`` times."""
    Action.objects.create(
        kind=Action.SAMPLES, user=_user(request), username=request.user.get_username(),
        at=timezone.now(), call_id=job.call_id, target=f"{job.n} samples", job_id=job.id,
    )  # fmt: skip


def samples_finished(job: samplejobs.SampleJob) -> None:
    """Complete a variance run's row with its verdict and cost (once)."""
    if job.running:
        return
    fields: dict[str, Any] = {"outcome": (job.problem or job.summary())[:200]}
    if job.result is not None:
        fields |= {"result_call_id": job.result.records[0].call_id, "cost_usd": job.cost_usd}
    Action.objects.filter(job_id=job.id, outcome="").update(**fields)


def recorded_by_demo(username: str, kind: str, call_id: str, target: str, result: Any,
                     outcome: str) -> None:  # fmt: skip
    """Record (once) that the demo loader made ``result`` (a trace record) from ``call_id``."""
    user = get_user_model().objects.filter(username=username).first()
    at = dt.datetime.fromtimestamp(result.started_at / 1000, dt.UTC)
    cost = get_provider(result.provider).price(result.usage, result.model)
    Action.objects.get_or_create(
        kind=kind, result_call_id=result.call_id,
        defaults={"user": user, "username": username, "at": at, "call_id": call_id,
                  "target": target[:64], "outcome": outcome[:200], "cost_usd": cost},
    )  # fmt: skip
