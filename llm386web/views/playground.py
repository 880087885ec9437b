"""The playground and variance runs of a turn.

Playground: the recorded request as editable JSON, every tool message, tool definition and
cache breakpoint as stored (runtime.inspect.experiments.playground_json). Sending makes a
counterfactual child (change kind ``request``); sent unchanged, it is the recorded bytes. JSON
that does not parse, or a request no API would take, is shown with the runtime's message and
the edited text kept; nothing is sent or recorded.

Variance: N sends of the same bytes (N ≤ runtime.replay.variance.MAX_SAMPLES). The first POST
shows the estimated cost and a Confirm button; the confirmed POST starts a background job
(llm386web.samplejobs) whose status fragment the page polls until the grouped distribution and
the flaky verdict are ready. Without JavaScript the confirmed POST waits for the run.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET, require_POST

from llm386web import audit, samplejobs
from llm386web.clients import experiment_client
from llm386web.conf import web_config
from llm386web.roles import operator_required
from llm386web.store_access import get_store, get_traces
from runtime.errors import InvalidInput, Llm386Error
from runtime.inspect.experiments import playground_json
from runtime.inspect.pagination import query_int
from runtime.providers import ModelClient
from runtime.replay.edits import Change, ChangeKind
from runtime.replay.resend import check_replayable
from runtime.replay.variance import MAX_SAMPLES, estimate_samples
from runtime.tracing.records import TraceRecord

from .common import gc_paused, is_fragment, render_page
from .experiments import MAX_VALUE_CHARS, send_experiment, show_result
from .turns import turn_context

MAX_PLAYGROUND_BYTES = 8_000_000  # a request bigger than this is not put into a textarea


def _playground_context(rec: TraceRecord, text: str | None = None, problem: str = "") -> dict:
    raw = get_traces().request_bytes(rec.prompt_hash) or b""
    too_big = len(raw) > MAX_PLAYGROUND_BYTES
    shown = text if text is not None else ("" if too_big else playground_json(raw))
    return {"rec": rec, "request_json": shown, "problem": problem, "too_big": too_big,
            "size": len(raw)}  # fmt: skip


@require_GET
@gc_paused
def turn_playground(request: HttpRequest, call_id: str) -> HttpResponse:
    """The turn's recorded request as editable JSON, ready to send as an experiment."""
    rec = get_traces().get(call_id)
    return render_page(request, "experiments/playground.html", "playground-form",
                       _playground_context(rec))  # fmt: skip


@require_POST
@operator_required
@gc_paused
def turn_playground_send(request: HttpRequest, call_id: str) -> HttpResponse:
    """Send the edited request as a child of the turn; go to the experiment (422 when refused)."""
    rec = get_traces().get(call_id)
    text = request.POST.get("request", "")
    try:
        if len(text) > MAX_VALUE_CHARS * 8:
            raise InvalidInput(f"The edited request is {len(text):,} characters: too big to send.")
        check_replayable(rec)
        result, note = send_experiment(request, rec, Change(ChangeKind.REQUEST, "", text))
    except Llm386Error as exc:
        context = _playground_context(rec, text, str(exc))
        return render_page(request, "experiments/playground.html", "playground-form", context,
                           status=422)  # fmt: skip
    return show_result(request, result, note)


# -- variance ----------------------------------------------------------------------------------


def _samples_section(
    request: HttpRequest, call_id: str, status: int = 200, **extra: object
) -> HttpResponse:
    context = turn_context(call_id) | extra
    return render_page(request, "turns/detail.html", "samples", context, status=status)


def _samples_asked(request: HttpRequest, rec: TraceRecord) -> tuple[int, ModelClient, str]:
    """Return the number of samples the form asks for, the client to send them and its note."""
    n = query_int(request.POST.get("samples", "").strip(), "samples", default=0, low=1,
                  high=MAX_SAMPLES)  # fmt: skip
    if n < 1:
        raise InvalidInput(f"Give the number of samples to send: 1 to {MAX_SAMPLES}.")
    check_replayable(rec)
    client, note = experiment_client(rec.provider.value)
    return n, client, note


@require_POST
@operator_required
@gc_paused
def turn_samples(request: HttpRequest, call_id: str) -> HttpResponse:
    """Show the estimate of N sends (no ``confirm``), or start them (``confirm=yes``)."""
    rec = get_traces().get(call_id)
    try:
        n, client, note = _samples_asked(request, rec)
    except Llm386Error as exc:
        return _samples_section(request, rec.call_id, 422, samples_problem=str(exc),
                                samples_n=request.POST.get("samples", ""))  # fmt: skip
    if request.POST.get("confirm") != "yes":
        estimate = estimate_samples(rec, client, n)
        client.close()
        return _samples_section(request, rec.call_id, estimate=estimate, samples_n=n,
                                samples_note=note)  # fmt: skip
    job = samplejobs.start(get_store(), get_traces(), rec.call_id, client, n,
                           who=request.user.get_username(), note=note)  # fmt: skip
    audit.samples_started(request, job)
    if not is_fragment(request):
        job.done.wait(web_config().REPLAY_TIMEOUT_S * n)
    return _job_section(request, job)


@require_GET
def sample_job(request: HttpRequest, job_id: str) -> HttpResponse:
    """Show a variance run's progress, or its grouped result once done (the page polls this)."""
    job = samplejobs.get(job_id)
    if job is None:
        raise Http404(f"There is no variance run {job_id} running or recently finished here.")
    return _job_section(request, job)


def _job_section(request: HttpRequest, job: samplejobs.SampleJob) -> HttpResponse:
    audit.samples_finished(job)
    status = 422 if job.problem else 200
    refresh = is_fragment(request) and job.result is not None  # the tree gains the samples
    return _samples_section(request, job.call_id, status, sample_job=job,
                            samples_note=job.note, refresh_tree=refresh)  # fmt: skip
