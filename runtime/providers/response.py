"""What a model call returns: the raw response bytes, their parsed message, usage and attempts.

Owns: ``Attempt``, ``ContentBlock``, ``ToolUse``, ``ModelResponse``, ``RawResponse`` (one HTTP
answer as it arrived), the Messages API body and usage readers (``parse_message``,
``messages_usage``: the format the Anthropic API and the offline model answer in), and the checks
every client runs on request bytes before sending them (``check_request``).

Invariants:
- ``ModelResponse.body`` is the response body byte for byte as it arrived; everything else on
  the response is derived from it (or, for attempts and timings, measured around it).
- ``ModelResponse.sent_sha256`` is the SHA-256 of the bytes the HTTP layer sent (for the offline
  model, of the bytes it was given); clients make sure it equals the request's hash.
- Usage counts ADD UP (``runtime.providers.usage``).
- Nothing here holds or prints an API key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime import limits
from runtime.errors import InvalidInput, ModelCallFailed, ReplayMismatch
from runtime.limits import InputRejected
from runtime.providers.streams import assemble_message, is_event_stream, stream_payloads
from runtime.providers.usage import Usage

MALFORMED = "malformed-response"


_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


def messages_usage(value: object) -> Usage:
    """Read a Messages API ``usage`` object; absent cache counts (and JSON null) count as 0."""
    if not isinstance(value, Mapping):
        raise _malformed(f"usage is {type(value).__name__}, not an object")
    return Usage(*(_count(value, name) for name in _USAGE_FIELDS))


def _count(usage: Mapping[str, object], name: str) -> int:
    value = usage.get(name) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _malformed(f"usage.{name} is {value!r}, not a count")
    return value


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt of a call: how it ended and how long we waited before the next one.

    ``status`` is the HTTP status (None when no response arrived); ``error_type`` is None on
    success, else the API's error type (``rate_limit_error``...) or one of ``timeout``,
    ``connection``, ``malformed-response``, ``byte-mismatch``.
    """

    number: int
    status: int | None
    error_type: str | None
    message: str
    latency_ms: float
    wait_ms: float = 0.0


@dataclass(frozen=True)
class ToolUse:
    """A tool call the model asked for."""

    id: str
    name: str
    input: Mapping[str, Any]


@dataclass(frozen=True)
class ContentBlock:
    """One block of the reply's ``content``; fields a block type does not have stay empty."""

    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    input: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: object) -> ContentBlock:
        if not isinstance(value, Mapping) or not isinstance(value.get("type"), str):
            raise _malformed(f"a content block is {value!r:.80}, not an object with a type")
        tool_input = value.get("input", {})
        return cls(
            type=value["type"],
            text=_str(value, "text"),
            id=_str(value, "id"),
            name=_str(value, "name"),
            input=tool_input if isinstance(tool_input, Mapping) else {},
        )


def _str(block: Mapping[str, object], name: str) -> str:
    value = block.get(name, "")
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class ModelResponse:
    """A model's reply: raw body bytes plus typed views of the parsed message."""

    body: bytes = field(repr=False)
    data: Mapping[str, Any] = field(repr=False, compare=False)
    id: str
    model: str
    stop_reason: str | None
    content: tuple[ContentBlock, ...] = field(repr=False)
    usage: Usage
    latency_ms: float
    attempts: tuple[Attempt, ...]
    sent_sha256: str

    @classmethod
    def from_body(
        cls,
        body: bytes,
        *,
        latency_ms: float,
        attempts: tuple[Attempt, ...],
        sent_sha256: str,
        message: Mapping[str, Any] | None = None,
    ) -> ModelResponse:
        """Parse a Messages API response body (or take ``message``, already read from it), or
        raise ModelCallFailed (malformed-response)."""
        data = parse_message(body) if message is None else checked_message(message)
        return cls(
            body=body,
            data=data,
            id=str(data.get("id", "")),
            model=str(data.get("model", "")),
            stop_reason=data.get("stop_reason"),
            content=tuple(ContentBlock.from_json(block) for block in data["content"]),
            usage=messages_usage(data.get("usage")),
            latency_ms=latency_ms,
            attempts=attempts,
            sent_sha256=sent_sha256,
        )

    @property
    def text(self) -> str:
        """The reply's text blocks joined with blank lines (empty if it only calls tools)."""
        return "\n\n".join(block.text for block in self.content if block.type == "text")

    @property
    def tool_uses(self) -> tuple[ToolUse, ...]:
        return tuple(
            ToolUse(block.id, block.name, block.input)
            for block in self.content
            if block.type == "tool_use"
        )

    @property
    def body_sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class RawResponse:
    """One HTTP answer as it arrived: status, headers and body bytes, and the hash of what was
    sent (what ``ModelClient.send_raw`` returns, whatever the status)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = field(repr=False)
    sent_sha256: str
    latency_ms: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """Return the first header called ``name`` (any case), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


def messages_response(raw: RawResponse, attempts: tuple[Attempt, ...]) -> ModelResponse:
    """Parse a Messages API answer (the Anthropic API's, or the offline model's), whole or
    streamed (a replayed ``"stream": true`` request: its events assembled, its body kept raw)."""
    message = None
    if is_event_stream(raw.header("content-type"), raw.body):
        message = assemble_message(stream_payloads(raw.body))
        if message is None:
            raise _malformed("the event stream held no message_start event")
    return ModelResponse.from_body(
        raw.body, latency_ms=raw.latency_ms, attempts=attempts, sent_sha256=raw.sent_sha256,
        message=message,
    )  # fmt: skip


def messages_content(message: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Return a Messages reply's content blocks (none if it has no content list)."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, Mapping)]


def parse_message(body: bytes) -> dict[str, Any]:
    """Return the message object in ``body``, or raise ModelCallFailed (malformed-response)."""
    try:
        data = limits.loads(body, "the response body", limits.RESPONSE_LIMITS)
    except InputRejected as exc:
        raise _malformed(f"{exc.where}: {exc.reason}; first bytes {body[:60]!r}") from None
    if not isinstance(data, dict) or data.get("type") != "message":
        raise _malformed(f"the body is not a message object; first bytes {body[:60]!r}")
    return checked_message(data)


def checked_message(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``data`` if it is a message with a content list, else raise malformed-response."""
    if data.get("type") != "message" or not isinstance(data.get("content"), list):
        raise _malformed("the message is not a message object with a content list")
    return dict(data)


def _malformed(detail: str) -> ModelCallFailed:
    return ModelCallFailed(
        f"the API answered with a malformed response: {detail}; retry, and if it persists "
        "check ANTHROPIC_BASE_URL points at the Anthropic Messages API",
        error_type=MALFORMED,
        status=200,
    )


def check_request(request_bytes: bytes, expected_sha256: str | None) -> str:
    """Return the SHA-256 of ``request_bytes``; raise ReplayMismatch if it is not the expected."""
    actual = hashlib.sha256(request_bytes).hexdigest()
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise ReplayMismatch(
            f"the request bytes hash to {actual}, not the recorded {expected_sha256}; nothing "
            "was sent: the stored request is damaged, run `llm386 verify` on the store"
        )
    return actual


def parse_request(request_bytes: bytes) -> dict[str, Any]:
    """Return the Messages request object in ``request_bytes`` or raise InvalidInput."""
    try:
        request = limits.loads(request_bytes, "the request bytes")
    except InputRejected as exc:
        raise InvalidInput(
            f"{exc.where}: {exc.reason}: these bytes cannot be read as a request, so they cannot "
            "be sent, replayed or edited; `llm386 trace CALL_ID` shows the recorded one"
        ) from None
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        raise InvalidInput(
            "the request is not a Messages API object with a messages list, so it cannot be "
            "sent, replayed or edited; `llm386 trace CALL_ID` shows the recorded one"
        )
    return request
