"""Reading what came back through the proxy: SSE streams assembled, usage and errors extracted.

Owns: ``read_reply`` and ``Reply`` (a response body read as the
record needs it: message, usage, stop reason, error).

Invariants:
- Reading never raises on what an upstream sends: bytes that are not JSON, or a stream cut
  short, give a Reply with what could be read (the raw bytes are stored regardless). Nor does
  it give a Reply the record cannot hold: a message with no canonical JSON reads as none, a
  stop reason that is not a string as None, a count no 64-bit integer holds as no usage.
- Usage follows ``TokenUsage``: the three input counts add up. OpenAI's ``prompt_tokens``
  includes its ``cached_tokens``, so it is split, as the importer does; so does the Responses
  API's ``input_tokens`` (its cached and cache-write tokens).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from runtime.blocks import canonical_json
from runtime.errors import InvalidInput
from runtime.limits import check_fields
from runtime.providers.streams import (
    Payload,
    assemble_chat_completion,
    assemble_message,
    assemble_response,
    stream_error,
    stream_payloads,
)
from runtime.proxy.apis import Wire
from runtime.tracing.records import TokenUsage


@dataclass(frozen=True)
class Reply:
    """A response body as the record needs it."""

    message: Mapping[str, Any] | None  # the message (assembled from a stream), or error JSON
    usage: TokenUsage | None = None
    stop_reason: str | None = None
    error_type: str | None = None
    error_message: str | None = None


def _json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None


def read_reply(wire: Wire, body: bytes, *, streamed: bool) -> Reply:
    """Return what ``body`` says: the message (assembled if streamed), usage, stop, error.

    A body of a shape this cannot read (a count that is not a number, ``choices`` that is not a
    list, nesting deeper than Python parses), or a message the record could not store as
    canonical JSON (a lone surrogate escape, ``1e400``), reads as no message at all."""
    try:
        reply = _read_reply(wire, body, streamed)
        if reply.message is not None:
            canonical_json(reply.message)  # as the record stores it
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError):
        return Reply(None)
    if reply.usage is not None:
        try:
            check_fields(reply.usage, "usage")
        except InvalidInput:  # a count no 64-bit integer holds: the usage is not known
            return replace(reply, usage=None)
    return reply


def _read_reply(wire: Wire, body: bytes, streamed: bool) -> Reply:
    if streamed:
        return _stream(wire, stream_payloads(body))
    data = _json(body)
    if not isinstance(data, dict):
        return Reply(None)
    return _read_message(wire, data)


def _read_message(wire: Wire, data: dict[str, Any]) -> Reply:
    error = data.get("error")
    if isinstance(error, dict):  # an error body, or a Responses response that failed
        usage = _responses_usage(data.get("usage")) if wire is Wire.RESPONSES else None
        return Reply(data, usage, error_type=str(error.get("type") or error.get("code") or "error"),
                     error_message=str(error.get("message", "")))  # fmt: skip
    return _WIRES[wire].reply(data)


def anthropic_usage(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, Mapping):
        return None
    return TokenUsage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
        cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
    )


def openai_usage(usage: Any) -> TokenUsage | None:
    if not isinstance(usage, Mapping):
        return None
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
    return TokenUsage(
        input_tokens=max(0, int(usage.get("prompt_tokens") or 0) - cached),
        output_tokens=int(usage.get("completion_tokens") or 0),
        cache_read_input_tokens=cached,
    )


def _responses_usage(usage: Any) -> TokenUsage | None:
    """Responses usage: ``input_tokens`` includes the cached and cache-write tokens; split them."""
    if not isinstance(usage, Mapping):
        return None
    details = usage.get("input_tokens_details") or {}
    details = details if isinstance(details, Mapping) else {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    return TokenUsage(
        input_tokens=max(0, int(usage.get("input_tokens") or 0) - cached - written),
        output_tokens=int(usage.get("output_tokens") or 0),
        cache_read_input_tokens=cached,
        cache_creation_input_tokens=written,
    )


def _stream(wire: Wire, payloads: list[Payload]) -> Reply:
    """Read a stream: its assembled message, or the error event it ended with."""
    reader = _WIRES[wire]
    failed = stream_error(payloads)
    if failed is not None:
        data = payloads[failed][1]
        error = data.get("error") if isinstance(data.get("error"), dict) else data
        return Reply(reader.assemble(payloads[:failed]) or data,
                     error_type=str(error.get("type") or error.get("code") or "error"),
                     error_message=str(error.get("message", "")))  # fmt: skip
    message = reader.assemble(payloads)
    return Reply(None) if message is None else _read_message(wire, message)


def _messages_reply(data: dict[str, Any]) -> Reply:
    return Reply(data, anthropic_usage(data.get("usage")), _text(data.get("stop_reason")))


def _chat_reply(data: dict[str, Any]) -> Reply:
    choices = data.get("choices") or [{}]
    stop = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
    return Reply(data, openai_usage(data.get("usage")), _text(stop))


def _responses_reply(data: dict[str, Any]) -> Reply:
    details = data.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return Reply(data, _responses_usage(data.get("usage")), _text(reason or data.get("status")))


def _text(value: Any) -> str | None:
    """A stop reason as the record keeps it: a string, or None for anything else."""
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class _Wire:
    """How one wire format's answer reads: its stream assembled, its message as a Reply."""

    assemble: Callable[[Sequence[Payload]], dict[str, Any] | None]
    reply: Callable[[dict[str, Any]], Reply]


_WIRES = {
    Wire.MESSAGES: _Wire(assemble_message, _messages_reply),
    Wire.CHAT: _Wire(assemble_chat_completion, _chat_reply),
    Wire.RESPONSES: _Wire(assemble_response, _responses_reply),
}
