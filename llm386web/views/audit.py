"""Audit page: every replay, re-page, experiment and variance run started from the web, newest
first, with who started it, when, on which turn, where it went, its outcome and its cost."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from llm386web import audit, replayjobs, samplejobs
from llm386web.models import Action
from runtime.inspect.pagination import by_offset

from .common import limit_from, offset_from, pager, render_page


@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    """One page of the audit log (``user`` filters by user name)."""
    rows = Action.objects.all()
    username = request.GET.get("user", "")[:150]
    if username:
        rows = rows.filter(username=username)
    for pending in rows.filter(outcome="", kind=Action.REPLAY)[:20]:
        job = replayjobs.get(pending.job_id)  # a replay whose outcome nobody has seen yet
        if job is not None:
            audit.replay_finished(job)
    for pending in rows.filter(outcome="", kind=Action.SAMPLES)[:20]:
        run = samplejobs.get(pending.job_id)  # a variance run whose groups nobody has seen yet
        if run is not None:
            audit.samples_finished(run)
    offset, limit = offset_from(request), limit_from(request)
    total = rows.count()
    page = by_offset(offset, limit, total)
    context = {"actions": list(rows[offset : offset + limit]), "username": username,
               "pager": pager(request, page, "#audit-table"), "total": total}  # fmt: skip
    return render_page(request, "audit/list.html", "audit-table", context)
