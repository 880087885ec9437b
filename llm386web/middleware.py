"""Middleware: security headers on every response, and runtime errors turned into error pages.

The CSP allows only same-origin scripts and styles: no inline script, no inline style, no
eval. htmx runs under it because base.html configures it (htmx-config meta) not to inject its
indicator styles nor evaluate strings; the indicator CSS lives in app.css.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from runtime.errors import InvalidInput, NotFound, StoreError

from .views import errors

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)


class SecurityHeadersMiddleware:
    """Set the Content-Security-Policy (SecurityMiddleware and XFrameOptions set the rest)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class RuntimeErrorsMiddleware:
    """Render the runtime's NotFound as 404, bad input as 400 and store failures as 503."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, NotFound):
            return errors.render_error(request, 404, "Not found", str(exc))
        if isinstance(exc, InvalidInput):
            return errors.render_error(request, 400, "Bad request", str(exc))
        if isinstance(exc, StoreError):
            return errors.store_unavailable(request, exc)
        return None  # anything else is a bug: Django's handler500 renders 500.html
