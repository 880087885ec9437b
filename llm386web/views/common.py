"""Helpers every view shares: page-or-fragment rendering and offset pagination."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import BadRequest, ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode

from llm386web.conf import web_config


def is_fragment(request: HttpRequest) -> bool:
    """Return whether to answer with a fragment: an htmx request that is not a history restore."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


# Names the context processors set (settings.TEMPLATES): a view's context must not hide them,
# or base.html's flash area iterates the view's value instead of the messages framework.
PROCESSOR_NAMES = ("csrf_token", "messages", "perms", "request", "user")


def render_page(
    request: HttpRequest, template: str, fragment: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    """Render ``template``, or only its partial ``fragment`` for an htmx request."""
    shadowed = [key for key in PROCESSOR_NAMES if key in context]
    if shadowed:
        raise ImproperlyConfigured(
            f"the context for {template} sets {', '.join(shadowed)}, which the context "
            "processors set; rename the view's context variable"
        )
    name = f"{template}#{fragment}" if is_fragment(request) else template
    response = render(request, name, context, status=status)
    # The same URL answers with a page or a fragment: caches must key on HX-Request.
    patch_vary_headers(response, ["HX-Request"])
    return response


@dataclass(frozen=True)
class Page:
    """One window [offset, offset+limit) over ``total`` ordered items; links change ``offset``."""

    offset: int
    limit: int
    total: int
    param = "offset"

    @property
    def first(self) -> int:
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.offset + self.limit, self.total)

    @property
    def range_text(self) -> str:
        return f"{self.first}–{self.last} of {self.total}"

    @property
    def first_value(self) -> int | None:
        return 0 if self.offset > 0 else None

    @property
    def prev_value(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset > 0 else None

    @property
    def next_value(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None

    @property
    def last_value(self) -> int | None:
        last = max((self.total - 1) // self.limit * self.limit, 0)
        return last if self.next_value is not None else None


@dataclass(frozen=True)
class SeqPage:
    """A window of a session's entries by seq (seqs have gaps after deletes); links change ``start``."""

    start: int
    limit: int
    total: int
    shown: tuple[int, int] | None  # first and last seq on this page
    prev_value: int | None
    next_value: int | None
    last_value: int | None
    param = "start"

    @property
    def first_value(self) -> int | None:
        return 0 if self.prev_value is not None else None

    @property
    def range_text(self) -> str:
        if self.shown is None:
            return f"none of {self.total}"
        return f"seq {self.shown[0]}–{self.shown[1]} of {self.total} entries"


def _int_param(request: HttpRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name}={raw!r} is not a whole number from {low} to {high}")
    return int(raw)


def limit_from(request: HttpRequest) -> int:
    """Return the page size the query string asks for (``limit``), checked."""
    config = web_config()
    return _int_param(request, "limit", config.PAGE_SIZE, 1, config.MAX_PAGE_SIZE)


def page_from(request: HttpRequest, total: int) -> Page:
    """Return the offset page the query string asks for (``offset``, ``limit``), checked."""
    return Page(
        offset=_int_param(request, "offset", 0, 0, 10**12), limit=limit_from(request), total=total
    )


def start_from(request: HttpRequest) -> int:
    """Return the first seq the query string asks for (``start``), checked."""
    return _int_param(request, "start", 0, 0, 2**63 - 1)


def page_query(request: HttpRequest, param: str, value: int) -> str:
    """Return the current query string with ``param`` set to ``value`` (for page links)."""
    params = request.GET.copy()
    params[param] = str(value)
    return "?" + urlencode(sorted(params.items()))


def choice_param(
    request: HttpRequest, name: str, choices: tuple[str, ...], default: str = ""
) -> str:
    """Return the query parameter ``name`` if it is one of ``choices`` (or empty: ``default``)."""
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"{name}={raw!r} is not one of: {', '.join(choices)}")
    return raw


def yes_no_param(request: HttpRequest, name: str) -> bool | None:
    """Return True for ``yes``, False for ``no``, None when the parameter is absent or empty."""
    value = choice_param(request, name, ("yes", "no"))
    return None if value == "" else value == "yes"


def offset_from(request: HttpRequest, name: str = "offset") -> int:
    """Return a non-negative offset from the query string (``name``), checked."""
    return _int_param(request, name, 0, 0, 10**12)


def gc_paused(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Run ``view`` with the cyclic garbage collector paused.

    Pages over big traces decode megabytes of JSON into plain dicts, lists and frozen
    dataclasses; none of it is cyclic, so reference counting frees all of it. Left on, the
    collector runs full passes over those short-lived objects mid-request: measured on the
    compare page of two 200,000-token turns, 390 ms with it and 140 ms without
    (bench/bench_web.py). Collection resumes as soon as the view returns.

    Rendering keeps its context alive in a reference cycle (Django's Context and ContextDict
    point at each other) until a collection finds it, so views put in the context only what
    the page shows (a window of rows, summaries), never a whole plan or parsed request:
    otherwise the next collection walks all of it (measured: 130 ms for one compare page).
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> HttpResponse:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return view(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return wrapper
