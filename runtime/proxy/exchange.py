"""One call through the proxy as it happened: what the client sent, what came back, and when.

Owns: ``Exchange`` (built on the response path, handed to the recorder) and ``Outcome`` (how
the call ended). An exchange holds only redacted headers: credentials never reach it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

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

    @property
    def streamed(self) -> bool:
        content_type = dict(self.response_headers).get("content-type", "")
        return content_type.startswith("text/event-stream")
