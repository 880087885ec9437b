"""OpenTelemetry: the OTLP/HTTP receiver at /v1/traces, the ingest tokens page, and a session's
export as GenAI spans to the collector ``[otel] export_url`` names.

The receiver is the runtime's ``runtime.otel.receiver.handle`` behind a Django view: no
session, no CSRF (an exporter has neither), its own bearer-token check, and its own answer
when the store cannot be opened (the receiver's 503 ``Status``, as when a write fails). The
tokens page shows a new token once, in the answer to the POST that made it, and never again.
"""

from __future__ import annotations

import atexit
import threading

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from llm386web.conf import checked, runtime_config, web_config
from llm386web.roles import operator_required
from llm386web.store_access import get_store, get_traces
from runtime.errors import ConfigError, InvalidInput, StoreError
from runtime.otel import receiver, tokens
from runtime.otel.export import ExportFailed, export_sessions
from runtime.otel.ingest import preparing_for
from runtime.otel.wire import OtlpLimits
from runtime.otel.workers import Preparer
from runtime.storage.blockstore import KvBlockStore

from .common import render_page

_preparers: dict[int, Preparer] = {}
_preparers_lock = threading.Lock()


def otlp_preparer(store: KvBlockStore) -> Preparer:
    """The process's workers for OTLP bodies (``LLM386["OTLP_WORKERS"]`` of them, started on
    the first export, stopped when the process exits)."""
    workers = checked(web_config(), "OTLP_WORKERS")
    with _preparers_lock:
        found = _preparers.get(workers)
        if found is None:
            found = _preparers[workers] = Preparer(workers, preparing_for(store)["tokenizers"])
            atexit.register(found.close)
        return found


def otlp_limits() -> OtlpLimits:
    config = web_config()
    return OtlpLimits(max_body_bytes=checked(config, "OTLP_MAX_BODY_BYTES"),
                      max_decoded_bytes=checked(config, "OTLP_MAX_DECODED_BYTES"))  # fmt: skip


@csrf_exempt
@login_not_required
def otlp_traces(request: HttpRequest) -> HttpResponse:
    """Take an OTLP/HTTP trace export (protobuf or JSON, gzip) from a bearer-token holder."""
    content_type = request.headers.get("Content-Type")
    try:
        limits = otlp_limits()
        # Read past the limit by one byte only: request.body would buffer any size first.
        body = request.read(limits.max_body_bytes + 1)
        store, traces = get_store(), get_traces()
        preparer = otlp_preparer(store)
    except StoreError as exc:  # an exporter reads a Status, not the HTML error page
        status, headers, out = receiver.store_failed(exc, content_type, authorized=False)
    except ConfigError as exc:
        status, headers, out = receiver.misconfigured(exc, content_type)
    else:
        status, headers, out = receiver.handle(
            request.method or "", receiver.PATH, request.headers, body,
            store=store, traces=traces, limits=limits, preparer=preparer,
        )  # fmt: skip
    response = HttpResponse(out, status=status, content_type=headers.pop("Content-Type"))
    for name, value in headers.items():
        response[name] = value
    return response


@require_GET
def token_list(request: HttpRequest) -> HttpResponse:
    """List the ingest tokens (names and dates only) with the forms to create and revoke."""
    return render_page(request, "otel/tokens.html", "tokens", _context())


def _context(**extra: object) -> dict[str, object]:
    return {"tokens": tokens.list_tokens(get_store().kv), "endpoint": receiver.PATH, **extra}


@require_POST
@operator_required
@never_cache
def token_create(request: HttpRequest) -> HttpResponse:
    """Create a token and show it, this once; a bad name re-renders the form with 422."""
    name = request.POST.get("name", "").strip()
    try:
        token = tokens.create_token(get_store().kv, name)
    except InvalidInput as exc:
        return render_page(request, "otel/tokens.html", "tokens",
                           _context(error=str(exc), name=name), status=422)  # fmt: skip
    return render_page(request, "otel/tokens.html", "tokens",
                       _context(created=name, token=token))  # fmt: skip


@require_POST
@operator_required
def token_revoke(request: HttpRequest, name: str) -> HttpResponse:
    """Revoke a token; exporters sending it get 401 from the next request on."""
    tokens.revoke_token(get_store().kv, name)
    messages.success(request, f"Revoked ingest token {name}.")
    return redirect("otel-tokens")


@require_POST
@operator_required
def session_export(request: HttpRequest, session_id: str) -> HttpResponse:
    """Send a session's turns to the configured collector; say what happened on the page."""
    get_store().session_info(session_id)  # SessionNotFound: a 404
    url = runtime_config().otel.export_url
    if not url:
        messages.error(request, "No collector is configured: set [otel] export_url in "
                       "llm386.toml (e.g. http://127.0.0.1:4318/v1/traces) and restart.")  # fmt: skip
        return redirect("session", session_id=session_id)
    try:
        report = export_sessions(get_traces(), [session_id], url)
    except ExportFailed as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Sent {report.spans} spans of {session_id} to {url}.")
    return redirect("session", session_id=session_id)
