"""The ``/v1/traces`` endpoint as one plain function, for the web app and the capture proxy.

Owns: ``handle(method, path, headers, body, ...) -> (status, headers, body)``,
``store_failed`` (the answer when the store cannot take or check a request) and
``bearer_token``.

Invariants:
- Nothing is decoded before the bearer token checks out: without a valid one the answer is
  401, whatever the body. The token is never logged, echoed or stored.
- Answers are OTLP/HTTP's: 200 with an ``ExportTraceServiceResponse`` (partial success when
  some spans were refused), or a 4xx with a ``google.rpc.Status`` whose message says what was
  wrong, in protobuf or JSON as the request was.
- A store that fails (read-only, full, its database down) is a 503 ``Status`` (gRPC
  UNAVAILABLE, which OTLP/HTTP exporters retry), never a dropped connection or an HTML page:
  a request is one write transaction, so nothing of it was stored and sending it again is
  safe. The store's own message is given only to a holder of a valid token; before the token
  is checked the answer says only what kind of failure it was.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from runtime.errors import StoreError
from runtime.otel import tokens
from runtime.otel.ingest import commit, prepare_body, preparing_for
from runtime.otel.wire import (
    DEFAULT_OTLP_LIMITS,
    OtlpLimits,
    OtlpRejected,
    export_response,
    status_response,
)
from runtime.otel.workers import Preparer
from runtime.storage.blockstore import KvBlockStore
from runtime.tracing.records import TraceStore

log = logging.getLogger("llm386.otel")
PATH = "/v1/traces"
Response = tuple[int, dict[str, str], bytes]


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header (any key case)."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def _refuse(status: int, message: str, content_type: str | None) -> Response:
    kind, body = status_response(status, message, content_type)
    extra = {"WWW-Authenticate": 'Bearer realm="llm386"'} if status == 401 else {}
    return status, {"Content-Type": kind, **extra}, body


def store_failed(exc: StoreError, content_type: str | None, *, authorized: bool) -> Response:
    """Answer 503 for a store that could not check or take a request (see the invariants)."""
    log.warning("OTLP request not stored: %s", exc)
    what = str(exc) if authorized else f"{type(exc).__name__}; the server's log says why"
    message = (
        f"the store could not take these spans ({what}); nothing of this request was stored. "
        "The exporter may send it again (OTLP exporters retry a 503); if it keeps failing, "
        "fix the store (make it writable, free disk space, or start its database server)"
    )
    return _refuse(503, message, content_type)


def misconfigured(exc: Exception, content_type: str | None) -> Response:
    """Answer 500 for a receiver whose settings are wrong: what to fix, which is no secret."""
    log.error("OTLP request refused: %s", exc)
    return _refuse(500, f"this receiver is misconfigured ({exc}); nothing was stored", content_type)


def handle(
    method: str, path: str, headers: Mapping[str, str], body: bytes, *,
    store: KvBlockStore, traces: TraceStore, limits: OtlpLimits = DEFAULT_OTLP_LIMITS,
    preparer: Preparer | None = None,
) -> Response:  # fmt: skip
    """Serve one request to the OTLP/HTTP trace endpoint; return (status, headers, body).

    With a ``preparer`` the body is read and rebuilt in its worker processes and only the
    write happens here (``runtime.otel.workers``); without one, all of it in this thread."""
    content_type = _header(headers, "content-type")
    if path.split("?", 1)[0].rstrip("/") != PATH:
        return _refuse(404, f"no OTLP endpoint at {path}; traces go to {PATH}", content_type)
    if method.upper() != "POST":
        return _refuse(405, f"{PATH} takes POST, not {method}", content_type)
    try:
        holder = tokens.check_token(store.kv, bearer_token(headers))
    except StoreError as exc:
        return store_failed(exc, content_type, authorized=False)
    if holder is None:
        return _refuse(
            401,
            "missing or unknown ingest token: send Authorization: Bearer <token> with a token "
            "from `llm386 token create NAME` or the web app's ingest tokens page",
            content_type,
        )
    try:
        prepare = prepare_body if preparer is None else preparer.prepare
        prepared = prepare(body, content_type, _header(headers, "content-encoding"), limits,
                           **preparing_for(store))  # fmt: skip
        result = commit(prepared, store, traces)
    except OtlpRejected as exc:
        return _refuse(exc.status, str(exc), content_type)
    except StoreError as exc:
        return store_failed(exc, content_type, authorized=True)
    if result.accepted == 0 and result.rejected:
        return _refuse(400, f"every span was refused: {result.message}", content_type)
    kind, out = export_response(result.rejected, result.message, content_type)
    return 200, {"Content-Type": kind}, out
