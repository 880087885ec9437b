"""Search box: jump to a session by id or to a block by id or unique id prefix."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from llm386web.store_access import get_store
from runtime.errors import BlockNotFound, InvalidBlock, InvalidSession, SessionNotFound


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """Redirect to the session or block ``q`` names; otherwise say why nothing matched."""
    query = request.GET.get("q", "").strip()
    if not query:
        return redirect("sessions")
    store = get_store()
    reasons = []
    try:
        store.session_info(query)
        return redirect("session", session_id=query)
    except (SessionNotFound, InvalidSession) as exc:
        reasons.append(str(exc))
    try:
        return redirect("block", block_id=store.get(query).id)
    except (BlockNotFound, InvalidBlock) as exc:
        reasons.append(str(exc))
    return render(request, "search/results.html", {"query": query, "reasons": reasons})
