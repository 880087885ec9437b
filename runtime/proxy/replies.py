"""Reading what came back through the proxy: SSE streams assembled, usage and errors extracted.

Owns: ``sse_events`` (raw SSE bytes -> (event, data) pairs), ``assemble`` (a stream -> the one
message a non-streaming call would have returned) and ``Reply`` (a response body read as the
record needs it: message, usage, stop reason, error).

Invariants:
- Reading never raises on what an upstream sends: bytes that are not JSON, or a stream cut
  short, give a Reply with what could be read (the raw bytes are stored regardless).
- Usage follows ``TokenUsage``: the three input counts add up. OpenAI's ``prompt_tokens``
  includes its ``cached_tokens``, so it is split, as the importer does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.proxy.apis import Family
from runtime.tracing.records import TokenUsage


@dataclass(frozen=True)
class Reply:
    """A response body as the record needs it."""

    message: Mapping[str, Any] | None  # the message (assembled from a stream), or error JSON
    usage: TokenUsage | None = None
    stop_reason: str | None = None
    error_type: str | None = None
    error_message: str | None = None


def sse_events(raw: bytes) -> Iterator[tuple[str, str]]:
    """Yield (event name, data) for each complete event of an SSE body."""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if data:
            yield name, "\n".join(data)


def _json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None


def read_reply(family: Family, body: bytes, *, streamed: bool) -> Reply:
    """Return what ``body`` says: the message (assembled if streamed), usage, stop, error."""
    if streamed:
        events = [(name, _json(data)) for name, data in sse_events(body) if data != "[DONE]"]
        if family is Family.ANTHROPIC:
            return _anthropic_stream(events)
        return _openai_stream(events)
    data = _json(body)
    if not isinstance(data, dict):
        return Reply(None)
    return _read_message(family, data)


def _read_message(family: Family, data: dict[str, Any]) -> Reply:
    error = data.get("error")
    if isinstance(error, dict):
        return Reply(data, error_type=str(error.get("type") or error.get("code") or "error"),
                     error_message=str(error.get("message", "")))  # fmt: skip
    if family is Family.ANTHROPIC:
        return Reply(data, anthropic_usage(data.get("usage")), data.get("stop_reason"))
    choices = data.get("choices") or [{}]
    stop = choices[0].get("finish_reason") if isinstance(choices[0], dict) else None
    return Reply(data, openai_usage(data.get("usage")), stop)


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


def _anthropic_stream(events: list[tuple[str, Any]]) -> Reply:
    message: dict[str, Any] | None = None
    partial: dict[int, str] = {}
    for name, data in events:
        if not isinstance(data, dict):
            continue
        kind = data.get("type", name)
        if kind == "error":
            error = data.get("error") or {}
            return Reply(message or data, error_type=str(error.get("type", "error")),
                         error_message=str(error.get("message", "")))  # fmt: skip
        if kind == "message_start" and isinstance(data.get("message"), dict):
            message = dict(data["message"], content=list(data["message"].get("content") or []))
        elif message is not None:
            _apply_anthropic(message, kind, data, partial)
    if message is None:
        return Reply(None)
    return Reply(message, anthropic_usage(message.get("usage")), message.get("stop_reason"))


def _apply_anthropic(
    message: dict[str, Any], kind: str, data: dict[str, Any], partial: dict[int, str]
) -> None:
    content: list[Any] = message["content"]
    index = data.get("index")
    if kind == "content_block_start" and isinstance(data.get("content_block"), dict):
        content.append(dict(data["content_block"]))
    elif kind == "content_block_delta" and isinstance(index, int) and index < len(content):
        delta, block = data.get("delta") or {}, content[index]
        for key, field_name in (("text", "text"), ("thinking", "thinking"),
                                ("signature", "signature")):  # fmt: skip
            if key in delta:
                block[field_name] = block.get(field_name, "") + str(delta[key])
        if "partial_json" in delta:
            partial[index] = partial.get(index, "") + str(delta["partial_json"])
    elif kind == "content_block_stop" and isinstance(index, int) and index in partial:
        parsed = _json(partial.pop(index) or "{}")
        if index < len(content):
            content[index]["input"] = parsed if parsed is not None else {}
    elif kind == "message_delta":
        message.update(data.get("delta") or {})
        usage = data.get("usage")
        if isinstance(usage, dict):
            message["usage"] = {**(message.get("usage") or {}),
                                **{k: v for k, v in usage.items() if v is not None}}  # fmt: skip


def _openai_stream(events: list[tuple[str, Any]]) -> Reply:
    head: dict[str, Any] | None = None
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for _, data in events:
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("error"), dict):
            error = data["error"]
            return Reply(data, error_type=str(error.get("type") or "error"),
                         error_message=str(error.get("message", "")))  # fmt: skip
        if head is None:
            head = {k: data.get(k) for k in ("id", "created", "model", "system_fingerprint")}
        usage = data.get("usage") or usage
        for choice in data.get("choices") or ():
            _apply_openai(choices.setdefault(int(choice.get("index", 0)), {}), choice)
    if head is None:
        return Reply(None)
    ordered = [_openai_choice(i, choices[i]) for i in sorted(choices)]
    message = {**head, "object": "chat.completion", "choices": ordered, "usage": usage}
    stop = ordered[0]["finish_reason"] if ordered else None
    return Reply(message, openai_usage(usage), stop)


def _apply_openai(state: dict[str, Any], choice: dict[str, Any]) -> None:
    delta = choice.get("delta") or {}
    if delta.get("role"):
        state["role"] = delta["role"]
    if delta.get("content"):
        state["content"] = state.get("content", "") + str(delta["content"])
    if delta.get("refusal"):
        state["refusal"] = state.get("refusal", "") + str(delta["refusal"])
    calls = state.setdefault("tool_calls", {})
    for call in delta.get("tool_calls") or ():
        slot = calls.setdefault(
            int(call.get("index", 0)), {"function": {"name": "", "arguments": ""}}
        )
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        fn = call.get("function") or {}
        slot["function"]["name"] += str(fn.get("name") or "")
        slot["function"]["arguments"] += str(fn.get("arguments") or "")
    if choice.get("finish_reason"):
        state["finish_reason"] = choice["finish_reason"]


def _openai_choice(index: int, state: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": state.get("role", "assistant"),
                               "content": state.get("content")}  # fmt: skip
    if state.get("refusal"):
        message["refusal"] = state["refusal"]
    calls = state.get("tool_calls") or {}
    if calls:
        message["tool_calls"] = [
            {"id": c.get("id"), "type": c.get("type", "function"), "function": c["function"]}
            for _, c in sorted(calls.items())
        ]
    return {"index": index, "message": message, "finish_reason": state.get("finish_reason")}
