"""A loopback server that speaks the OpenAI Chat Completions API, records what it received, and
answers from a script: the OpenAI twin of ``tests.fakes.anthropic_server`` (same recording,
same scripted reply types, same handler).

    with OpenAIServer() as server:
        server.enqueue(chat_stream("hi"))
        client = openai.OpenAI(api_key="k", base_url=server.base_url + "/v1")

Unscripted ``POST /v1/chat/completions`` gets a deterministic echo naming the body's SHA-256,
streamed (with a usage chunk) when the request asks for a stream.
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

__all__ = ["CHAT_PATH", "OpenAIServer", "chat_reply", "chat_stream", "openai_error"]

CHAT_PATH = "/v1/chat/completions"
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


def openai_default_reply(request: RecordedRequest) -> Reply | StreamReply:
    """The echo of an unscripted request, naming the body's SHA-256."""
    if request.path.split("?", 1)[0] != CHAT_PATH:
        return openai_error(404, f"no route {request.method} {request.path}")
    text = f"echo: received {len(request.body)} bytes, sha256 {request.sha256}"
    usage = (max(1, len(request.body) // 4), len(text.split()), 0)
    return (
        chat_stream(text, usage=usage) if _wants_stream(request) else chat_reply(text, usage=usage)
    )


class OpenAIServer(AnthropicServer):
    """A scripted OpenAI Chat Completions API on 127.0.0.1; a context manager starts and stops it."""

    def _next_reply(self, request: RecordedRequest):  # type: ignore[no-untyped-def]
        with self._lock:
            scripted = self._scripted()
        return openai_default_reply(request) if scripted is None else scripted

    def __enter__(self) -> OpenAIServer:
        self.start()
        return self
