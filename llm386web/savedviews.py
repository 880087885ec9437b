"""Saved views: a list page's query string, saved by a user under a name.

A saved view is the list's URL without its position (``offset``), so opening it shows the
first page of the same filters and order. A user sees, renames and deletes only their own
views: every lookup is by (id, user), so another user's id is a 404. Saving is not acting
(it spends nothing and changes no trace), so a viewer may save views too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import BadRequest
from django.http import HttpRequest, QueryDict
from django.urls import reverse
from django.utils.http import urlencode

from llm386web.models import SavedView
from runtime.errors import InvalidInput

SESSIONS = SavedView.SESSIONS
TRIAGE = SavedView.TRIAGE
URL_NAMES = {SESSIONS: "sessions", TRIAGE: "triage"}
DROPPED = ("offset",)  # a saved view opens on its first page
MAX_NAME = 100


def view_query(params: QueryDict) -> str:
    """Return ``params`` as a saved view keeps them: sorted, without the position."""
    kept = [(k, v) for k in sorted(params) if k not in DROPPED for v in params.getlist(k)]
    return urlencode(kept)


def view_url(view: SavedView) -> str:
    """Return the list URL a saved view opens."""
    base = reverse(URL_NAMES[view.page])
    return f"{base}?{view.query}" if view.query else base


def saved_views_context(request: HttpRequest, page: str) -> dict[str, Any]:
    """Return what a list page's saved-views bar shows: the user's views of ``page`` and the
    query the "Save this view" form posts."""
    views = [(v, view_url(v)) for v in SavedView.objects.filter(user=request.user, page=page)]
    return {"page": page, "query": view_query(request.GET), "views": views}


def check_name(raw: str) -> str:
    """Return a view's name, stripped, or raise BadRequest saying what a name must be."""
    name = " ".join(raw.split())
    if not name or len(name) > MAX_NAME:
        raise BadRequest(f"a view's name is 1 to {MAX_NAME} characters; got {len(name)}")
    return name


def check_query(page: str, raw: str, parsers: dict[str, Callable[[HttpRequest], Any]]) -> str:
    """Return ``raw`` as ``page`` would save it, after its own parser accepted it (400 if not)."""
    if page not in parsers:
        raise BadRequest(f"page={page[:40]!r} is not one of: {', '.join(sorted(parsers))}")
    if len(raw) > SavedView.MAX_QUERY:
        raise BadRequest(f"the view's query is over {SavedView.MAX_QUERY} characters")
    probe = HttpRequest()
    probe.GET = QueryDict(raw.lstrip("?"))
    try:
        parsers[page](probe)
    except InvalidInput as exc:
        raise BadRequest(f"this view cannot be saved: {exc}") from None
    return view_query(probe.GET)
