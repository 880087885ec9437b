"""Saved views: save the list you are looking at under a name, open, rename and delete it."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import BadRequest
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from llm386web.models import SavedView
from llm386web.savedviews import SESSIONS, TRIAGE, check_name, check_query, view_url

from .sessions import session_query
from .triage import triage_query

PARSERS: dict[str, Any] = {SESSIONS: session_query, TRIAGE: triage_query}


@require_GET
def view_list(request: HttpRequest) -> HttpResponse:
    """List the user's saved views, with the forms to rename and delete them."""
    views = [(v, view_url(v)) for v in SavedView.objects.filter(user=request.user)]
    return render(request, "savedviews/list.html", {"views": views})


@require_POST
def view_save(request: HttpRequest) -> HttpResponse:
    """Save the posted list query under a name (the same name again replaces its query)."""
    page = request.POST.get("page", "")
    query = check_query(page, request.POST.get("query", ""), PARSERS)
    name = check_name(request.POST.get("name", ""))
    view, created = SavedView.objects.update_or_create(
        user=request.user, page=page, name=name, defaults={"query": query}
    )
    messages.success(request, f"{'Saved' if created else 'Updated'} the view {name!r}.")
    return redirect(view_url(view))


def _own(request: HttpRequest, pk: int) -> SavedView:
    return get_object_or_404(SavedView, pk=pk, user=request.user)  # another's view: 404


@require_POST
def view_rename(request: HttpRequest, pk: int) -> HttpResponse:
    """Rename one of the user's views (400 if the name is bad or taken)."""
    view = _own(request, pk)
    old, view.name = view.name, check_name(request.POST.get("name", ""))
    try:
        with transaction.atomic():
            view.save(update_fields=["name"])
    except IntegrityError:
        raise BadRequest(f"you already have a {view.page} view named {view.name!r}") from None
    messages.success(request, f"Renamed the view {old!r} to {view.name!r}.")
    return redirect("saved-views")


@require_POST
def view_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete one of the user's views."""
    view = _own(request, pk)
    view.delete()
    messages.success(request, f"Deleted the view {view.name!r}.")
    return redirect("saved-views")
