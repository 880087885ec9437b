"""The OpenAI provider: Chat Completions (and Responses API) requests and replies, sent, read
and priced.

Owns: ``OpenAIProvider``: the OpenAI Chat Completions format as the runtime knows it -- its
client (``runtime.providers.openai.client.OpenAIClient`` on the official ``openai`` SDK, loaded
on first use; any OpenAI-compatible server through a base URL), its settings (``[openai]`` in
llm386.toml, ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` in the environment), how a reply (whole,
or streamed) reads as content blocks, how its usage splits into ``Usage``, its prices, and that
it caches prompt prefixes without breakpoints.

Invariants:
- Its client re-sends stored request bytes unchanged (``sends_stored_requests``), so a captured
  OpenAI turn replays byte for byte to its own provider. The packer writes Messages requests
  (``takes_packed_requests`` is False): a re-page for an OpenAI model is written as a Chat
  Completions request by ``repage_body`` (``runtime.providers.openai.render``), or as a
  Responses API request when the turn was one, keeping the recorded request's settings.
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
from runtime.providers.base import PackedTurn, Provider
from runtime.providers.openai.render import chat_request, recorded_request, responses_request
from runtime.providers.response import (
    MALFORMED,
    Attempt,
    ContentBlock,
    ModelResponse,
    RawResponse,
)
from runtime.providers.streams import (
    assemble_chat_completion,
    assemble_response,
    is_event_stream,
    stream_payloads,
)
from runtime.providers.usage import Usage

if TYPE_CHECKING:
    from runtime.config import Config
    from runtime.profiles.catalog import ModelProfile
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


def is_responses_request(request_bytes: bytes) -> bool:
    """Whether stored request bytes are a Responses API request: ``input``, no ``messages``."""
    try:
        data = limits.loads(request_bytes, "the request")
    except Llm386Error:
        return False
    return isinstance(data, dict) and "input" in data and "messages" not in data


class OpenAIProvider(Provider):
    """The OpenAI Chat Completions API (``POST /v1/chat/completions``)."""

    name = "openai"
    label = "the OpenAI API"
    request_format = "openai-chat-completions"
    takes_packed_requests = False  # the packer writes Messages requests; repage_body maps them
    caches_automatically = True
    settings_prefix = "OPENAI"
    credentials_env = API_KEY_ENV
    credentials_name = "OpenAI API key"

    def repage_body(self, turn: PackedTurn, profile: ModelProfile) -> bytes:
        """Return the Chat Completions (or, for a Responses API turn, the Responses) request of
        a re-page (see ``openai.render``)."""
        original = recorded_request(turn.recorded)
        if original.responses:
            return self.render(responses_request(turn.request, recorded=original.settings))
        request = chat_request(turn.request, system_role=profile.supports_system_role,
                               recorded=original.settings)  # fmt: skip
        return self.render(request)

    def client(self, **settings: Any) -> OpenAIClient:
        """Return an OpenAIClient(**settings); see its docstring for the settings."""
        from runtime.providers.openai.client import OpenAIClient

        return OpenAIClient(**settings)

    def load_client(self) -> None:
        import runtime.providers.openai.client  # noqa: F401 - the import is the point

    def client_options(self, config: Config, environ: Mapping[str, str]) -> dict[str, Any]:
        """Return the client's options from ``[openai]``; ``OPENAI_BASE_URL`` wins over it."""
        settings = config.openai
        return settings.client_options(environ.get(BASE_URL_ENV) or settings.base_url)

    def available(self) -> bool:
        return key_from_env() is not None

    def parse(self, raw: RawResponse, attempts: tuple[Attempt, ...] = ()) -> ModelResponse:
        """Parse a chat completion (or its stream): the first choice's message, finish reason
        and usage."""
        try:
            data = self._completion(raw)
            if data.get("object") == "response":
                return self._parse_response(raw, data, attempts)
            message = data["choices"][0]["message"]
            usage = self.usage(data)
        except (Llm386Error, LookupError, TypeError, AttributeError) as exc:
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

    def _parse_response(
        self, raw: RawResponse, data: Mapping[str, Any], attempts: tuple[Attempt, ...]
    ) -> ModelResponse:
        """Parse a Responses API ``response``: its output items, status and usage."""
        details = data.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        return ModelResponse(
            body=raw.body, data=dict(data), id=str(data.get("id", "")),
            model=str(data.get("model", "")), stop_reason=reason or data.get("status"),
            content=tuple(ContentBlock.from_json(block) for block in self.content(data)),
            usage=self.usage(data), latency_ms=raw.latency_ms, attempts=attempts,
            sent_sha256=raw.sent_sha256,
        )  # fmt: skip

    def usage(self, message: Mapping[str, Any]) -> Usage:
        """Read a completion's ``usage``: cached prompt tokens are split out of the input."""
        usage = message.get("usage")
        if not isinstance(usage, Mapping):
            return Usage(0, 0)
        if "input_tokens" in usage:  # a Responses response: input counts cached and written
            inner = usage.get("input_tokens_details")
            inner = inner if isinstance(inner, Mapping) else {}
            read, written = (
                _count(inner.get("cached_tokens")),
                _count(inner.get("cache_write_tokens")),
            )
            fresh = max(0, _count(usage.get("input_tokens")) - read - written)
            return Usage(fresh, _count(usage.get("output_tokens")), read, written)
        details = usage.get("prompt_tokens_details")
        cached = _count(details.get("cached_tokens")) if isinstance(details, Mapping) else 0
        prompt = _count(usage.get("prompt_tokens"))
        return Usage(prompt - cached, _count(usage.get("completion_tokens")), cached, 0)

    def content(self, message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """Return an assistant message's text and tool calls as Messages blocks (of a whole
        completion, as the proxy and replays record it: its first choice's message)."""
        if message.get("object") == "response":
            return _response_content(message.get("output"))
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
            out.append(_tool_use(call.get("id"), fn.get("name"), fn.get("arguments")))
        return out

    def _completion(self, raw: RawResponse) -> Any:
        """Return the completion object: the body's JSON, or the one its chunks assemble."""
        if not is_event_stream(raw.header("content-type"), raw.body):
            return limits.loads(raw.body, "the response body", limits.RESPONSE_LIMITS)
        payloads = stream_payloads(raw.body)
        responses = any(str(name).startswith("response.") for name, _ in payloads)
        completion = (assemble_response if responses else assemble_chat_completion)(payloads)
        if completion is None:
            raise ModelCallFailed("the stream held no chunk", error_type=MALFORMED)
        return completion


def _tool_use(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    try:
        parsed = limits.loads(arguments if arguments is not None else "{}", "arguments")
    except (TypeError, Llm386Error):
        parsed = arguments  # not JSON: kept as the model wrote it
    return {"type": "tool_use", "id": str(call_id or ""), "name": name, "input": parsed}


def _response_content(output: Any) -> list[Mapping[str, Any]]:
    """Return a Responses ``output``'s message text and function calls as Messages blocks."""
    out: list[Mapping[str, Any]] = []
    for item in output if isinstance(output, list) else ():
        item = item if isinstance(item, Mapping) else {}
        if item.get("type") == "function_call":
            out.append(_tool_use(item.get("call_id"), item.get("name"), item.get("arguments")))
        for part in item.get("content") or () if item.get("type") == "message" else ():
            if isinstance(part, Mapping) and part.get("type") == "output_text" and part.get("text"):
                out.append({"type": "text", "text": part["text"]})
    return out


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return 0
    return value
