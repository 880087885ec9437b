"""The APIs the capture proxy speaks: routes, upstream URLs, header rules and error bodies.

Owns: ``Api`` (one route the proxy forwards) and its ``Wire`` format, ``route`` (request path -> Api), the header rules
(what is never forwarded, what is never recorded) and ``error_body`` (an error in the
provider's own format, for failures the proxy itself reports).

Invariants:
- Credentials are forwarded upstream untouched and never recorded: ``redact`` removes every
  header whose name is a known credential or contains key, token, secret, auth or cookie.
- Only hop-by-hop headers, ``host``, ``content-length`` (the transport re-frames the body),
  ``accept-encoding`` (the upstream is asked for identity bytes, so what is recorded is what
  the client reads) and the proxy's own ``x-llm386-*`` headers differ from what the client
  sent; the body is never touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from runtime.tracing.records import Provider


class Family(StrEnum):
    """Which provider's wire format a route speaks (and its errors are in)."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"


class Wire(StrEnum):
    """Which request and reply format a route speaks (one family may speak several)."""

    MESSAGES = "messages"  # Anthropic Messages
    CHAT = "chat"  # OpenAI Chat Completions (and compatible servers)
    RESPONSES = "responses"  # OpenAI Responses


@dataclass(frozen=True)
class Api:
    """One forwarded route: its path, format, and whether its calls are turns of a session."""

    path: str
    family: Family
    turn: bool  # a model call (recorded as a turn); count_tokens is forwarded and counted only
    upstream_suffix: str  # appended to the family's upstream base URL
    wire: Wire

    @property
    def provider(self) -> Provider:
        return Provider(self.family.value)


ROUTES = {
    api.path: api
    for api in (
        Api("/v1/messages", Family.ANTHROPIC, True, "/v1/messages", Wire.MESSAGES),
        Api("/v1/messages/count_tokens", Family.ANTHROPIC, False, "/v1/messages/count_tokens",
            Wire.MESSAGES),
        Api("/v1/chat/completions", Family.OPENAI, True, "/chat/completions", Wire.CHAT),
        Api("/v1/responses", Family.OPENAI, True, "/responses", Wire.RESPONSES),
    )
}  # fmt: skip
_OPENAI_PATHS = ("/v1/chat", "/v1/responses", "/v1/models", "/v1/embeddings", "/v1/completions")

DEFAULT_UPSTREAMS = {
    Family.ANTHROPIC: "https://api.anthropic.com",
    Family.OPENAI: "https://api.openai.com/v1",
}

SESSION_HEADER = "x-llm386-session"
RECORDED_HEADER = "x-llm386-recorded"
_OWN_PREFIX = "x-llm386-"

_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
     "upgrade", "host", "content-length", "accept-encoding", "proxy-authorization",
     "proxy-authenticate"}
)  # fmt: skip
_NOT_RETURNED = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
     "content-length"}
)  # fmt: skip
_CREDENTIAL_NAMES = frozenset({"x-api-key", "authorization", "cookie", "set-cookie"})
_CREDENTIAL_WORDS = ("key", "token", "secret", "auth", "cookie", "password", "session-id")

Headers = tuple[tuple[str, str], ...]


def route(path: str) -> Api | None:
    """Return the Api for a request target (its query string ignored), or None."""
    return ROUTES.get(path.split("?", 1)[0].rstrip("/"))


def family_of(target: str) -> Family:
    """Return whose error format an unknown route's 404 is in, by its path."""
    return Family.OPENAI if target.startswith(_OPENAI_PATHS) else Family.ANTHROPIC


def is_credential(name: str) -> bool:
    """Whether a header (by name) may carry a secret: it is forwarded, never recorded."""
    lower = name.lower()
    if lower == SESSION_HEADER:
        return False
    return lower in _CREDENTIAL_NAMES or any(word in lower for word in _CREDENTIAL_WORDS)


def redact(headers: Headers) -> Headers:
    """Return ``headers`` without any that may carry a credential, names lower-cased."""
    return tuple((n.lower(), v) for n, v in headers if not is_credential(n))


def upstream_headers(headers: Headers) -> list[tuple[str, str]]:
    """Return the client's headers as they go upstream (see the module invariants)."""
    out = [(n, v) for n, v in headers
           if n.lower() not in _NOT_FORWARDED and not n.lower().startswith(_OWN_PREFIX)]  # fmt: skip
    out.append(("accept-encoding", "identity"))
    return out


def client_headers(headers: Headers) -> list[tuple[str, str]]:
    """Return the upstream's response headers as they go back to the client."""
    return [(n, v) for n, v in headers if n.lower() not in _NOT_RETURNED]


def _anthropic_error(kind: str, message: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def _openai_error(kind: str, message: str) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


# The error type each provider gives a request body over its size limit (HTTP 413).
TOO_LARGE = {Family.ANTHROPIC: "request_too_large", Family.OPENAI: "invalid_request_error"}

# Each wire format's error object, and what starts the SSE event that carries one.
_ERRORS = {Family.ANTHROPIC: _anthropic_error, Family.OPENAI: _openai_error}
_ERROR_EVENT_HEAD = {Family.ANTHROPIC: b"event: error\ndata: ", Family.OPENAI: b"data: "}


def error_body(family: Family, status: int, kind: str, message: str) -> bytes:
    """Return an error the provider's SDKs parse: Anthropic's or OpenAI's error object."""
    return json.dumps(_ERRORS[family](kind, message), separators=(",", ":")).encode()


def stream_error_event(family: Family, kind: str, message: str) -> bytes:
    """Return the SSE event that tells a streaming client the stream failed, in its format."""
    return _ERROR_EVENT_HEAD[family] + error_body(family, 0, kind, message) + b"\n\n"
