"""The Anthropic Messages API adapter: sends stored request bytes unchanged, retries, reports.

Owns: ``AnthropicAdapter`` -- the Anthropic provider's client (``runtime.providers.base.ModelClient``):
key lookup, the SDK client on its ``httpx2`` transport, and the advice every failure's
``ModelCallFailed`` carries. The exchange, the byte check and the retry loop are
``runtime.providers.httpclient.RetryingClient``. This package is the only place that imports
``anthropic``.

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

from collections.abc import Sequence
from typing import Any

import anthropic
import httpx2

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
    TIMEOUT,
    RetryingClient,
    attempts_phrase,
)
from runtime.providers.response import (
    Attempt,
    ModelResponse,
    RawResponse,
    messages_response,
    parse_request,
)

__all__ = ["API_KEY_ENV", "AnthropicAdapter", "api_key_available"]

MESSAGES_PATH = "/v1/messages"


class AnthropicAdapter(RetryingClient):
    """Send packed Messages API requests to Anthropic through the official SDK.

    ``timeout`` (seconds) bounds each attempt, ``connect_timeout`` (default: ``timeout``) its
    connection, ``total_timeout`` (default: none) all attempts and waits together: no retry
    starts that could not finish within it. ``max_retries`` counts attempts after the first.
    A retry waits ``retry-after`` when the API sends it, else ``backoff_seconds * 2**(n-1)``;
    either is capped at ``max_backoff_seconds``. ``middleware`` is handed to the SDK (for
    logging, say); one that changes the request body is refused by the byte check.
    """

    provider = "anthropic"
    path = MESSAGES_PATH
    connection_error = anthropic.APIConnectionError
    timeout_error = anthropic.APITimeoutError
    status_error = anthropic.APIStatusError
    missing_key = "no API key: set ANTHROPIC_API_KEY or use the offline model"

    def __init__(self, *args: Any, middleware: Sequence[Any] = (), **options: Any) -> None:
        """Take :class:`RetryingClient`'s arguments, and ``middleware`` to hand to the SDK."""
        super().__init__(*args, **options)
        self._middleware = tuple(middleware)

    def _key_from_env(self) -> str | None:
        return key_from_env()

    def _target_url(self) -> str:
        """The argument, else ANTHROPIC_BASE_URL, else the default; the SDK's once it exists."""
        if self._sdk is not None:
            return str(self._sdk.base_url)
        return self._base_url or base_url_from_env() or "https://api.anthropic.com"

    def _make_sdk(self, timeout: httpx2.Timeout, http: httpx2.Client) -> Any:
        return anthropic.Anthropic(api_key=self._api_key, base_url=self._base_url, timeout=timeout,
                                   max_retries=0, http_client=http,
                                   middleware=self._middleware or None)  # fmt: skip

    def _check_model(self, request_bytes: bytes) -> None:
        """Raise InvalidInput if not a Messages request, ModelRetired for a retired model."""
        model = parse_request(request_bytes).get("model")
        if isinstance(model, str):
            check_callable(model, action="send the request")

    def _parse(self, raw: RawResponse, attempts: tuple[Attempt, ...]) -> ModelResponse:
        return messages_response(raw, attempts)

    def _advice(self, error_type: str, status: int, tries: int) -> str:
        return _advice(error_type, status, tries, self)


def _advice(error_type: str, status: int, tries: int, adapter: AnthropicAdapter) -> str:
    """Return what happened and what to do, for a call that ended after ``tries`` attempts."""
    if error_type == BYTE_MISMATCH:
        return (
            "refused to send: the SDK or a middleware altered the request bytes, so nothing was "
            "sent; remove the middleware, or report this as a bug"
        )
    if error_type == TIMEOUT:
        return (
            f"no answer within {adapter.timeout:g}s after {attempts_phrase(tries)}: "
            "raise timeout_seconds or retry"
        )
    if error_type == CONNECTION:
        return (
            f"could not reach {adapter.base_url} after {attempts_phrase(tries)}: "
            "check the network and ANTHROPIC_BASE_URL, then retry"
        )
    return _status_advice(status, tries)


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
        return f"rate limited after {attempts_phrase(tries)}: wait and replay"
    if status == 529:
        return f"the API is overloaded after {attempts_phrase(tries)}: wait and replay"
    if status >= 500:
        return f"the API failed with {status} after {attempts_phrase(tries)}: try again later and replay"
    return f"the API rejected the request with {status}: fix the request; retrying will not help"
