"""The triage list: failing, errored and flagged turns across sessions, newest first."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from llm386web.savedviews import TRIAGE, saved_views_context
from llm386web.store_access import get_store, get_traces
from runtime.inspect.sessionfilter import parse_day
from runtime.inspect.triage import TriageKind, TriageQuery, query_triage

from .common import choice_param, gc_paused, limit_from, list_page, offset_from, pairs

KINDS = tuple(k.value for k in TriageKind)
KIND_CHOICES = (("failing", "failing session"), ("errored", "errored"), ("flagged", "flagged"))


def triage_query(request: HttpRequest) -> TriageQuery:
    """Read the triage list's filters and page from the query string (400 if bad)."""
    kind = choice_param(request, "kind", KINDS)
    get = request.GET.get
    return TriageQuery(
        TriageKind(kind) if kind else None, get("model", "")[:200], get("source", "")[:200],
        since=parse_day(get("since", ""), "since"), until=parse_day(get("until", ""), "until"),
        offset=offset_from(request), limit=limit_from(request),
    )  # fmt: skip


@require_GET
@gc_paused
def triage_list(request: HttpRequest) -> HttpResponse:
    """List the turns that need a look, each with a link to compare it with the last good one."""
    query = triage_query(request)
    result = query_triage(get_store(), get_traces(), query)
    return list_page(request, "triage/list.html", "triage-table", query, result, result.pagination,
                     kind_choices=KIND_CHOICES, model_choices=pairs(result.models),
                     source_choices=pairs(result.sources),
                     saved=saved_views_context(request, TRIAGE))  # fmt: skip
