"""The ``/v1/traces`` endpoint as one plain function, for the web app and the capture proxy.

Owns: ``handle(method, path, headers, body, ...) -> (status, headers, body)`` and
``bearer_token``.

Invariants:
- Nothing is decoded before the bearer token checks out: without a valid one the answer is
  401, whatever the body. The token is never logged, echoed or stored.
- Answers are OTLP/HTTP's: 200 with an ``ExportTraceServiceResponse`` (partial success when
  some spans were refused), or a 4xx with a ``google.rpc.Status`` whose message says what was
  wrong, in protobuf or JSON as the request was.
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime.otel import tokens
from runtime.otel.ingest import ingest
from runtime.otel.wire import (
    DEFAULT_OTLP_LIMITS,
    OtlpLimits,
    OtlpRejected,
    export_response,
    status_response,
)
from runtime.storage.blockstore import KvBlockStore
from runtime.tracing.records import TraceStore

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


def handle(
    method: str, path: str, headers: Mapping[str, str], body: bytes, *,
    store: KvBlockStore, traces: TraceStore, limits: OtlpLimits = DEFAULT_OTLP_LIMITS,
) -> Response:  # fmt: skip
    """Serve one request to the OTLP/HTTP trace endpoint; return (status, headers, body)."""
    content_type = _header(headers, "content-type")
    if path.split("?", 1)[0].rstrip("/") != PATH:
        return _refuse(404, f"no OTLP endpoint at {path}; traces go to {PATH}", content_type)
    if method.upper() != "POST":
        return _refuse(405, f"{PATH} takes POST, not {method}", content_type)
    if tokens.check_token(store.kv, bearer_token(headers)) is None:
        return _refuse(
            401,
            "missing or unknown ingest token: send Authorization: Bearer <token> with a token "
            "from `llm386 token create NAME` or the web app's ingest tokens page",
            content_type,
        )
    try:
        result = ingest(body, content_type, _header(headers, "content-encoding"), store, traces,
                        limits)  # fmt: skip
    except OtlpRejected as exc:
        return _refuse(exc.status, str(exc), content_type)
    if result.accepted == 0 and result.rejected:
        return _refuse(400, f"every span was refused: {result.message}", content_type)
    kind, out = export_response(result.rejected, result.message, content_type)
    return 200, {"Content-Type": kind}, out
