"""The OpenAI Chat Completions client: sends stored request bytes unchanged, retries, reports.

Owns: ``OpenAIClient``, the OpenAI provider's client (``runtime.providers.base.ModelClient``):
the key lookup, the SDK client and its ``httpx2`` transport, one raw exchange (``send_raw``),
the retry loop (``send``), and every failure as a ``ModelCallFailed`` whose message says what
to do. With ``base_url`` it talks to any OpenAI-compatible server (vLLM, Ollama, llama.cpp's
server: their ``.../v1``).

Invariants:
- The bytes on the wire are the request bytes given, byte for byte. The official SDK cannot
  promise that through ``chat.completions.create(**params)``: it re-serialises the params with
  its own JSON encoder (its own separators and escaping), so a captured request would reach the
  server as other bytes than the agent sent (tests/runtime/test_openai_client.py shows it on a
  loopback server). So the bytes go through the SDK's own ``client.post(path, content=...)``,
  which hands them to httpx2 unchanged, and a ``request`` event hook on the httpx2 client
  hashes what is about to be sent and aborts, before any byte leaves, if it is not the
  request's hash: ``ModelCallFailed(error_type="byte-mismatch")``.
- A request asking for a stream (``"stream": true``) is sent as it is; the SSE answer is read
  whole and parsed by assembling its chunks (``runtime.providers.streams``), while the
  response body kept is the raw SSE bytes.
- The API key comes from ``api_key`` or ``OPENAI_API_KEY`` only and appears in no message, repr
  or returned object (``runtime.providers.httpclient.Scrubber``); a base URL is only shown
  without its ``user:password@``.
- Retries are ours (the SDK's ``max_retries`` is 0) so each attempt is recorded: 429, 5xx,
  timeouts and connection errors are retried after a deterministic backoff (``retry-after``
  honoured, capped); other statuses fail at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from types import TracebackType

import httpx2
import openai

from runtime.errors import ModelCallFailed
from runtime.profiles.lifecycle import check_callable
from runtime.providers.httpclient import (
    BYTE_MISMATCH,
    CONNECTION,
    MISSING_KEY,
    TIMEOUT,
    Scrubber,
    error_detail,
    is_retryable,
    ms_since,
    public_url,
    retry_after,
    sha256,
    with_wait,
)
from runtime.providers.httpclient import BytesAltered as _BytesAltered
from runtime.providers.httpclient import Outcome as _Outcome
from runtime.providers.openai.provider import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    OpenAIProvider,
    base_url_from_env,
    key_from_env,
)
from runtime.providers.response import Attempt, ModelResponse, RawResponse, check_request

__all__ = ["CHAT_PATH", "OpenAIClient"]

CHAT_PATH = "/chat/completions"  # under the base URL, which ends in /v1


class OpenAIClient:
    """Send stored Chat Completions requests to OpenAI (or a compatible server) unchanged.

    ``base_url`` is the API root ending in ``/v1`` (default ``OPENAI_BASE_URL``, else
    https://api.openai.com/v1). ``timeout`` (seconds) bounds each attempt, ``connect_timeout``
    (default: ``timeout``) its connection, ``total_timeout`` (default: none) all attempts and
    waits together. ``max_retries`` counts attempts after the first; a retry waits
    ``retry-after`` when the server sends it, else ``backoff_seconds * 2**(n-1)``, capped at
    ``max_backoff_seconds``.
    """

    provider = OpenAIProvider.name

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
    ) -> None:
        self._api_key = api_key or key_from_env()
        self._base_url = (base_url or base_url_from_env() or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self.total_timeout = total_timeout
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._scrub = Scrubber(self._api_key, self._base_url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sdk: openai.OpenAI | None = None

    def __repr__(self) -> str:
        key = "set" if self._api_key else "missing"
        return (
            f"OpenAIClient(base_url={self.base_url!r}, timeout={self.timeout}, "
            f"max_retries={self.max_retries}, api_key={key})"
        )

    @property
    def base_url(self) -> str:
        """Where requests go (the API root), without credentials."""
        return public_url(self._base_url)

    def send(self, request_bytes: bytes, *, expected_sha256: str | None) -> ModelResponse:
        """Send ``request_bytes`` unchanged to POST {base_url}/chat/completions; return the reply.

        Raises ReplayMismatch (nothing sent) if the bytes do not hash to ``expected_sha256``,
        ModelRetired (nothing sent) if they name a retired model, ModelCallFailed for every
        failure (after the retries it allows).
        """
        request_sha = check_request(request_bytes, expected_sha256)
        check_callable(OpenAIProvider().model_of(request_bytes), action="send the request")
        sdk = self._client()
        attempts: list[Attempt] = []
        started = time.perf_counter()
        for number in range(1, self.max_retries + 2):
            outcome = self._attempt(sdk, number, request_bytes, request_sha, started)
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

        No retries, no parsing. Raises ReplayMismatch (nothing sent) on a hash mismatch,
        ModelCallFailed if no answer arrived.
        """
        request_sha = check_request(request_bytes, expected_sha256)
        sdk = self._client()
        started = time.perf_counter()
        try:
            return self._post(sdk, request_bytes, request_sha, self._attempt_timeout(started))
        except openai.APIConnectionError as exc:
            outcome = self._connection_outcome(1, exc, request_sha, ms_since(started))
        assert outcome.failure is not None
        raise self._final(outcome.failure, (outcome.attempt,))

    def close(self) -> None:
        """Close the HTTP connections; the client opens new ones if used again."""
        with self._lock:
            sdk, self._sdk = self._sdk, None
        if sdk is not None:
            sdk.close()

    def __enter__(self) -> OpenAIClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def _client(self) -> openai.OpenAI:
        if not self._api_key:
            raise ModelCallFailed(
                f"no API key: set {API_KEY_ENV} (a server that takes no key, such as a local "
                "Ollama, accepts any value) or use the offline model",
                error_type=MISSING_KEY,
            )
        with self._lock:
            if self._sdk is None:
                timeout = httpx2.Timeout(self.timeout, connect=self.connect_timeout)
                http = httpx2.Client(timeout=timeout, event_hooks={"request": [self._on_request]})
                self._sdk = openai.OpenAI(api_key=self._api_key, base_url=self._base_url,
                                          timeout=timeout, max_retries=0, http_client=http)  # fmt: skip
            return self._sdk

    def _on_request(self, request: httpx2.Request) -> None:
        # Runs after the SDK built the request and before a byte is sent.
        sent = sha256(request.read())
        self._local.sent_sha256 = sent
        if sent != getattr(self._local, "expected_sha256", None):
            raise _BytesAltered(sent)

    def _attempt(
        self, sdk: openai.OpenAI, number: int, request_bytes: bytes, request_sha: str,
        started: float,
    ) -> _Outcome:  # fmt: skip
        began = time.perf_counter()
        try:
            raw = self._post(sdk, request_bytes, request_sha, self._attempt_timeout(started))
        except openai.APIConnectionError as exc:
            return self._connection_outcome(number, exc, request_sha, ms_since(began))
        if not raw.ok:
            return self._status_outcome(number, raw)
        return _Outcome(Attempt(number, raw.status, None, "ok", raw.latency_ms), raw=raw)

    def _post(
        self, sdk: openai.OpenAI, request_bytes: bytes, request_sha: str, timeout: float
    ) -> RawResponse:
        """Make one HTTP exchange; raise openai.APIConnectionError if no answer arrived."""
        self._local.expected_sha256 = request_sha
        self._local.sent_sha256 = ""
        self._local.timeout = timeout
        started = time.perf_counter()
        limits = httpx2.Timeout(timeout, connect=min(self.connect_timeout, timeout))
        try:
            reply = sdk.post(CHAT_PATH, cast_to=httpx2.Response, content=request_bytes,
                             options={"timeout": limits})  # fmt: skip
        except openai.APIStatusError as exc:
            reply = exc.response
        return RawResponse(reply.status_code, tuple(reply.headers.multi_items()), reply.content,
                           self._local.sent_sha256, ms_since(started))  # fmt: skip

    def _status_outcome(self, number: int, reply: RawResponse) -> _Outcome:
        status = reply.status
        error_type, detail = error_detail(reply, self._scrub)
        message = self._scrub(f"{status} {error_type}: {detail}")
        failure = ModelCallFailed(message, error_type=error_type, status=status)
        attempt = Attempt(number, status, error_type, message, reply.latency_ms)
        return _Outcome(attempt, failure=failure, retryable=is_retryable(status),
                        retry_after=retry_after(reply))  # fmt: skip

    def _connection_outcome(
        self, number: int, exc: openai.APIConnectionError, request_sha: str, latency_ms: float
    ) -> _Outcome:
        sent = self._local.sent_sha256
        cause = exc.__cause__ or exc
        if sent and sent != request_sha:
            kind, retryable = BYTE_MISMATCH, False
            detail = f"the HTTP layer was about to send bytes hashing to {sent}, not {request_sha}"
        elif isinstance(exc, openai.APITimeoutError):
            kind, retryable = TIMEOUT, True
            detail = f"{type(cause).__name__} after {self._local.timeout:.3g}s"
        else:
            kind, retryable = CONNECTION, True
            detail = self._scrub(f"{type(cause).__name__}: {cause}")
        attempt = Attempt(number, None, kind, detail, latency_ms)
        return _Outcome(attempt, failure=ModelCallFailed(detail, error_type=kind),
                        retryable=retryable)  # fmt: skip

    def _final(self, failure: ModelCallFailed, attempts: tuple[Attempt, ...]) -> ModelCallFailed:
        advice = self._advice(failure.error_type, failure.status or 0, len(attempts))
        return ModelCallFailed(self._scrub(f"{advice} ({failure})"), error_type=failure.error_type,
                               status=failure.status, attempts=attempts)  # fmt: skip

    def _advice(self, error_type: str, status: int, tries: int) -> str:
        """Return what happened and what to do, for a call that ended after ``tries`` attempts."""
        after = "1 attempt" if tries == 1 else f"{tries} attempts"
        if error_type == BYTE_MISMATCH:
            return "refused to send: the request bytes were altered on the way, so nothing was sent"
        if error_type == TIMEOUT:
            return f"no answer within {self.timeout:g}s after {after}: raise the timeout or retry"
        if error_type == CONNECTION:
            return (f"could not reach {self.base_url} after {after}: check the network and "
                    f"{BASE_URL_ENV}, then retry")  # fmt: skip
        if status == 401:
            return f"the API key was refused: set {API_KEY_ENV} to a valid key"
        if status == 404:
            return (
                f"the server does not know this model or path: check the model and {BASE_URL_ENV}"
            )
        if status == 429:
            return f"rate limited after {after}: wait and replay"
        if status >= 500:
            return f"the server failed with {status} after {after}: try again later and replay"
        return f"the server rejected the request with {status}: retrying will not help"

    def _response(
        self, outcome: _Outcome, attempts: tuple[Attempt, ...], started: float
    ) -> ModelResponse:
        assert outcome.raw is not None
        raw = replace(outcome.raw, latency_ms=ms_since(started))
        try:
            return OpenAIProvider().parse(raw, attempts)
        except ModelCallFailed as exc:  # not chained: the inner message quotes the raw body
            raise ModelCallFailed(self._scrub(str(exc)), error_type=exc.error_type,
                                  status=exc.status, attempts=attempts) from None  # fmt: skip

    def _attempt_timeout(self, started: float) -> float:
        if self.total_timeout is None:
            return self.timeout
        left = self.total_timeout - (time.perf_counter() - started)
        return max(min(self.timeout, left), 0.001)

    def _out_of_time(self, started: float, wait: float) -> bool:
        if self.total_timeout is None:
            return False
        return time.perf_counter() - started + wait >= self.total_timeout

    def _wait_seconds(self, number: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_backoff_seconds)
        return min(self.backoff_seconds * 2 ** (number - 1), self.max_backoff_seconds)
