"""A loopback server that speaks the Anthropic Messages API, records what it received, and answers
from a script.

Use it as a context manager (or through the ``model_server`` fixture)::

    with AnthropicServer() as server:
        server.enqueue(error_reply(429, retry_after=0.01), text_reply("hi"))
        adapter = AnthropicAdapter(api_key="k", base_url=server.base_url)
        ...
        assert server.requests[0].body == request_bytes

Every request is recorded (method, path, headers, raw body bytes) before it is answered. Replies
come from a FIFO queue of scripted replies; when the queue is empty, ``POST /v1/messages`` answers
a deterministic text echo naming the SHA-256 of the body, and ``POST /v1/messages/count_tokens``
answers a deterministic count. The server binds 127.0.0.1 on a free port, runs its handlers on
daemon threads, and shuts itself down after ``max_lifetime`` seconds if a test forgets to.

Header values are recorded (tests check the API key was sent) but never printed: the request
record's repr leaves them out and the handler writes no log.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = [
    "AnthropicServer",
    "DropConnection",
    "RawReply",
    "RecordedRequest",
    "Reply",
    "ScriptedReply",
    "SlowReply",
    "StreamReply",
    "default_reply",
    "error_reply",
    "stream_reply",
    "text_reply",
    "tool_use_reply",
]

DEFAULT_MODEL = "claude-sonnet-4-6"
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"

# The error type the real API puts in {"type":"error","error":{"type": ...}} for each status.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request exactly as the server received it."""

    method: str
    path: str
    body: bytes = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)

    def carries_api_key(self, key: str) -> bool:
        """Whether ``key`` was sent as ``x-api-key`` or as an ``Authorization: Bearer`` token."""
        return self.header("x-api-key") == key or self.header("authorization") == f"Bearer {key}"

    def json(self) -> object:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """A complete HTTP reply: status, JSON-encoded body, extra headers."""

    status: int
    body: bytes = field(repr=False)
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RawReply:
    """A reply whose body is sent as given, e.g. malformed JSON."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class SlowReply:
    """Wait ``seconds`` (longer than the client's timeout), then send ``then`` if anyone listens."""

    seconds: float
    then: Reply | None = None


@dataclass(frozen=True)
class DropConnection:
    """Close the connection without sending a single byte of a response."""


@dataclass(frozen=True)
class StreamReply:
    """A server-sent event stream, chunk-encoded, each event flushed ``pause`` seconds apart.

    With ``die_after`` the connection drops after that many events, with no terminating chunk:
    the client sees the body break off, as when an upstream dies mid-stream."""

    events: tuple[bytes, ...] = field(repr=False)
    pause: float = 0.0
    die_after: int | None = None
    status: int = 200


ScriptedReply = Reply | RawReply | SlowReply | DropConnection | StreamReply


def sse(event: str | None, payload: object) -> bytes:
    """Return one SSE event: ``event:`` line (if named) and compact JSON ``data:``."""
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def stream_reply(
    text: str = "",
    *,
    tool: tuple[str, str, dict[str, object]] | None = None,
    usage: tuple[int, int, int, int] = (25, 7, 0, 0),
    pieces: int = 3,
    pause: float = 0.0,
    die_after: int | None = None,
) -> StreamReply:
    """A streamed message: ``text`` in ``pieces`` deltas, then an optional (id, name, input) tool call."""
    start = _message("msg_fake_stream", [], None, _usage(usage[0], 1, usage[2], usage[3]))  # type: ignore[arg-type]
    events = [sse("message_start", {"type": "message_start", "message": start})]
    index = 0
    if text:
        events.append(
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        size = max(1, -(-len(text) // pieces))
        for i in range(0, len(text), size):
            delta = {"type": "text_delta", "text": text[i : i + size]}
            events.append(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
            )
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    if tool is not None:
        tool_id, name, tool_input = tool
        block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
        raw = json.dumps(tool_input, separators=(",", ":"))
        events.append(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
            delta = {"type": "input_json_delta", "partial_json": part}
            events.append(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    stop = "tool_use" if tool is not None else "end_turn"
    events.append(
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": usage[1]},
            },
        )
    )
    events.append(sse("message_stop", {"type": "message_stop"}))
    return StreamReply(tuple(events), pause, die_after)


def _json_reply(status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Reply(status, body, headers)


def _usage(
    input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0
) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
    }


def _message(
    msg_id: str, content: list[dict[str, object]], stop_reason: str, usage: dict[str, int]
) -> dict[str, object]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": DEFAULT_MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def text_reply(
    text: str,
    *,
    msg_id: str = "msg_fake_text",
    stop_reason: str = "end_turn",
    usage: tuple[int, int, int, int] = (25, 7, 0, 0),
) -> Reply:
    """A 200 message with one text block; ``usage`` is (input, output, cache_read, cache_write)."""
    content: list[dict[str, object]] = [{"type": "text", "text": text}]
    return _json_reply(200, _message(msg_id, content, stop_reason, _usage(*usage)))


def tool_use_reply(
    tool_id: str,
    name: str,
    tool_input: dict[str, object],
    *,
    text: str | None = None,
    usage: tuple[int, int, int, int] = (40, 12, 0, 0),
) -> Reply:
    """A 200 message asking for one tool call, optionally after a text block."""
    content: list[dict[str, object]] = [] if text is None else [{"type": "text", "text": text}]
    content.append({"type": "tool_use", "id": tool_id, "name": name, "input": tool_input})
    return _json_reply(200, _message("msg_fake_tool", content, "tool_use", _usage(*usage)))


def error_reply(
    status: int, message: str = "", *, error_type: str = "", retry_after: float | None = None
) -> Reply:
    """An error in the real API's shape, with ``retry-after`` (seconds) when given."""
    kind = error_type or ERROR_TYPES.get(status, "api_error")
    headers = () if retry_after is None else (("retry-after", f"{retry_after:g}"),)
    payload = {"type": "error", "error": {"type": kind, "message": message or f"fake {kind}"}}
    return _json_reply(status, payload, headers)


def _wants_stream(request: RecordedRequest) -> bool:
    try:
        data = json.loads(request.body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json parses
        return False
    return isinstance(data, dict) and data.get("stream") is True


def default_reply(request: RecordedRequest) -> Reply | StreamReply:
    """The deterministic answer to an unscripted request: an echo naming the body's SHA-256
    (streamed when the request asks for a stream)."""
    digest = request.sha256
    estimate = max(1, len(request.body) // 4)
    if request.path == COUNT_TOKENS_PATH:
        return _json_reply(200, {"input_tokens": estimate})
    if request.path != MESSAGES_PATH:
        return error_reply(404, f"no route {request.method} {request.path}")
    text = f"echo: received {len(request.body)} bytes, sha256 {digest}"
    if _wants_stream(request):
        return stream_reply(text, usage=(estimate, len(text.split()), 0, 0))
    usage = _usage(estimate, len(text.split()))
    return _json_reply(
        200,
        _message(f"msg_echo_{digest[:24]}", [{"type": "text", "text": text}], "end_turn", usage),
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Without this, a reused keep-alive connection stalls ~40 ms per call on delayed ACKs.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        request = RecordedRequest("POST", self.path, body, tuple(self.headers.items()))
        self.server.owner._record(request)
        self._answer(self.server.owner._next_reply(request))

    def do_GET(self) -> None:
        request = RecordedRequest("GET", self.path, b"", tuple(self.headers.items()))
        self.server.owner._record(request)
        self._answer(error_reply(404, f"no route GET {self.path}"))

    def _answer(self, reply: ScriptedReply) -> None:
        # A client that gave up (timeout) before the reply is no longer listening.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._send(reply)

    def _send(self, reply: ScriptedReply) -> None:
        if isinstance(reply, DropConnection):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(reply, SlowReply):
            if self.server.owner._stopping.wait(reply.seconds) or reply.then is None:
                self.close_connection = True
                return
            reply = reply.then
        if isinstance(reply, StreamReply):
            self._stream(reply)
        elif isinstance(reply, RawReply):
            self._write(reply.status, reply.body, (("content-type", reply.content_type),))
        else:
            self._write(
                reply.status, reply.body, (("content-type", "application/json"), *reply.headers)
            )

    def _write(self, status: int, body: bytes, headers: tuple[tuple[str, str], ...]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("request-id", f"req_fake_{self.server.owner.request_count:04d}")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _stream(self, reply: StreamReply) -> None:
        self.send_response(reply.status)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("request-id", f"req_fake_{self.server.owner.request_count:04d}")
        self.end_headers()
        for number, event in enumerate(reply.events):
            if reply.die_after is not None and number >= reply.die_after:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if number and reply.pause and self.server.owner._stopping.wait(reply.pause):
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        """Write nothing: request lines and headers stay out of test output."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512  # the listen backlog: concurrency tests open hundreds at once

    def __init__(self, owner: AnthropicServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.owner = owner


class AnthropicServer:
    """A scripted Anthropic Messages API on 127.0.0.1; a context manager starts and stops it."""

    def __init__(self, *, max_lifetime: float = 120.0) -> None:
        self.max_lifetime = max_lifetime
        self._lock = threading.Lock()
        self._queue: deque[ScriptedReply] = deque()
        self._varying: tuple[
            ScriptedReply, ...
        ] = ()  # answers taken in turn once the queue is empty
        self._varied = 0
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._stop_lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(
                "the fake Anthropic server is not running: use it as a context manager"
            )
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    @property
    def pending(self) -> int:
        """How many scripted replies have not been used yet."""
        with self._lock:
            return len(self._queue)

    def enqueue(self, *replies: ScriptedReply) -> None:
        """Answer the next requests with ``replies``, in order."""
        with self._lock:
            self._queue.extend(replies)

    def vary(self, *replies: ScriptedReply) -> None:
        """Answer every later unscripted request with the next of ``replies``, round and round:
        the same bytes get different answers from call to call (variance sampling)."""
        with self._lock:
            self._varying, self._varied = replies, 0

    def _scripted(self) -> ScriptedReply | None:
        """Return the next queued reply, else the next varying one, else None (the caller's lock)."""
        if self._queue:
            return self._queue.popleft()
        if self._varying:
            self._varied += 1
            return self._varying[(self._varied - 1) % len(self._varying)]
        return None

    def start(self) -> AnthropicServer:
        self._httpd = _Server(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        # Bounded: a server a test forgot to stop does not outlive the run by much.
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._stop_lock:
            self._stop()

    def _stop(self) -> None:
        self._stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> AnthropicServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_reply(self, request: RecordedRequest) -> ScriptedReply:
        with self._lock:
            scripted = self._scripted()
        return default_reply(request) if scripted is None else scripted
