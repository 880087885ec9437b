"""Helpers every view shares: page-or-fragment rendering, query parameters and pagers."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import BadRequest, ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, QueryDict
from django.template.loader import render_to_string
from django.utils.cache import patch_vary_headers
from django.utils.http import urlencode

from llm386web.conf import web_config
from runtime.inspect.pagination import MAX_SEQ, OFFSET, START, Pagination, query_int


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
    content = render_to_string(name, context, request)
    # A stored request may hold a lone surrogate (json.loads reads "\\ud800"), which UTF-8
    # cannot encode: it is shown as that escape, which the playground's JSON parses back to it.
    response = HttpResponse(content.encode("utf-8", "backslashreplace"), status=status)
    # The same URL answers with a page or a fragment: caches must key on HX-Request.
    patch_vary_headers(response, ["HX-Request"])
    return response


def list_page(
    request: HttpRequest, template: str, fragment: str, filters: Any, result: Any,
    page: Pagination, **extra: Any,
) -> HttpResponse:  # fmt: skip
    """Render a filtered list: its ``filters``, ``result``, pager (replacing ``#fragment``) and
    whether any filter is set, with ``extra`` context."""
    context = {"filters": filters, "result": result, "pager": pager(request, page, f"#{fragment}"),
               "filtered": request.GET.urlencode() != ""} | extra  # fmt: skip
    return render_page(request, template, fragment, context)


def pairs(values: Any) -> list[tuple[str, str]]:
    """Return ``values`` as (value, text) choices for common/_choice_field.html."""
    return [(v, v) for v in values]


@dataclass(frozen=True)
class Pager:
    """A `Pagination` with the URLs of its links, for templates/common/_pagination.html."""

    page: Pagination
    target: str  # the DOM id (with #) of the element a link's fragment replaces (outerHTML)
    push: bool  # a link changes the address bar: the list is the page's own, not embedded
    first_url: str | None
    prev_url: str | None
    next_url: str | None
    last_url: str | None


def pager(
    request: HttpRequest, page: Pagination, target: str, *, url: str | None = None,
    keep: Mapping[str, str] | None = None,
) -> Pager:  # fmt: skip
    """Return ``page`` with its links: on this URL keeping its query, or on ``url``.

    A list embedded in another page (a turn's sections, a block's uses) is served by its own
    URL: pass that as ``url``; its links then carry only the cursor, the page size and the
    parameters in ``keep``, and following one leaves the address bar on the page that embeds it.
    """
    embedded = url is not None
    if embedded:
        params = QueryDict(mutable=True)
        params["limit"] = str(page.limit)
        for key, value in sorted((keep or {}).items()):
            params[key] = value
    else:
        params = request.GET.copy()

    def link(value: int | None) -> str | None:
        if value is None:
            return None
        params[page.param] = str(value)
        return f"{url or ''}?{urlencode(sorted(params.items()))}"

    return Pager(page, target, not embedded, link(page.first), link(page.prev), link(page.next),
                 link(page.last))  # fmt: skip


def limit_from(request: HttpRequest) -> int:
    """Return the page size the query string asks for (``limit``), checked."""
    config = web_config()
    raw = request.GET.get("limit")
    return query_int(raw, "limit", default=config.PAGE_SIZE, low=1, high=config.MAX_PAGE_SIZE)


def offset_from(request: HttpRequest) -> int:
    """Return the position the query string asks for (``offset``), checked."""
    return query_int(request.GET.get(OFFSET), OFFSET, default=0)


def start_from(request: HttpRequest) -> int:
    """Return the first seq the query string asks for (``start``), checked."""
    return query_int(request.GET.get(START), START, default=0, high=MAX_SEQ)


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
