"""The one place that renders every error page: 400, 403, 404, 500 and store-unavailable (503).

For htmx requests only the ``error-message`` fragment is sent; app.js reads its text into #flash.
Messages are the runtime's (they say what happened and what to do) and are always escaped.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import Resolver404
from django.utils.cache import patch_vary_headers

from llm386web.conf import web_config
from runtime.errors import StoreCorrupted, StoreError
from runtime.storage.open import safe_location

from .common import is_fragment

log = logging.getLogger("llm386web")

TEMPLATE = "errors/error.html"


def render_error(
    request: HttpRequest, status: int, title: str, message: str, **extra: object
) -> HttpResponse:
    """Render the error page (or its fragment) with ``status``."""
    context = {"status": status, "title": title, "message": message, **extra}
    name = f"{TEMPLATE}#error-message" if is_fragment(request) else TEMPLATE
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def store_unavailable(request: HttpRequest, exc: StoreError) -> HttpResponse:
    """Say why the store cannot be opened and how to fix it, with 503; or, for data that
    fails verification (a record without its request bytes, a damaged chunk), say that, with
    the error's own advice: pointing the app at another store is no fix for it."""
    if isinstance(exc, StoreCorrupted):
        log.error("stored data failed verification: %s", exc)
        return render_error(request, 503, "Stored data is damaged or missing", str(exc))
    log.warning("store unavailable: %s", exc)
    return render_error(
        request,
        503,
        "The store is unavailable",
        str(exc),
        store_path=safe_location(web_config().STORE_PATH),
        store_help=True,
    )


def _not_found_message(request: HttpRequest, exception: Exception | None) -> str:
    if isinstance(exception, Resolver404) or exception is None or not exception.args:
        return f"There is no page at {request.path}."
    message = exception.args[0]
    return message if isinstance(message, str) else f"There is no page at {request.path}."


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: say what was not found."""
    return render_error(request, 404, "Not found", _not_found_message(request, exception))


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler400: say what in the request was wrong."""
    message = (
        str(exception.args[0]) if exception and exception.args else "The request was malformed."
    )
    return render_error(request, 400, "Bad request", message)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler403: say why (llm386web.roles says what a viewer may not do), else a generic no."""
    message = exception.args[0] if exception and exception.args else ""
    text = message if isinstance(message, str) and message else "You are not allowed to do that."
    return render_error(request, 403, "Forbidden", text)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a form was posted without a valid CSRF token."""
    message = "The form's security token was missing or stale. Reload the page and try again."
    return render_error(request, 403, "Forbidden", message)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a bug; the details are in the server log, never on the page."""
    try:
        return render_error(
            request, 500, "Server error", "Something went wrong. The server log has the details."
        )
    except Exception:  # the error page itself failed: fall back to plain text, and log why
        log.exception("rendering the 500 page failed")
        return HttpResponse(
            "Server error. The server log has the details.", status=500, content_type="text/plain"
        )
