""" "Compare with…": pick any other turn, in any session, to compare a turn with.

One view serves the picker page (``/compare/pick/?a=<call id>&q=…``, a permalink) and, for
htmx, only its results list, which the turn page's picker form loads as the user types.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from llm386web.store_access import get_store, get_traces
from runtime.inspect.picker import pick_turns
from runtime.tracing.records import TraceRecord

from .common import render_page


@require_GET
def compare_pick(request: HttpRequest) -> HttpResponse:
    """List the turns ``q`` names, each linked to its comparison with turn ``a``."""
    a: TraceRecord = get_traces().get(request.GET.get("a", ""))  # bad/missing id: 400/404
    pick = pick_turns(get_store(), get_traces(), request.GET.get("q", ""), exclude=a.call_id)
    context = {"a": a, "pick": pick, "q": pick.query}
    return render_page(request, "compare/pick.html", "pick-results", context)
