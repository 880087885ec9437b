"""A loopback server that speaks the OpenAI Chat Completions and Responses APIs, records what it
received, and answers from a script: the OpenAI twin of ``tests.fakes.anthropic_server`` (same
recording, same scripted reply types, same handler).

    with OpenAIServer() as server:
        server.enqueue(chat_stream("hi"))
        client = openai.OpenAI(api_key="k", base_url=server.base_url + "/v1")

Unscripted ``POST /v1/chat/completions`` and ``POST /v1/responses`` get a deterministic echo
naming the body's SHA-256, streamed when the request asks for a stream (Chat Completions chunks
with a usage chunk; Responses' named events, ``response.created`` to ``response.completed``).
"""

from __future__ import annotations

import json

from tests.fakes.anthropic_server import (
    AnthropicServer,
    RecordedRequest,
    Reply,
    StreamReply,
    _json_reply,
    _wants_stream,
    sse,
)

__all__ = ["CHAT_PATH", "RESPONSES_PATH", "OpenAIServer", "chat_reply", "chat_stream",
           "openai_error", "response_reply", "response_stream"]  # fmt: skip

CHAT_PATH = "/v1/chat/completions"
RESPONSES_PATH = "/v1/responses"
DEFAULT_MODEL = "gpt-4o"
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
               429: "requests", 500: "server_error", 503: "server_error"}  # fmt: skip


def _usage(prompt: int, completion: int, cached: int = 0) -> dict[str, object]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip


def _tool_calls(tool: tuple[str, str, dict[str, object]] | None) -> list[dict[str, object]]:
    if tool is None:
        return []
    call_id, name, arguments = tool
    return [{"id": call_id, "type": "function",
             "function": {"name": name, "arguments": json.dumps(arguments, separators=(",", ":"))}}]  # fmt: skip


def chat_reply(
    text: str | None = "",
    *,
    tool: tuple[str, str, dict[str, object]] | None = None,
    usage: tuple[int, int, int] = (30, 8, 0),
) -> Reply:
    """A 200 chat completion: ``text``, or a call of tool (id, name, arguments)."""
    message: dict[str, object] = {"role": "assistant", "content": text if tool is None else None,
                                  "refusal": None}  # fmt: skip
    if tool is not None:
        message["tool_calls"] = _tool_calls(tool)
    finish = "tool_calls" if tool is not None else "stop"
    return _json_reply(200, {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000,
        "model": DEFAULT_MODEL, "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(*usage),
    })  # fmt: skip


def chat_stream(
    text: str = "",
    *,
    tool: tuple[str, str, dict[str, object]] | None = None,
    usage: tuple[int, int, int] = (30, 8, 0),
    pieces: int = 3,
    pause: float = 0.0,
    die_after: int | None = None,
) -> StreamReply:
    """A streamed chat completion: text deltas or a tool call in two argument deltas, a usage
    chunk, then ``[DONE]``."""
    head = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
            "model": DEFAULT_MODEL, "system_fingerprint": "fp_fake"}  # fmt: skip

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(None, {**head, "choices": [choice]})

    events = [chunk({"role": "assistant", "content": ""})]
    if text:
        size = max(1, -(-len(text) // pieces))
        events += [chunk({"content": text[i : i + size]}) for i in range(0, len(text), size)]
    if tool is not None:
        call = _tool_calls(tool)[0]
        fn = call["function"]
        assert isinstance(fn, dict)
        args = str(fn["arguments"])
        first = {"index": 0, "id": call["id"], "type": "function",
                 "function": {"name": fn["name"], "arguments": args[: len(args) // 2]}}  # fmt: skip
        rest = {"index": 0, "function": {"arguments": args[len(args) // 2 :]}}
        events += [chunk({"tool_calls": [first]}), chunk({"tool_calls": [rest]})]
    events.append(chunk({}, "tool_calls" if tool is not None else "stop"))
    events.append(sse(None, {**head, "choices": [], "usage": _usage(*usage)}))
    events.append(b"data: [DONE]\n\n")
    return StreamReply(tuple(events), pause, die_after)


def openai_error(status: int, message: str = "", *, error_type: str = "") -> Reply:
    """An error in OpenAI's shape."""
    kind = error_type or ERROR_TYPES.get(status, "server_error")
    payload = {"error": {"message": message or f"fake {kind}", "type": kind, "param": None,
                         "code": None}}  # fmt: skip
    return _json_reply(status, payload)


# -- the Responses API ---------------------------------------------------------------------------

Tool = tuple[str, str, dict[str, object]]  # (call id, name, arguments)


def _response_usage(prompt: int, completion: int, cached: int = 0) -> dict[str, object]:
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}  # fmt: skip


def _response(output: list[dict[str, object]], usage: dict[str, object] | None,
              status: str = "completed") -> dict[str, object]:  # fmt: skip
    return {"id": "resp_fake", "object": "response", "created_at": 1700000000, "status": status,
            "error": None, "incomplete_details": None, "instructions": None,
            "max_output_tokens": None, "model": DEFAULT_MODEL, "output": output,
            "parallel_tool_calls": True, "previous_response_id": None, "store": True,
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
            "tools": [], "top_p": 1.0, "truncation": "disabled", "usage": usage, "metadata": {}}  # fmt: skip


def _output_items(text: str | None, tool: Tool | None) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    if text:
        items.append({"type": "message", "id": "msg_fake", "status": "completed",
                      "role": "assistant",
                      "content": [{"type": "output_text", "text": text, "annotations": []}]})  # fmt: skip
    if tool is not None:
        call_id, name, arguments = tool
        items.append({"type": "function_call", "id": "fc_fake", "call_id": call_id, "name": name,
                      "arguments": json.dumps(arguments, separators=(",", ":")),
                      "status": "completed"})  # fmt: skip
    return items


def response_reply(
    text: str | None = "",
    *,
    tool: Tool | None = None,
    usage: tuple[int, int, int] = (30, 8, 0),
    response_id: str = "resp_fake",
) -> Reply:
    """A 200 Responses ``response``: a message with ``text`` and/or a function call."""
    body = _response(_output_items(text, tool), _response_usage(*usage))
    return _json_reply(200, {**body, "id": response_id})


def response_stream(
    text: str = "",
    *,
    tool: Tool | None = None,
    usage: tuple[int, int, int] = (30, 8, 0),
    pieces: int = 3,
    pause: float = 0.0,
    die_after: int | None = None,
) -> StreamReply:
    """A streamed response as the Responses API sends it: named events from
    ``response.created`` through text (or argument) deltas to ``response.completed``."""
    events: list[dict[str, object]] = [
        {"type": "response.created", "response": _response([], None, "in_progress")},
        {"type": "response.in_progress", "response": _response([], None, "in_progress")},
    ]
    for index, item in enumerate(_output_items(text, tool)):
        events += _item_events(index, item, pieces)
    final = _response(_output_items(text, tool), _response_usage(*usage))
    events.append({"type": "response.completed", "response": final})
    numbered = [sse(str(e["type"]), {**e, "sequence_number": n}) for n, e in enumerate(events)]
    return StreamReply(tuple(numbered), pause, die_after)


def _item_events(index: int, item: dict[str, object], pieces: int) -> list[dict[str, object]]:
    at = {"output_index": index, "item_id": item["id"]}
    if item["type"] == "function_call":
        args = str(item["arguments"])
        halves = [args[: len(args) // 2], args[len(args) // 2 :]]
        return [
            {"type": "response.output_item.added", "output_index": index,
             "item": {**item, "arguments": "", "status": "in_progress"}},
            *({"type": "response.function_call_arguments.delta", **at, "delta": h} for h in halves),
            {"type": "response.function_call_arguments.done", **at, "arguments": args},
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]  # fmt: skip
    content = item["content"]
    assert isinstance(content, list)
    text = str(content[0]["text"])
    size = max(1, -(-len(text) // pieces))
    part = {"type": "output_text", "text": "", "annotations": []}
    at_part = {**at, "content_index": 0}
    return [
        {"type": "response.output_item.added", "output_index": index,
         "item": {**item, "content": [], "status": "in_progress"}},
        {"type": "response.content_part.added", **at_part, "part": part},
        *({"type": "response.output_text.delta", **at_part, "delta": text[i : i + size]}
          for i in range(0, len(text), size)),
        {"type": "response.output_text.done", **at_part, "text": text},
        {"type": "response.content_part.done", **at_part, "part": {**part, "text": text}},
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]  # fmt: skip


def openai_default_reply(request: RecordedRequest) -> Reply | StreamReply:
    """The echo of an unscripted request, naming the body's SHA-256."""
    path = request.path.split("?", 1)[0]
    if path not in (CHAT_PATH, RESPONSES_PATH):
        return openai_error(404, f"no route {request.method} {request.path}")
    text = f"echo: received {len(request.body)} bytes, sha256 {request.sha256}"
    usage = (max(1, len(request.body) // 4), len(text.split()), 0)
    stream, whole = (
        (chat_stream, chat_reply) if path == CHAT_PATH else (response_stream, response_reply)
    )
    return stream(text, usage=usage) if _wants_stream(request) else whole(text, usage=usage)


class OpenAIServer(AnthropicServer):
    """A scripted OpenAI API (Chat Completions, Responses) on 127.0.0.1; a context manager."""

    def _next_reply(self, request: RecordedRequest):  # type: ignore[no-untyped-def]
        with self._lock:
            scripted = self._scripted()
        return openai_default_reply(request) if scripted is None else scripted

    def __enter__(self) -> OpenAIServer:
        self.start()
        return self
