"""Streamed answers: server-sent events read, and assembled into the message a non-streaming
call would have returned, for the Messages API and for Chat Completions.

Owns: ``sse_events`` (raw SSE bytes -> (event, data) pairs), ``stream_payloads`` (the events'
JSON), ``is_event_stream``, ``stream_error`` and the three assemblers, ``assemble_message``
(Anthropic Messages events), ``assemble_chat_completion`` (Chat Completions chunks) and
``assemble_response`` (OpenAI Responses events). The
capture proxy reads what it forwarded with them, and the providers parse a replayed stream
with them, so a captured stream and its replay read the same way.

Invariants:
- Reading never raises on what an upstream sends: bytes that are not JSON, or a stream cut
  short, give what could be read (None when no message began).
- The assembled message has the shape of the non-streaming reply: Anthropic's ``message``
  object with its content blocks (tool inputs parsed from their JSON deltas), or a
  ``chat.completion`` with one choice per index and the usage chunk's usage, or a Responses
  ``response`` object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

Payload = tuple[str, Any]  # (event name, parsed JSON data or None)


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


def stream_payloads(raw: bytes) -> list[Payload]:
    """Return each event's name and parsed data, without OpenAI's closing ``[DONE]``."""
    return [(name, _json(data)) for name, data in sse_events(raw) if data != "[DONE]"]


def is_event_stream(content_type: str | None, body: bytes) -> bool:
    """Whether an answer is an SSE stream: by its content type, else by how its body starts."""
    if content_type:
        return content_type.split(";", 1)[0].strip().lower() == "text/event-stream"
    return body.lstrip()[:6] in (b"event:", b"data: ") or body.lstrip()[:5] == b"data:"


def stream_error(payloads: Sequence[Payload]) -> int | None:
    """Return the index of the first error event (either API's shape), or None."""
    for index, (name, data) in enumerate(payloads):
        if isinstance(data, dict) and (
            data.get("type", name) == "error" or isinstance(data.get("error"), dict)
        ):
            return index
    return None


def _json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):  # too deep: not read, as not JSON
        return None


# -- Anthropic Messages --------------------------------------------------------------------------


def assemble_message(payloads: Sequence[Payload]) -> dict[str, Any] | None:
    """Return the Messages API ``message`` the events build, or None if none began."""
    message: dict[str, Any] | None = None
    partial: dict[int, str] = {}
    for name, data in payloads:
        if not isinstance(data, dict):
            continue
        kind = data.get("type", name)
        if kind == "message_start" and isinstance(data.get("message"), dict):
            message = dict(data["message"], content=list(data["message"].get("content") or []))
        elif message is not None:
            _apply_message_event(message, kind, data, partial)
    return message


def _apply_message_event(
    message: dict[str, Any], kind: str, data: dict[str, Any], partial: dict[int, str]
) -> None:
    content: list[Any] = message["content"]
    index = data.get("index")
    if kind == "content_block_start" and isinstance(data.get("content_block"), dict):
        content.append(dict(data["content_block"]))
    elif kind == "content_block_delta" and isinstance(index, int) and index < len(content):
        delta, block = data.get("delta") or {}, content[index]
        for key in ("text", "thinking", "signature"):
            if key in delta:
                block[key] = block.get(key, "") + str(delta[key])
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


# -- OpenAI Chat Completions ---------------------------------------------------------------------


def assemble_chat_completion(payloads: Sequence[Payload]) -> dict[str, Any] | None:
    """Return the ``chat.completion`` the chunks build, or None if no chunk arrived."""
    head: dict[str, Any] | None = None
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for _, data in payloads:
        if not isinstance(data, dict):
            continue
        if head is None:
            head = {k: data.get(k) for k in ("id", "created", "model", "system_fingerprint")}
        usage = data.get("usage") or usage
        for choice in data.get("choices") or ():
            if isinstance(choice, dict):
                _apply_chunk(choices.setdefault(int(choice.get("index", 0)), {}), choice)
    if head is None:
        return None
    ordered = [_chat_choice(i, choices[i]) for i in sorted(choices)]
    return {**head, "object": "chat.completion", "choices": ordered, "usage": usage}


def _apply_chunk(state: dict[str, Any], choice: dict[str, Any]) -> None:
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


def _chat_choice(index: int, state: dict[str, Any]) -> dict[str, Any]:
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


# -- OpenAI Responses ----------------------------------------------------------------------------

FINAL_RESPONSE_EVENTS = ("response.completed", "response.failed", "response.incomplete")


def assemble_response(payloads: Sequence[Payload]) -> dict[str, Any] | None:
    """Return the ``response`` object the Responses events build, or None if none began.

    A finished stream's last event (``response.completed``, ``.failed`` or ``.incomplete``)
    carries the whole response; a stream cut short gives the response as it began, with the
    output items that were finished and the text of the one that was not."""
    response: dict[str, Any] | None = None
    items: dict[int, dict[str, Any]] = {}
    for name, data in payloads:
        if not isinstance(data, dict):
            continue
        kind = data.get("type", name)
        if isinstance(data.get("response"), dict):
            response = dict(data["response"])
            if kind in FINAL_RESPONSE_EVENTS:
                return response
        elif response is not None:
            _apply_response_event(items, kind, data)
    if response is None:
        return None
    return {**response, "output": [items[i] for i in sorted(items)]}


def _apply_response_event(
    items: dict[int, dict[str, Any]], kind: str, data: dict[str, Any]
) -> None:
    index = data.get("output_index")
    if not isinstance(index, int):
        return
    if kind in ("response.output_item.added", "response.output_item.done"):
        if isinstance(data.get("item"), dict):
            items[index] = dict(data["item"])
        return
    item = items.get(index)
    if item is None:
        return
    if kind == "response.output_text.delta":
        content = item.setdefault("content", [])
        if not content:
            content.append({"type": "output_text", "text": "", "annotations": []})
        content[-1] = {
            **content[-1],
            "text": str(content[-1].get("text", "")) + str(data.get("delta", "")),
        }
    elif kind == "response.function_call_arguments.delta":
        item["arguments"] = str(item.get("arguments") or "") + str(data.get("delta", ""))
