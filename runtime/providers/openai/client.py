"""The OpenAI client: sends stored request bytes unchanged, retries, reports.

A Chat Completions request goes to ``/chat/completions``; a Responses API request (one with
``input`` and no ``messages``, as the proxy captures them) goes to ``/responses``.

Owns: ``OpenAIClient``, the OpenAI provider's client (``runtime.providers.base.ModelClient``):
the key lookup, the SDK client on its ``httpx2`` transport, and the advice its failures carry.
The exchange, the byte check and the retry loop are ``runtime.providers.httpclient.RetryingClient``.
With ``base_url`` it talks to any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server:
their ``.../v1``).

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
  or returned object (``runtime.providers.scrub.Scrubber``); a base URL is only shown
  without its ``user:password@``.
- Retries are ours (the SDK's ``max_retries`` is 0) so each attempt is recorded: 429, 5xx,
  timeouts and connection errors are retried after a deterministic backoff (``retry-after``
  honoured, capped); other statuses fail at once.
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai

from runtime.profiles.lifecycle import check_callable
from runtime.providers.httpclient import (
    BYTE_MISMATCH,
    CONNECTION,
    TIMEOUT,
    RetryingClient,
    attempts_phrase,
)
from runtime.providers.openai.provider import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    OpenAIProvider,
    base_url_from_env,
    is_responses_request,
    key_from_env,
)
from runtime.providers.response import Attempt, ModelResponse, RawResponse

__all__ = ["CHAT_PATH", "RESPONSES_PATH", "OpenAIClient"]

CHAT_PATH = "/chat/completions"  # under the base URL, which ends in /v1
RESPONSES_PATH = "/responses"


class OpenAIClient(RetryingClient):
    """Send stored Chat Completions requests to OpenAI (or a compatible server) unchanged.

    ``base_url`` is the API root ending in ``/v1`` (default ``OPENAI_BASE_URL``, else
    https://api.openai.com/v1). ``timeout`` (seconds) bounds each attempt, ``connect_timeout``
    (default: ``timeout``) its connection, ``total_timeout`` (default: none) all attempts and
    waits together. ``max_retries`` counts attempts after the first; a retry waits
    ``retry-after`` when the server sends it, else ``backoff_seconds * 2**(n-1)``, capped at
    ``max_backoff_seconds``.
    """

    provider = OpenAIProvider.name
    path = CHAT_PATH
    connection_error = openai.APIConnectionError
    timeout_error = openai.APITimeoutError
    status_error = openai.APIStatusError
    missing_key = (
        f"no API key: set {API_KEY_ENV} (a server that takes no key, such as a local "
        "Ollama, accepts any value) or use the offline model"
    )

    def _key_from_env(self) -> str | None:
        return key_from_env()

    def _resolve_base_url(self, base_url: str | None) -> str:
        return (base_url or base_url_from_env() or DEFAULT_BASE_URL).rstrip("/")

    def _target_url(self) -> str:
        return self._base_url or DEFAULT_BASE_URL  # never empty: resolved on construction

    def _make_sdk(self, timeout: httpx2.Timeout, http: httpx2.Client) -> Any:
        return openai.OpenAI(api_key=self._api_key, base_url=self._base_url, timeout=timeout,
                             max_retries=0, http_client=http)  # fmt: skip

    def _path_for(self, request_bytes: bytes) -> str:
        return RESPONSES_PATH if is_responses_request(request_bytes) else CHAT_PATH

    def _check_model(self, request_bytes: bytes) -> None:
        check_callable(OpenAIProvider().model_of(request_bytes), action="send the request")

    def _parse(self, raw: RawResponse, attempts: tuple[Attempt, ...]) -> ModelResponse:
        return OpenAIProvider().parse(raw, attempts)

    def _advice(self, error_type: str, status: int, tries: int) -> str:
        after = attempts_phrase(tries)
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
