"""Compare page: any two turns side by side (default: a turn and the one before it)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET

from llm386web.store_access import get_store, get_traces
from runtime.inspect.compare import compare_view, previous_turn, turn_pairs
from runtime.inspect.diff import diff_stored
from runtime.inspect.turn import blocks_by_id
from runtime.tracing.records import CALL_ID_LEN, check_call_id

from .common import gc_paused, render_page

# Block changes listed before a "show all" link (every one is one click away, never hidden).
SHOWN_CHANGES = 100


@require_GET
def compare_previous(request: HttpRequest, call_id: str) -> HttpResponse:
    """Redirect to the comparison of a turn with the turn before it."""
    rec = get_traces().get(call_id)
    before = previous_turn(get_traces(), rec)
    if before is None:
        raise Http404(
            f"Turn {rec.turn} is the first turn of {rec.session}: there is no turn before it."
        )
    return redirect("compare", a=before, b=rec.call_id)


@require_GET
@gc_paused
def compare(request: HttpRequest, a: str, b: str) -> HttpResponse:
    """Show blocks that entered, left or changed reason, section deltas, the text diff and the
    first divergent byte against the cached prefix."""
    if (check_call_id(a), check_call_id(b)) != (a, b) or len(a) + len(b) != 2 * CALL_ID_LEN:
        ra, rb = get_traces().get_many([a, b])
        return redirect("compare", a=ra.call_id, b=rb.call_id)
    diff = diff_stored(get_traces(), a, b)
    show_all = request.GET.get("all") == "1"
    view = compare_view(diff, None if show_all else SHOWN_CHANGES)
    ids = [c.block_id for rows in (view.added, view.removed, view.changed) for c in rows]
    context = {
        "cv": view, "a": view.a, "b": view.b, "blocks": blocks_by_id(get_store(), ids),
        "pairs": turn_pairs(get_traces(), diff.a, diff.b), "show_all": show_all,
        "shown_limit": SHOWN_CHANGES,
    }  # fmt: skip
    return render_page(request, "compare/detail.html", "compare-body", context)
