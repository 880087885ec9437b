"""Replay and re-page a turn from its page (POST with CSRF), answering with the replay section.

Replay re-sends the turn's stored request bytes unchanged (runtime.replay.resend) to a provider
that takes its format (the Anthropic API or the offline model; the OpenAI API); the result shows whether the bytes sent hash to the recorded prompt
hash, the new output beside the original, and the replay history. A model error is recorded
by the runtime and shown here; a refusal (an OpenAI-format import, damaged bytes, a retired
model) is shown with what to do instead, and a deprecated model's warning beside the result.
Re-page rebuilds a turn from the session's blocks for a model (an OpenAI turn for its own
provider, as a Chat Completions request, or for a Claude model), recorded but not sent, so it
can then be replayed.

A replay runs in a worker thread (llm386web.replayjobs). Without JavaScript the POST waits for
it (at most REPLAY_TIMEOUT_S); with htmx it answers with the result if the model answered
within REPLAY_SHOW_PROGRESS_AFTER_S, else with a progress fragment that polls the job and has
a Cancel button.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from llm386web import audit, replayjobs
from llm386web.clients import model_client, replay_target, target_names
from llm386web.conf import runtime_config, web_config
from llm386web.roles import operator_required
from llm386web.store_access import get_store, get_traces
from runtime.errors import Llm386Error
from runtime.providers import Provider
from runtime.replay.repage import repage

from .common import gc_paused, is_fragment, render_page
from .turns import repage_profiles, turn_context


def _target(request: HttpRequest, record_provider: str) -> tuple[Provider | None, str]:
    raw = request.POST.get("target", "")
    target = replay_target(raw, record_provider)
    if target is None:
        names = target_names(record_provider)
        return None, f"Choose where to send the request: {names} (got {raw!r})."
    if not target.available():
        return None, (
            f"No {target.credentials_name} is set on the server ({target.credentials_env}), so "
            f"the request cannot go to {target.label}. Replay it with another target, or "
            "restart the server with the key in its environment."
        )
    return target, ""


@require_POST
@operator_required
@gc_paused
def turn_replay(request: HttpRequest, call_id: str) -> HttpResponse:
    """Start replaying the turn; show the outcome, or its progress (422 when refused)."""
    rec = get_traces().get(call_id)
    target, problem = _target(request, rec.provider)
    if target is None:
        context = turn_context(rec.call_id) | {"replay_problem": problem}
        return render_page(request, "turns/detail.html", "replay", context, status=422)
    config = web_config()
    job = replayjobs.start(get_traces(), rec.call_id, model_client(target), config.REPLAY_TIMEOUT_S)
    audit.replay_started(request, job, target.name)
    if is_fragment(request):
        job.done.wait(config.REPLAY_SHOW_PROGRESS_AFTER_S)
    else:
        replayjobs.wait(job)
    return _job_section(request, job)


@require_GET
def replay_job(request: HttpRequest, job_id: str) -> HttpResponse:
    """Show a replay's progress, or its outcome once it is done (the page polls this)."""
    return _job_section(request, _job(job_id))


@require_POST
@operator_required
def replay_job_cancel(request: HttpRequest, job_id: str) -> HttpResponse:
    """Stop waiting for a replay; it is recorded as cancelled."""
    job = _job(job_id)
    replayjobs.cancel(job)
    return _job_section(request, job)


def _job(job_id: str) -> replayjobs.ReplayJob:
    job = replayjobs.get(job_id)
    if job is None:
        raise Http404(f"There is no replay {job_id} running or recently finished on this server.")
    return job


def _job_section(request: HttpRequest, job: replayjobs.ReplayJob) -> HttpResponse:
    running = job.running
    audit.replay_finished(job)
    context = turn_context(job.call_id) | {
        "job": job if running else None,
        "replayed": None if running else job.result,
        "replay_problem": "" if running else job.problem,
        "replay_warnings": () if running else job.warnings,
    }
    status = 422 if job.problem and not job.cancel_reason and not running else 200
    return render_page(request, "turns/detail.html", "replay", context, status=status)


@require_POST
@operator_required
def turn_repage(request: HttpRequest, call_id: str) -> HttpResponse:
    """Re-page the turn for a model and record it (not sent); go to the new turn."""
    rec = get_traces().get(call_id)
    profile = request.POST.get("profile", "")
    offered = repage_profiles(rec)
    if profile not in offered:
        problem = f"Pick a model to re-page for: {', '.join(offered)} (got {profile!r})."
    else:
        try:
            result = repage(get_store(), get_traces(), rec.call_id, profile=profile,
                            config=runtime_config(), record=True)  # fmt: skip
        except Llm386Error as exc:
            problem = str(exc)
        else:
            assert result.record is not None
            audit.repaged(request, rec.call_id, profile, result.record.call_id)
            for warning in result.warnings:
                messages.warning(request, warning)
            messages.success(
                request, f"Re-paged for {profile}, recorded, not sent. {result.explanation}"
            )
            return redirect("turn", call_id=result.record.call_id)
    context = turn_context(rec.call_id) | {"replay_problem": problem}
    return render_page(request, "turns/detail.html", "replay", context, status=422)
