"""The OpenAI provider: Chat Completions requests and replies, sent, read and priced.

Owns: ``OpenAIProvider``: the OpenAI Chat Completions format as the runtime knows it -- its
client (``runtime.providers.openai.client.OpenAIClient`` on the official ``openai`` SDK, loaded
on first use; any OpenAI-compatible server through a base URL), its settings (``[openai]`` in
llm386.toml, ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` in the environment), how a reply (whole,
or streamed) reads as content blocks, how its usage splits into ``Usage``, its prices, and that
it caches prompt prefixes without breakpoints.

Invariants:
- Its client re-sends stored request bytes unchanged (``sends_stored_requests``), so a captured
  OpenAI turn replays byte for byte to its own provider. The packer writes Messages requests,
  not Chat Completions (``takes_packed_requests`` is False): a re-page of an OpenAI turn is
  for an Anthropic model.
- Importing this module does not import the SDK.
- ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens``; ``usage`` subtracts them so
  the counts add up as ``Usage`` says. OpenAI charges no cache write, so that count is 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runtime import limits
from runtime.errors import Llm386Error, ModelCallFailed
from runtime.providers.base import Provider
from runtime.providers.response import (
    MALFORMED,
    Attempt,
    ContentBlock,
    ModelResponse,
    RawResponse,
)
from runtime.providers.streams import assemble_chat_completion, is_event_stream, stream_payloads
from runtime.providers.usage import Usage

if TYPE_CHECKING:
    from runtime.config import Config
    from runtime.providers.openai.client import OpenAIClient

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def key_from_env() -> str | None:
    """Return ``OPENAI_API_KEY`` (None when unset or empty); never log or show it."""
    return os.environ.get(API_KEY_ENV) or None


def base_url_from_env() -> str | None:
    """Return ``OPENAI_BASE_URL``, which the SDK also reads (None when unset or empty)."""
    return os.environ.get(BASE_URL_ENV) or None


class OpenAIProvider(Provider):
    """The OpenAI Chat Completions API (``POST /v1/chat/completions``)."""

    name = "openai"
    label = "the OpenAI API"
    request_format = "openai-chat-completions"
    takes_packed_requests = False  # the packer writes Messages requests, not Chat Completions
    caches_automatically = True
    settings_prefix = "OPENAI"
    credentials_env = API_KEY_ENV
    credentials_name = "OpenAI API key"

    def client(self, **settings: Any) -> OpenAIClient:
        """Return an OpenAIClient(**settings); see its docstring for the settings."""
        from runtime.providers.openai.client import OpenAIClient

        return OpenAIClient(**settings)

    def load_client(self) -> None:
        import runtime.providers.openai.client  # noqa: F401 - the import is the point

    def client_options(self, config: Config, environ: Mapping[str, str]) -> dict[str, Any]:
        """Return the client's options from ``[openai]``; ``OPENAI_BASE_URL`` wins over it."""
        settings = config.openai
        return {"base_url": environ.get(BASE_URL_ENV) or settings.base_url,
                "timeout": settings.timeout_seconds, "max_retries": settings.max_retries}  # fmt: skip

    def available(self) -> bool:
        return key_from_env() is not None

    def parse(self, raw: RawResponse, attempts: tuple[Attempt, ...] = ()) -> ModelResponse:
        """Parse a chat completion (or its stream): the first choice's message, finish reason
        and usage."""
        try:
            data = self._completion(raw)
            message = data["choices"][0]["message"]
            usage = self.usage(data)
        except (Llm386Error, LookupError, TypeError) as exc:
            raise ModelCallFailed(
                f"the API answered with a malformed chat completion ({type(exc).__name__}: "
                f"{exc}); first bytes {raw.body[:60]!r}",
                error_type=MALFORMED,
                status=raw.status,
            ) from None
        return ModelResponse(
            body=raw.body, data=data, id=str(data.get("id", "")), model=str(data.get("model", "")),
            stop_reason=data["choices"][0].get("finish_reason"),
            content=tuple(ContentBlock.from_json(block) for block in self.content(message)),
            usage=usage, latency_ms=raw.latency_ms, attempts=attempts,
            sent_sha256=raw.sent_sha256,
        )  # fmt: skip

    def usage(self, message: Mapping[str, Any]) -> Usage:
        """Read a completion's ``usage``: cached prompt tokens are split out of the input."""
        usage = message.get("usage")
        if not isinstance(usage, Mapping):
            return Usage(0, 0)
        details = usage.get("prompt_tokens_details")
        cached = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
        prompt = _count(usage.get("prompt_tokens"))
        return Usage(prompt - cached, _count(usage.get("completion_tokens")), cached, 0)

    def content(self, message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Return an assistant message's text and tool calls as Messages blocks (of a whole
        completion, as the proxy and replays record it: its first choice's message)."""
        choices = message.get("choices")
        if isinstance(choices, list):
            first = choices[0] if choices and isinstance(choices[0], Mapping) else {}
            inner = first.get("message")
            message = inner if isinstance(inner, Mapping) else {}
        out: list[Mapping[str, Any]] = []
        if message.get("content"):
            out.append({"type": "text", "text": message["content"]})
        for call in message.get("tool_calls") or ():
            call = call if isinstance(call, Mapping) else {}
            fn = call.get("function", {})
            try:
                arguments = limits.loads(fn.get("arguments", "{}"), "arguments")
            except (TypeError, Llm386Error):
                arguments = fn.get("arguments")
            out.append({"type": "tool_use", "id": str(call.get("id", "")),
                        "name": fn.get("name"), "input": arguments})  # fmt: skip
        return out

    def _completion(self, raw: RawResponse) -> Any:
        """Return the completion object: the body's JSON, or the one its chunks assemble."""
        if not is_event_stream(raw.header("content-type"), raw.body):
            return limits.loads(raw.body, "the response body", limits.RESPONSE_LIMITS)
        completion = assemble_chat_completion(stream_payloads(raw.body))
        if completion is None:
            raise ModelCallFailed("the stream held no chunk", error_type=MALFORMED)
        return completion


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return 0
    return value
