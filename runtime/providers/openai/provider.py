"""The OpenAI provider: Chat Completions requests and replies, read and priced.

Owns: ``OpenAIProvider``: what the runtime knows of the OpenAI Chat Completions format today --
how a reply's message reads as content blocks (imported transcripts store OpenAI assistant
messages), how its usage splits into ``Usage``, its prices, and that it caches prompt prefixes
without breakpoints.

Invariants:
- It has no client yet: ``client`` raises UnknownModel, and ``sends_stored_requests`` is False,
  so an imported OpenAI request is badged "rebuilt" and refused by replay (a re-page turns it
  into an Anthropic request). The client on the official ``openai`` SDK, with a base URL for
  OpenAI-compatible servers, belongs in this package (issue 12).
- ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens``; ``usage`` subtracts them so
  the counts add up as ``Usage`` says. OpenAI charges no cache write, so that count is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime import limits
from runtime.errors import Llm386Error, ModelCallFailed, UnknownModel
from runtime.providers.base import ModelClient, Provider
from runtime.providers.response import (
    MALFORMED,
    Attempt,
    ContentBlock,
    ModelResponse,
    RawResponse,
)
from runtime.providers.usage import Usage


class OpenAIProvider(Provider):
    """The OpenAI Chat Completions API (``POST /v1/chat/completions``)."""

    name = "openai"
    label = "the OpenAI API"
    sends_stored_requests = False  # no client yet (issue 12)
    takes_packed_requests = False  # the packer writes Messages requests, not Chat Completions
    caches_automatically = True
    settings_prefix = "OPENAI"

    def client(self, **settings: Any) -> ModelClient:
        raise UnknownModel(
            "llm386 has no OpenAI client yet, so it cannot call OpenAI models: pick a claude-* "
            "profile, or use the offline model"
        )

    def available(self) -> bool:
        return False  # no client yet, whatever the environment holds

    def parse(self, raw: RawResponse, attempts: tuple[Attempt, ...] = ()) -> ModelResponse:
        """Parse a chat completion: its first choice's message, finish reason and usage."""
        try:
            data = limits.loads(raw.body, "the response body", limits.RESPONSE_LIMITS)
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
        """Return an assistant message's text and tool calls as Messages blocks."""
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


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return 0
    return value
