"""One call through the proxy as it happened: what the client sent, what came back, and when.

Owns: ``Exchange`` (built on the response path, handed to the recorder) and ``Outcome`` (how
the call ended). An exchange holds only redacted headers: credentials never reach it. For a
paged call, ``request_body`` is the client's bytes and ``sent_body`` the bytes the model saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runtime.proxy.apis import Api, Headers


class Outcome(StrEnum):
    """How a proxied call ended."""

    COMPLETE = "complete"  # the upstream answered (any status) and the client got all of it
    UNREACHABLE = "upstream-unreachable"  # no response: refused, reset or DNS failure
    TIMEOUT = "upstream-timeout"  # the upstream did not answer (or went quiet) in time
    UPSTREAM_DIED = "upstream-died"  # the upstream's body broke off after it started
    CLIENT_GONE = "client-disconnected"  # the client hung up before the body was sent
    REFUSED = "refused"  # --fail-closed: the recorder was down, nothing was forwarded


@dataclass
class Exchange:
    """Everything recorded about one call; built by the server, read by the recorder."""

    api: Api
    target: str  # the request target as the client sent it (path and query)
    upstream_url: str
    started_at: int  # ms since the epoch
    request_body: bytes = field(repr=False)
    request_headers: Headers = field(repr=False)  # redacted
    session: str | None = None  # the x-llm386-session header, if any
    status: int | None = None
    response_headers: Headers = field(default=(), repr=False)  # redacted
    response_body: bytes = field(default=b"", repr=False)  # exactly what the client was sent
    ttfb_ms: float | None = None
    total_ms: float = 0.0
    outcome: Outcome = Outcome.COMPLETE
    error: str | None = None  # what went wrong, when the proxy saw it go wrong
    # A paged call (``--page``): the bytes the model saw, the record's paging slot, and the
    # conversation's paging state once the answer is in (JSON, for the session's meta).
    sent_body: bytes | None = field(default=None, repr=False)
    paging: dict[str, Any] | None = field(default=None, repr=False)
    paging_state: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def streamed(self) -> bool:
        content_type = dict(self.response_headers).get("content-type", "")
        return content_type.startswith("text/event-stream")


def unreachable(ex: Exchange, exc: Exception, *, timeout: bool) -> tuple[int, str]:
    """Mark ``ex`` as failed before any answer came (refused, reset, timed out); return the
    status and error type the client's error body gets."""
    ex.outcome = Outcome.TIMEOUT if timeout else Outcome.UNREACHABLE
    what = "did not answer in time" if timeout else "could not be reached"
    url = ex.upstream_url.split("?", 1)[0]  # its query string may carry a credential
    ex.error = f"llm386 proxy: the upstream {url} {what} ({type(exc).__name__})"
    return (504, "timeout_error") if timeout else (502, "api_error")
