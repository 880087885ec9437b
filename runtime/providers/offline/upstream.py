"""A loopback upstream that answers as the offline model over HTTP, in the Anthropic Messages and
OpenAI Chat Completions formats: what the capture proxy forwards to in the demo, so its real
recording path runs without a key, a network or a cent spent.

Owns: ``OfflineUpstream`` (a threaded HTTP server on 127.0.0.1, port 0 by default; a context
manager) and ``chat_completion`` (the offline model's answer to a chat request).

Invariants:
- Deterministic: a reply is a function of the request body alone (``OfflineModel`` rules), but
  for the failures scripted with ``fail_next``, which answer the next requests, in order, with an
  error in the API's own format. Nothing from the clock or the process reaches a reply.
- Every reply says it is the offline model's (text starting ``[offline model]``); the ``model``
  field echoes the requested model, as the real APIs do, so the proxy's turns keep it.
- Nothing is logged: request lines and headers (an API key) stay out of the output.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from runtime.blocks import canonical_json
from runtime.errors import InvalidInput, Llm386Error
from runtime.providers.offline.model import OfflineModel, reply_content
from runtime.tokenizers import get_tokenizer

MESSAGES_PATH = "/v1/messages"
CHAT_PATH = "/v1/chat/completions"
# The error type each API puts in its error body, by status (Anthropic's, then OpenAI's).
_ERRORS = {400: ("invalid_request_error", "invalid_request_error"),
           404: ("not_found_error", "invalid_request_error"), 429: ("rate_limit_error", "requests"), 500: ("api_error", "server_error"),
           529: ("overloaded_error", "server_error")}  # fmt: skip


def chat_completion(body: bytes) -> dict[str, Any]:
    """Return the offline model's chat completion for a Chat Completions request body."""
    request = json.loads(body)
    if not isinstance(request, Mapping) or not isinstance(request.get("messages"), list):
        raise InvalidInput("a chat request is a JSON object with a list of messages")
    messages = [m for m in request["messages"] if isinstance(m, Mapping)]
    content, _ = reply_content({"messages": messages}, _digest(body))
    text = "".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    count = get_tokenizer("cl100k_base").count
    prompt, completion = count(body.decode("utf-8")), count(text)
    message = {"role": "assistant", "content": text, "refusal": None}
    return {
        "id": f"chatcmpl-offline-{_digest(body)[:24]}", "object": "chat.completion",
        "created": 0, "model": request.get("model", ""),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }  # fmt: skip


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _messages_reply(body: bytes) -> dict[str, Any]:
    reply = json.loads(OfflineModel().send_raw(body, expected_sha256=None).body)
    model = json.loads(body).get("model")
    return reply | ({"model": model} if isinstance(model, str) else {})


def _error(path: str, status: int, message: str) -> dict[str, Any]:
    anthropic_type, openai_type = _ERRORS.get(status, ("api_error", "server_error"))
    if path == MESSAGES_PATH:
        return {"type": "error", "error": {"type": anthropic_type, "message": message}}
    return {"error": {"message": message, "type": openai_type, "param": None, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a keep-alive connection waits on delayed ACKs

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        status, payload = self.server.owner.answer(self.path.partition("?")[0], body)
        data = canonical_json(payload)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Write nothing: request lines and headers stay out of the output."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: OfflineUpstream, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.owner = owner


class OfflineUpstream:
    """The offline model behind HTTP on 127.0.0.1 (see the module docstring)."""

    def __init__(self, port: int = 0) -> None:
        self._httpd = _Server(self, port)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05}, name="offline-upstream")  # fmt: skip
        self._failures: deque[tuple[int, str]] = deque()
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The Anthropic base URL; OpenAI clients take it with ``/v1`` appended."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, status: int, message: str) -> None:
        """Answer the next request (after those already scripted) with this error."""
        with self._lock:
            self._failures.append((status, message))

    def answer(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Return the status and JSON reply for a POST of ``body`` to ``path``."""
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if path not in (MESSAGES_PATH, CHAT_PATH):
            return 404, _error(path, 404, f"the offline upstream has no route POST {path}")
        if failure is not None:
            return failure[0], _error(path, *failure)
        try:
            return 200, _messages_reply(body) if path == MESSAGES_PATH else chat_completion(body)
        except (Llm386Error, ValueError, KeyError, TypeError) as exc:
            return 400, _error(path, 400, f"not a request the offline model can read: {exc}")

    def __enter__(self) -> OfflineUpstream:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
