"""`runserver` for a local tool: loopback only by default, and static files served without DEBUG.

Django's development server serves static files only with DEBUG on or ``--insecure``. llm386web
runs with DEBUG off by default, so this command turns static serving on unless ``--nostatic``
is given; the address stays 127.0.0.1:8000 unless one is passed. Django's static handler
answers before any middleware runs, so :class:`SecureStaticFilesHandler` passes its responses
through the same security-header middleware as pages. While it starts, a thread builds the
sessions list's summary table so the first page is served from memory.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.contrib.staticfiles.management.commands.runserver import Command as StaticRunserver
from django.core.management.commands.runserver import Command as PlainRunserver
from django.http import HttpRequest, HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware

from llm386web.middleware import SecurityHeadersMiddleware

log = logging.getLogger("llm386web")


def warm_up() -> None:
    """Build the sessions list's summary table now, so the first visitor does not wait for it."""
    from llm386web.store_access import get_store, get_traces
    from runtime.errors import Llm386Error
    from runtime.inspect.sessions import summary_table

    try:
        summary_table(get_store(), get_traces())
    except Llm386Error as exc:  # the store check and the first page report it properly
        log.warning("could not prepare the sessions list: %s", exc)


class SecureStaticFilesHandler(StaticFilesHandler):
    """Serve static files with the headers pages get: CSP, nosniff, Referrer-Policy, framing.

    The middleware are Django's and the app's own, in settings' order, so a static file and a
    page cannot drift apart.
    """

    def __init__(self, application: Any) -> None:
        super().__init__(application)
        serve: Any = super().get_response
        self._secured = SecurityMiddleware(
            SecurityHeadersMiddleware(XFrameOptionsMiddleware(serve))
        )

    def get_response(self, request: HttpRequest) -> HttpResponse:
        response: HttpResponse = self._secured(request)
        return response


class Command(StaticRunserver):
    default_addr = "127.0.0.1"
    default_port = "8000"

    def get_handler(self, *args: Any, **options: Any) -> Any:
        threading.Thread(target=warm_up, name="llm386-warm-up", daemon=True).start()
        handler = PlainRunserver.get_handler(self, *args, **options)
        return SecureStaticFilesHandler(handler) if options["use_static_handler"] else handler
