"""Search box: jump to a session, a block, a turn (call id) or the sessions that sent a prompt."""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from llm386web.store_access import get_store, get_traces
from runtime.errors import BlockNotFound, InvalidBlock, InvalidInput, InvalidSession, NotFound

_HEX = re.compile(r"^[0-9a-f]+$")


@require_GET
def search(request: HttpRequest) -> HttpResponse:
    """Redirect to what ``q`` names; otherwise say why nothing matched.

    Tried in order: a session id, a block id or unique prefix, a call id or unique prefix, and
    a prompt hash or unique prefix of 8+ hex characters (the sessions list, searched for it).
    """
    query = request.GET.get("q", "").strip()
    if not query:
        return redirect("sessions")
    store = get_store()
    reasons = []
    try:
        store.session_info(query)
        return redirect("session", session_id=query)
    except (NotFound, InvalidSession) as exc:
        reasons.append(str(exc))
    try:
        return redirect("block", block_id=store.get(query).id)
    except (BlockNotFound, InvalidBlock) as exc:
        reasons.append(str(exc))
    try:
        return redirect("turn", call_id=get_traces().get(query).call_id)
    except (NotFound, InvalidInput) as exc:
        reasons.append(str(exc))
    if _HEX.match(query.lower()):
        try:
            digest = get_traces().resolve_prompt_hash(query)
            return redirect(f"/sessions/?{urlencode({'q': digest})}")
        except (NotFound, InvalidInput) as exc:  # none, several (listed), or too short
            reasons.append(str(exc))
    return render(request, "search/results.html", {"query": query, "reasons": reasons})
