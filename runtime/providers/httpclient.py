"""What every provider's HTTP client shares: the byte check, error bodies read, the retry loop.

Owns: ``RetryingClient`` (the base of the Anthropic adapter and the OpenAI client: the SDK client
on an ``httpx2`` transport whose request hook checks the bytes, one raw exchange, the retry loop,
failures turned into ``ModelCallFailed``), ``error_detail`` (type and message of an error body
in either API's shape), ``retry_after``, ``is_retryable``, ``with_wait``, ``ms_since`` and
``sha256``. Both clients are built on them, so both keep the same promises about bytes, keys
and retries; a subclass names its SDK's path and exceptions, builds the SDK client, parses an
answer and words the advice. Text quoted from a server is scrubbed of secrets
(``runtime.providers.scrub``) before it reaches a message.

Invariants:
- 429 and every 5xx are retryable; other statuses are not (retrying will not change them).
- The bytes on the wire are the request bytes given: the ``request`` hook hashes what is about
  to be sent and aborts before any byte leaves if it is not the request's hash.
- Retries are ours (the SDK's ``max_retries`` is 0), so each attempt is recorded; the backoff
  is deterministic (``retry-after`` honoured, capped) and no retry starts past ``total_timeout``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, ClassVar, Self

import httpx2

from runtime import limits
from runtime.blocks import canonical_json
from runtime.errors import Llm386Error, ModelCallFailed
from runtime.providers.response import Attempt, ModelResponse, RawResponse, check_request
from runtime.providers.scrub import Scrubber, public_url

MAX_QUOTED_CHARS = 200  # of a non-JSON error body quoted in a message
MAX_ERROR_TYPE_CHARS = 80  # of the API's error type, which names a kind and is never long


# Failure kinds both clients report in their attempts.
BYTE_MISMATCH = "byte-mismatch"
MISSING_KEY = "missing-key"
TIMEOUT = "timeout"
CONNECTION = "connection"


class BytesAltered(Exception):
    """Raised inside a request hook to stop a send whose bytes are not the request's."""


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: a successful answer, or a failure and whether to try again."""

    attempt: Attempt
    raw: RawResponse | None = None
    failure: ModelCallFailed | None = None
    retryable: bool = False
    retry_after: float | None = None


def error_detail(reply: RawResponse, scrub: Callable[[str], str]) -> tuple[str, str]:
    """Return (error type, message) from an error body of either API's shape, else its raw text.

    Both APIs answer ``{"error": {"type": ..., "message": ...}}`` (OpenAI-compatible servers
    sometimes leave ``type`` null and set ``code``). Both come from the server, so both are
    scrubbed (a gateway may put the key in either, or nest it deeper in the message). Raw text
    is scrubbed whole before it is shortened: a key cut in two by the shortening would no
    longer match the key.
    """
    try:
        error = limits.loads(reply.body, "the error body", limits.RESPONSE_LIMITS)["error"]
        kind, message = error.get("type") or error["code"], error.get("message", "")
    except (Llm386Error, TypeError, KeyError, AttributeError):
        text = scrub(reply.body.decode("utf-8", "replace"))
        return f"http-{reply.status}", text[:MAX_QUOTED_CHARS]
    kind = scrub(kind if isinstance(kind, str) else canonical_json(kind).decode())
    message = message if isinstance(message, str) else canonical_json(message).decode()
    return kind[:MAX_ERROR_TYPE_CHARS], scrub(message)


def is_retryable(status: int) -> bool:
    """Whether an answer with ``status`` is worth another attempt (429 and 5xx)."""
    return status == 429 or status >= 500


def retry_after(reply: RawResponse) -> float | None:
    """Return the ``retry-after`` seconds the server asked for, or None."""
    try:
        return float(reply.header("retry-after") or "")
    except ValueError:
        return None  # absent, or an HTTP date: fall back to our own backoff


def with_wait(attempt: Attempt, wait_seconds: float) -> Attempt:
    """Return ``attempt`` noting how long we waited after it."""
    return replace(attempt, wait_ms=round(wait_seconds * 1000, 3))


def ms_since(started: float) -> float:
    """Return the milliseconds since ``started`` (a ``time.perf_counter()`` reading)."""
    return round((time.perf_counter() - started) * 1000, 3)


def sha256(data: bytes) -> str:
    """Return the hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def attempts_phrase(count: int) -> str:
    """Return "1 attempt" or "N attempts", for advice."""
    return "1 attempt" if count == 1 else f"{count} attempts"


class RetryingClient:
    """Send stored request bytes unchanged through an official SDK, with our own retries.

    ``timeout`` (seconds) bounds each attempt, ``connect_timeout`` (default: ``timeout``) its
    connection, ``total_timeout`` (default: none) all attempts and waits together: no retry
    starts that could not finish within it. ``max_retries`` counts attempts after the first.
    A retry waits ``retry-after`` when the server sends it, else ``backoff_seconds * 2**(n-1)``;
    either is capped at ``max_backoff_seconds``. ``headers`` go with every request (e.g. the
    capture proxy's ``x-llm386-session``); they never change the body bytes.
    """

    provider: str  # the Provider's name
    path: ClassVar[str]  # POSTed to, under the SDK's base URL
    connection_error: ClassVar[type[Exception]]  # the SDK's "no answer arrived"
    timeout_error: ClassVar[type[Exception]]  # a subclass of connection_error
    status_error: ClassVar[type[Exception]]  # the SDK's error carrying a non-2xx ``response``
    missing_key: ClassVar[str]  # the message when there is no API key

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        *,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 8.0,
        connect_timeout: float | None = None,
        total_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._api_key = api_key or self._key_from_env()
        self.headers = dict(sorted((headers or {}).items()))
        self._base_url = self._resolve_base_url(base_url)
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.total_timeout = total_timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sdk: Any = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, timeout={self.timeout}, "
            f"max_retries={self.max_retries}, api_key={key})"
        )

    @property
    def base_url(self) -> str:
        """Where requests go (the API root), without credentials."""
        return public_url(self._target_url())

    # What a subclass provides.

    def _key_from_env(self) -> str | None:
        """Return the API key the environment holds, or None."""
        raise NotImplementedError

    def _resolve_base_url(self, base_url: str | None) -> str | None:
        """Return where requests go, from the ``base_url`` argument (None: the SDK's default)."""
        return base_url

    def _target_url(self) -> str:
        """Return the API root requests go to, credentials and all."""
        raise NotImplementedError

    def _make_sdk(self, timeout: httpx2.Timeout, http: httpx2.Client) -> Any:
        """Return the SDK client over ``http``, with the SDK's own retries off."""
        raise NotImplementedError

    def _check_model(self, request_bytes: bytes) -> None:
        """Raise ModelRetired (nothing sent) if the request names a retired model."""
        raise NotImplementedError

    def _parse(self, raw: RawResponse, attempts: tuple[Attempt, ...]) -> ModelResponse:
        """Return the model's answer from a successful ``raw`` reply."""
        raise NotImplementedError

    def _advice(self, error_type: str, status: int, tries: int) -> str:
        """Return what happened and what to do, for a call that ended after ``tries`` attempts."""
        raise NotImplementedError

    def _path_for(self, request_bytes: bytes) -> str:
        """Return the path these bytes are POSTed to (a provider with several APIs chooses)."""
        return self.path

    # The shared machinery.

    def send(self, request_bytes: bytes, *, expected_sha256: str | None) -> ModelResponse:
        """Send ``request_bytes`` unchanged to POST {base_url}{path}; return the reply.

        Raises ReplayMismatch (nothing sent) if the bytes do not hash to ``expected_sha256``,
        ModelRetired (nothing sent) if they name a retired model, ModelCallFailed for every
        failure (after the retries it allows).
        """
        request_sha = check_request(request_bytes, expected_sha256)
        self._check_model(request_bytes)
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
            last = not outcome.retryable or number > self.max_retries
            if last or self._out_of_time(started, wait):
                attempts.append(outcome.attempt)
                raise self._final(outcome.failure, tuple(attempts))
            attempts.append(with_wait(outcome.attempt, wait))
            time.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises on its last attempt")

    def send_raw(self, request_bytes: bytes, *, expected_sha256: str | None) -> RawResponse:
        """Send ``request_bytes`` unchanged once; return the answer as it arrived, any status.

        No retries and no parsing. Raises ReplayMismatch (nothing sent) if the bytes do not hash
        to ``expected_sha256``, ModelCallFailed if no answer arrived (timeout, connection, the
        byte check refusing what the SDK was about to send).
        """
        request_sha = check_request(request_bytes, expected_sha256)
        sdk = self._client()
        started = time.perf_counter()
        try:
            return self._post(sdk, request_bytes, request_sha, self._attempt_timeout(started))
        except self.connection_error as exc:
            outcome = self._connection_outcome(1, exc, request_sha, ms_since(started))
        assert outcome.failure is not None
        raise self._final(outcome.failure, (outcome.attempt,))

    def close(self) -> None:
        """Close the HTTP connections; the client opens new ones if used again."""
        with self._lock:
            sdk, self._sdk = self._sdk, None
        if sdk is not None:
            sdk.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def _client(self) -> Any:
        if not self._api_key:
            raise ModelCallFailed(self.missing_key, error_type=MISSING_KEY)
        with self._lock:
            if self._sdk is None:
                timeout = httpx2.Timeout(self.timeout, connect=self.connect_timeout)
                http = httpx2.Client(timeout=timeout, event_hooks={"request": [self._on_request]})
                self._sdk = self._make_sdk(timeout, http)
            return self._sdk

    def _on_request(self, request: httpx2.Request) -> None:
        # Runs after the SDK built the request and before a byte is sent.
        sent = sha256(request.read())
        self._local.sent_sha256 = sent
        if sent != getattr(self._local, "expected_sha256", None):
            raise BytesAltered(sent)

    def _attempt(
        self, sdk: Any, number: int, request_bytes: bytes, request_sha: str, timeout: float
    ) -> Outcome:
        began = time.perf_counter()
        try:
            raw = self._post(sdk, request_bytes, request_sha, timeout)
        except self.connection_error as exc:
            return self._connection_outcome(number, exc, request_sha, ms_since(began))
        if not raw.ok:
            return self._status_outcome(number, raw)
        return Outcome(Attempt(number, raw.status, None, "ok", raw.latency_ms), raw=raw)

    def _post(
        self, sdk: Any, request_bytes: bytes, request_sha: str, timeout: float
    ) -> RawResponse:
        """Make one HTTP exchange; raise ``connection_error`` if no answer arrived."""
        self._local.expected_sha256 = request_sha
        self._local.sent_sha256 = ""
        self._local.timeout = timeout
        started = time.perf_counter()
        bounds = httpx2.Timeout(timeout, connect=min(self.connect_timeout, timeout))
        try:
            reply = sdk.post(self._path_for(request_bytes), cast_to=httpx2.Response, content=request_bytes,
                             options={"timeout": bounds, "headers": self.headers})  # fmt: skip
        except self.status_error as exc:
            reply = exc.response  # type: ignore[attr-defined]
        return RawResponse(reply.status_code, tuple(reply.headers.multi_items()), reply.content,
                           self._local.sent_sha256, ms_since(started))  # fmt: skip

    def _status_outcome(self, number: int, reply: RawResponse) -> Outcome:
        status = reply.status
        error_type, detail = error_detail(reply, self._scrub)
        message = self._scrub(f"{status} {error_type}: {detail}")
        failure = ModelCallFailed(message, error_type=error_type, status=status)
        attempt = Attempt(number, status, error_type, message, reply.latency_ms)
        return Outcome(attempt, failure=failure, retryable=is_retryable(status),
                       retry_after=retry_after(reply))  # fmt: skip

    def _connection_outcome(
        self, number: int, exc: Exception, request_sha: str, latency_ms: float
    ) -> Outcome:
        sent = self._local.sent_sha256
        cause = exc.__cause__ or exc
        if sent and sent != request_sha:
            kind, retryable = BYTE_MISMATCH, False
            detail = f"the HTTP layer was about to send bytes hashing to {sent}, not {request_sha}"
        elif isinstance(exc, self.timeout_error):
            kind, retryable = TIMEOUT, True
            detail = f"{type(cause).__name__} after {self._local.timeout:.3g}s"
        else:
            kind, retryable = CONNECTION, True
            detail = self._scrub(f"{type(cause).__name__}: {cause}")
        attempt = Attempt(number, None, kind, detail, latency_ms)
        return Outcome(attempt, failure=ModelCallFailed(detail, error_type=kind),
                       retryable=retryable)  # fmt: skip

    def _final(self, failure: ModelCallFailed, attempts: tuple[Attempt, ...]) -> ModelCallFailed:
        advice = self._advice(failure.error_type, failure.status or 0, len(attempts))
        return ModelCallFailed(self._scrub(f"{advice} ({failure})"), error_type=failure.error_type,
                               status=failure.status, attempts=attempts)  # fmt: skip

    def _response(
        self, outcome: Outcome, attempts: tuple[Attempt, ...], started: float
    ) -> ModelResponse:
        assert outcome.raw is not None
        try:
            return self._parse(replace(outcome.raw, latency_ms=ms_since(started)), attempts)
        except ModelCallFailed as exc:  # not chained: the inner message quotes the raw body
            raise ModelCallFailed(self._scrub(str(exc)), error_type=exc.error_type,
                                  status=exc.status, attempts=attempts) from None  # fmt: skip

    def _attempt_timeout(self, started: float) -> float:
        """Return this attempt's timeout: ``timeout``, cut to what ``total_timeout`` leaves."""
        if self.total_timeout is None:
            return self.timeout
        left = self.total_timeout - (time.perf_counter() - started)
        return max(min(self.timeout, left), 0.001)

    def _out_of_time(self, started: float, wait: float) -> bool:
        """Whether no time of ``total_timeout`` would be left after waiting ``wait``."""
        if self.total_timeout is None:
            return False
        return time.perf_counter() - started + wait >= self.total_timeout

    def _wait_seconds(self, number: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_backoff_seconds)
        return min(self.backoff_seconds * 2 ** (number - 1), self.max_backoff_seconds)

    def _scrub(self, text: str) -> str:
        """Remove the API key and the base URL's credentials from text quoted from elsewhere."""
        return Scrubber(self._api_key, self._target_url())(text)
