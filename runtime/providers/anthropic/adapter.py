"""The Anthropic Messages API adapter: sends stored request bytes unchanged, retries, reports.

Owns: ``AnthropicAdapter`` -- the Anthropic provider's client (``runtime.providers.base.ModelClient``):
key lookup, the SDK client and its ``httpx2`` transport, one raw exchange (``send_raw``), the
retry loop (``send``), and turning every failure into a ``ModelCallFailed`` whose message says
what to do. This package is the only place that imports ``anthropic`` and ``httpx2``.

Invariants:
- The bytes on the wire are the request bytes given, byte for byte. They go through the SDK's
  own ``client.post(..., content=...)`` rather than ``messages.create(**params)``, because
  ``create`` rebuilds the body in its own key order (a request with ``metadata`` comes out in a
  different order than canonical JSON) and warns on deprecated model names. A ``request`` event
  hook on the httpx2 client hashes what is about to be sent and aborts the send, before any
  byte leaves, if that hash is not the request's: ``ModelCallFailed(error_type="byte-mismatch")``.
- The API key comes from the ``api_key`` argument or ``ANTHROPIC_API_KEY`` only. It appears in
  no message, repr or returned object; server text quoted in errors is scrubbed of it, and of
  any cut copy of it (a run of 8+ characters from any part of the key), before it is
  shortened; that holds for the error type as well as the message.
  A base URL is only ever shown without its ``user:password@`` part.
- Retries are ours (the SDK's ``max_retries`` is 0) so each attempt is recorded: 429, 5xx,
  timeouts and connection errors are retried after a deterministic backoff (``retry-after``
  honoured, capped); other statuses fail at once.
- A request naming a retired model (runtime.profiles.lifecycle) raises ModelRetired before the SDK
  client is even made: nothing is sent for a model the API no longer serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

import anthropic
import httpx2

from runtime.errors import ModelCallFailed
from runtime.profiles.lifecycle import check_callable
from runtime.providers.anthropic.provider import (
    API_KEY_ENV,
    api_key_available,
    base_url_from_env,
    key_from_env,
)
from runtime.providers.httpclient import (
    BYTE_MISMATCH,
    CONNECTION,
    MISSING_KEY,
    TIMEOUT,
    Scrubber,
)
from runtime.providers.httpclient import BytesAltered as _BytesAltered
from runtime.providers.httpclient import Outcome as _Outcome
from runtime.providers.httpclient import error_detail as _error_detail
from runtime.providers.httpclient import ms_since as _ms_since
from runtime.providers.httpclient import public_url as _public_url
from runtime.providers.httpclient import retry_after as _retry_after
from runtime.providers.httpclient import sha256 as _sha256
from runtime.providers.httpclient import with_wait as _with_wait
from runtime.providers.response import (
    Attempt,
    ModelResponse,
    RawResponse,
    check_request,
    messages_response,
    parse_request,
)

__all__ = ["API_KEY_ENV", "AnthropicAdapter", "api_key_available"]

MESSAGES_PATH = "/v1/messages"


class AnthropicAdapter:
    """Send packed Messages API requests to Anthropic through the official SDK.

    ``timeout`` (seconds) bounds each attempt, ``connect_timeout`` (default: ``timeout``) its
    connection, ``total_timeout`` (default: none) all attempts and waits together: no retry
    starts that could not finish within it. ``max_retries`` counts attempts after the first.
    A retry waits ``retry-after`` when the API sends it, else ``backoff_seconds * 2**(n-1)``;
    either is capped at ``max_backoff_seconds``. ``middleware`` is handed to the SDK (for
    logging, say); one that changes the request body is refused by the byte check.
    """

    provider = "anthropic"

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        *,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 8.0,
        middleware: Sequence[Any] = (),
        connect_timeout: float | None = None,
        total_timeout: float | None = None,
    ) -> None:
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.total_timeout = total_timeout
        self._api_key = api_key or key_from_env()
        self._base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._middleware = tuple(middleware)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sdk: anthropic.Anthropic | None = None
        self._http: httpx2.Client | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return (
            f"AnthropicAdapter(base_url={self.base_url!r}, timeout={self.timeout}, "
            f"max_retries={self.max_retries}, api_key={key})"
        )

    @property
    def base_url(self) -> str:
        """Where requests go, without credentials: the argument, else ANTHROPIC_BASE_URL or default."""
        return _public_url(self._target_url())

    def _target_url(self) -> str:
        if self._sdk is not None:
            return str(self._sdk.base_url)
        return self._base_url or base_url_from_env() or "https://api.anthropic.com"

    def send(self, request_bytes: bytes, *, expected_sha256: str | None) -> ModelResponse:
        """Send ``request_bytes`` unchanged to POST /v1/messages and return the reply.

        Raises ReplayMismatch (nothing sent) if the bytes do not hash to ``expected_sha256``,
        InvalidInput if they are not a Messages request, ModelRetired (nothing sent) if they
        name a retired model, ModelCallFailed for every API failure.
        """
        request_sha = check_request(request_bytes, expected_sha256)
        model = parse_request(request_bytes).get("model")
        if isinstance(model, str):
            check_callable(model, action="send the request")
        sdk = self._client()
        attempts: list[Attempt] = []
        started = time.perf_counter()
        for number in range(1, self.max_retries + 2):
            timeout = self._attempt_timeout(started)
            outcome = self._attempt(sdk, number, request_bytes, request_sha, timeout)
            if outcome.failure is None:
                attempts.append(outcome.attempt)
                return self._response(outcome, tuple(attempts), started)
            wait = self._wait_seconds(number, outcome.retry_after)
            if (
                not outcome.retryable
                or number > self.max_retries
                or self._out_of_time(started, wait)
            ):
                attempts.append(outcome.attempt)
                raise self._final(outcome.failure, tuple(attempts))
            attempts.append(_with_wait(outcome.attempt, wait))
            time.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises on its last attempt")

    def send_raw(self, request_bytes: bytes, *, expected_sha256: str | None) -> RawResponse:
        """Send ``request_bytes`` unchanged to POST /v1/messages once; return the answer as it
        arrived, whatever its status.

        No retries and no parsing. Raises ReplayMismatch (nothing sent) if the bytes do not hash
        to ``expected_sha256``, ModelCallFailed if no answer arrived (timeout, connection, the
        byte check refusing what the SDK was about to send).
        """
        request_sha = check_request(request_bytes, expected_sha256)
        sdk = self._client()
        started = time.perf_counter()
        try:
            return self._post(sdk, request_bytes, request_sha, self._attempt_timeout(started))
        except anthropic.APIConnectionError as exc:
            outcome = self._connection_outcome(1, exc, request_sha, _ms_since(started))
        assert outcome.failure is not None
        raise self._final(outcome.failure, (outcome.attempt,))

    def _out_of_time(self, started: float, wait: float) -> bool:
        """Whether no time of ``total_timeout`` would be left after waiting ``wait``."""
        if self.total_timeout is None:
            return False
        return time.perf_counter() - started + wait >= self.total_timeout

    def _attempt_timeout(self, started: float) -> float:
        """Return this attempt's timeout: ``timeout``, cut to what ``total_timeout`` leaves."""
        if self.total_timeout is None:
            return self.timeout
        left = self.total_timeout - (time.perf_counter() - started)
        return max(min(self.timeout, left), 0.001)

    def close(self) -> None:
        """Close the HTTP connections; the adapter opens new ones if used again."""
        with self._lock:
            sdk, self._sdk, self._http = self._sdk, None, None
        if sdk is not None:
            sdk.close()

    def __enter__(self) -> AnthropicAdapter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _client(self) -> anthropic.Anthropic:
        if not self._api_key:
            raise ModelCallFailed(
                "no API key: set ANTHROPIC_API_KEY or use the offline model",
                error_type=MISSING_KEY,
            )
        with self._lock:
            if self._sdk is None:
                timeout = httpx2.Timeout(self.timeout, connect=self.connect_timeout)
                self._http = httpx2.Client(
                    timeout=timeout, event_hooks={"request": [self._on_request]}
                )
                self._sdk = anthropic.Anthropic(
                    api_key=self._api_key,
                    base_url=self._base_url,
                    timeout=timeout,
                    max_retries=0,
                    http_client=self._http,
                    middleware=self._middleware or None,
                )
            return self._sdk

    def _on_request(self, request: httpx2.Request) -> None:
        # Runs after the SDK built the request and before a byte is sent.
        sent = _sha256(request.read())
        self._local.sent_sha256 = sent
        if sent != getattr(self._local, "expected_sha256", None):
            raise _BytesAltered(sent)

    def _attempt(
        self,
        sdk: anthropic.Anthropic,
        number: int,
        request_bytes: bytes,
        request_sha: str,
        timeout: float,
    ) -> _Outcome:
        started = time.perf_counter()
        try:
            raw = self._post(sdk, request_bytes, request_sha, timeout)
        except anthropic.APIConnectionError as exc:
            return self._connection_outcome(number, exc, request_sha, _ms_since(started))
        if not raw.ok:
            return self._status_outcome(number, raw)
        attempt = Attempt(number, raw.status, None, "ok", raw.latency_ms)
        return _Outcome(attempt, raw=raw)

    def _post(
        self, sdk: anthropic.Anthropic, request_bytes: bytes, request_sha: str, timeout: float
    ) -> RawResponse:
        """Make one HTTP exchange; raise anthropic.APIConnectionError if no answer arrived."""
        self._local.expected_sha256 = request_sha
        self._local.sent_sha256 = ""
        self._local.timeout = timeout
        started = time.perf_counter()
        limits = httpx2.Timeout(timeout, connect=min(self.connect_timeout, timeout))
        try:
            reply = sdk.post(
                MESSAGES_PATH,
                cast_to=httpx2.Response,
                content=request_bytes,
                options={"timeout": limits},
            )
        except anthropic.APIStatusError as exc:
            reply = exc.response
        return RawResponse(
            reply.status_code,
            tuple(reply.headers.multi_items()),
            reply.content,
            self._local.sent_sha256,
            _ms_since(started),
        )

    def _status_outcome(self, number: int, reply: RawResponse) -> _Outcome:
        status = reply.status
        error_type, detail = _error_detail(reply, self._scrub)
        message = self._scrub(f"{status} {error_type}: {detail}")
        failure = ModelCallFailed(message, error_type=error_type, status=status)
        retryable = status == 429 or status >= 500
        attempt = Attempt(number, status, error_type, message, reply.latency_ms)
        return _Outcome(
            attempt, failure=failure, retryable=retryable, retry_after=_retry_after(reply)
        )

    def _connection_outcome(
        self, number: int, exc: anthropic.APIConnectionError, request_sha: str, latency_ms: float
    ) -> _Outcome:
        sent = self._local.sent_sha256
        if sent and sent != request_sha:
            kind, retryable = BYTE_MISMATCH, False
            detail = f"the HTTP layer was about to send bytes hashing to {sent}, not {request_sha}"
        elif isinstance(exc, anthropic.APITimeoutError):
            kind, retryable = TIMEOUT, True
            detail = f"{type(exc.__cause__ or exc).__name__} after {self._local.timeout:.3g}s"
        else:
            kind, retryable = CONNECTION, True
            detail = self._scrub(f"{type(exc.__cause__ or exc).__name__}: {exc.__cause__ or exc}")
        attempt = Attempt(number, None, kind, detail, latency_ms)
        failure = ModelCallFailed(detail, error_type=kind)
        return _Outcome(attempt, failure=failure, retryable=retryable)

    def _final(self, failure: ModelCallFailed, attempts: tuple[Attempt, ...]) -> ModelCallFailed:
        advice = _advice(failure.error_type, failure.status, len(attempts), self)
        message = self._scrub(f"{advice} ({failure})")
        return ModelCallFailed(
            message, error_type=failure.error_type, status=failure.status, attempts=attempts
        )

    def _response(
        self, outcome: _Outcome, attempts: tuple[Attempt, ...], started: float
    ) -> ModelResponse:
        assert outcome.raw is not None
        try:
            return messages_response(replace(outcome.raw, latency_ms=_ms_since(started)), attempts)
        except ModelCallFailed as exc:
            # Not chained: the inner message quotes the body before the key was scrubbed out.
            raise ModelCallFailed(
                self._scrub(str(exc)),
                error_type=exc.error_type,
                status=exc.status,
                attempts=attempts,
            ) from None

    def _wait_seconds(self, number: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff_seconds)
        return min(self.backoff_seconds * 2 ** (number - 1), self.max_backoff_seconds)

    def _scrub(self, text: str) -> str:
        """Remove the API key and base URL credentials from text quoted from elsewhere.

        A server or gateway could echo them, whole or cut short; cut copies are masked too.
        """
        return Scrubber(self._api_key, self._target_url())(text)


def _advice(error_type: str, status: int | None, tries: int, adapter: AnthropicAdapter) -> str:
    """Return what happened and what to do, for a call that ended after ``tries`` attempts."""
    if error_type == BYTE_MISMATCH:
        return (
            "refused to send: the SDK or a middleware altered the request bytes, so nothing was "
            "sent; remove the middleware, or report this as a bug"
        )
    if error_type == TIMEOUT:
        return (
            f"no answer within {adapter.timeout:g}s after {_attempts(tries)}: "
            "raise timeout_seconds or retry"
        )
    if error_type == CONNECTION:
        return (
            f"could not reach {adapter.base_url} after {_attempts(tries)}: "
            "check the network and ANTHROPIC_BASE_URL, then retry"
        )
    return _status_advice(status or 0, tries)


def _attempts(count: int) -> str:
    return "1 attempt" if count == 1 else f"{count} attempts"


def _status_advice(status: int, tries: int) -> str:
    if status == 401:
        return "the API key was refused: set ANTHROPIC_API_KEY to a valid key"
    if status == 403:
        return "the API key may not do this: check the key's workspace and model access"
    if status == 404:
        return (
            "the API does not know this model or path: check the model name and ANTHROPIC_BASE_URL"
        )
    if status == 413:
        return "the request is too large for the API: lower the token budget and pack again"
    if status == 429:
        return f"rate limited after {_attempts(tries)}: wait and replay"
    if status == 529:
        return f"the API is overloaded after {_attempts(tries)}: wait and replay"
    if status >= 500:
        return f"the API failed with {status} after {_attempts(tries)}: try again later and replay"
    return f"the API rejected the request with {status}: fix the request; retrying will not help"
