"""Experiments from the browser: change one thing in a turn and re-send it, see the outcome.

The turn page's "Change one thing" forms POST here (CSRF, operators only). One change per POST
(runtime.replay.edits.Change); the runtime proves that only its region of the request bytes
differs before anything is sent (runtime.replay.experiment), records the child with its row,
and the page goes to the experiment: the original beside the child (text diff, tool calls,
usage) and the byte diff of the two requests, re-derived from the stored bytes. A refusal
(the isolation check, a broken tool pair, a missing key for a provider the offline model cannot
stand in for) shows the runtime's message on the turn page, and nothing is recorded.

``/experiments/`` lists every experiment across sessions, newest first, searchable by what
changed, model, provider, outcome and who ran it.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from llm386web import audit
from llm386web.clients import experiment_client
from llm386web.conf import runtime_config
from llm386web.roles import operator_required
from llm386web.store_access import get_store, get_traces
from runtime.errors import InvalidInput, Llm386Error
from runtime.inspect.experiments import TreeNode, outcome_view, recorded_diff, request_region
from runtime.inspect.pagination import by_offset
from runtime.replay.edits import Change, ChangeKind, parse_value
from runtime.replay.experiment import ExperimentResult, run_experiment
from runtime.replay.experimentlog import ExperimentLog
from runtime.tracing.records import TraceRecord

from .common import gc_paused, limit_from, offset_from, pager, render_page
from .turns import request_bytes_of, turn_context

# The form's kinds, as the CLI's flags name them, and what each needs.
FORM_KINDS = {"edit": ChangeKind.EDIT, "drop": ChangeKind.DROP, "insert": ChangeKind.INSERT,
              "set": ChangeKind.PARAM, "model": ChangeKind.MODEL, "provider": ChangeKind.PROVIDER,
              "budget": ChangeKind.BUDGET, "weight": ChangeKind.WEIGHT}  # fmt: skip
_NEEDS_TARGET = ("edit", "drop", "insert", "set", "budget", "weight")
_NEEDS_VALUE = ("edit", "set", "model", "provider", "budget", "weight")
_PARSED = ("set", "budget", "weight")  # values read as JSON numbers / booleans when they are
MAX_VALUE_CHARS = 1_000_000
MAX_LISTED = 10_000  # experiments searched for the list (they are few next to traces)


def change_from_form(kind: str, target: str, value: str) -> Change:
    """Return the change a "Change one thing" form asks for, or raise InvalidInput saying why."""
    if kind not in FORM_KINDS:
        raise InvalidInput(f"Choose what to change: {', '.join(FORM_KINDS)} (got {kind!r}).")
    target = target.strip()
    if kind in _NEEDS_TARGET and not target:
        what = {"set": "a parameter name", "budget": "a section",
                "weight": "a retriever"}.get(kind, "a unit (messages[N].content[M]) or block id")  # fmt: skip
        raise InvalidInput(f"Name {what} to {kind}.")
    if kind in _NEEDS_VALUE and not value.strip():
        raise InvalidInput(f"Give the new value to {kind}.")
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidInput(f"The value is {len(value):,} characters; keep it under "
                           f"{MAX_VALUE_CHARS:,}.")  # fmt: skip
    if kind in ("model", "provider"):
        return Change(FORM_KINDS[kind], "", value.strip())
    return Change(FORM_KINDS[kind], target, parse_value(value) if kind in _PARSED else value)


def send_experiment(
    request: HttpRequest, rec: TraceRecord, change: Change
) -> tuple[ExperimentResult, str]:
    """Run ``change`` on ``rec`` as the request's user, audit it; return it and the key note."""
    swap = str(change.value) if change.kind is ChangeKind.PROVIDER else ""
    client, note = experiment_client(rec.provider.value, swap)
    try:
        result = run_experiment(get_store(), get_traces(), rec.call_id, change, client,
                                who=request.user.get_username(), config=runtime_config())  # fmt: skip
    finally:
        client.close()
    audit.experimented(request, rec.call_id, result.row.description, result.row)
    return result, note


def show_result(request: HttpRequest, result: ExperimentResult, note: str) -> HttpResponse:
    """Go to the experiment's page, saying what was sent (and who stood in, without a key)."""
    if note:
        messages.warning(request, note)
    messages.success(request, f"Experiment recorded: {result.row.description} → "
                              f"{result.record.status.value}.")  # fmt: skip
    return redirect("experiment", child=result.record.call_id)


@require_POST
@operator_required
@gc_paused
def turn_experiment(request: HttpRequest, call_id: str) -> HttpResponse:
    """Change one thing in the turn and re-send it; go to the experiment (422 when refused)."""
    rec = get_traces().get(call_id)
    post = request.POST
    kind = post.get("kind", "")
    try:
        change = change_from_form(kind, post.get("target", ""), post.get("value", ""))
        result, note = send_experiment(request, rec, change)
    except Llm386Error as exc:
        context = turn_context(rec.call_id) | {
            "experiment_problem": str(exc), "experiment_kind": kind,
            "experiment_target": post.get("target", "")[:1000],
            "experiment_value": post.get("value", "")[:MAX_VALUE_CHARS],
        }  # fmt: skip
        return render_page(request, "turns/detail.html", "experiments", context, status=422)
    return show_result(request, result, note)


@require_GET
@gc_paused
def experiment_detail(request: HttpRequest, child: str) -> HttpResponse:
    """One experiment: what changed, the original beside the child, and the requests' byte diff."""
    traces = get_traces()
    record = traces.get(child)
    row = ExperimentLog(traces).row_of(record.call_id)
    if row is None:
        raise Http404(f"Trace {record.call_id} is not an experiment; its turn page shows it.")
    original = traces.get(row.parent)
    raw_a, raw_b = request_bytes_of(original), request_bytes_of(record)
    diff = recorded_diff(raw_a, raw_b, Change.from_json(row.change))
    context = {"row": row, "outcome": outcome_view(original, record, diff, row.notes),
               "region": None if diff is None else request_region(raw_a, raw_b, diff),
               "diff": diff}  # fmt: skip
    return render_page(request, "experiments/detail.html", "experiment", context)


@require_GET
def experiment_list(request: HttpRequest) -> HttpResponse:
    """Experiments across sessions, newest first; ``q`` keeps those whose row has every word."""
    query = request.GET.get("q", "").strip()[:200]
    offset, limit = offset_from(request), limit_from(request)
    rows = ExperimentLog(get_traces()).search(query, limit=MAX_LISTED)
    page = by_offset(offset, limit, len(rows), noun="experiments ")
    window = [TreeNode(0, row) for row in rows[offset : offset + limit]]
    context = {"rows": window, "q": query, "total": len(rows),
               "pager": pager(request, page, "#experiment-list")}  # fmt: skip
    return render_page(request, "experiments/list.html", "experiment-list", context)
