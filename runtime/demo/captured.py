"""Captured proxy turns for the demo: conversations sent through the real capture proxy.

Owns: ``CAPTURED`` (the demo's conversations, one per API format) and ``load_captured_sessions``.

How: the proxy (``ProxyThread`` on 127.0.0.1, port 0) and its ``Recorder`` run in-process in
front of ``OfflineUpstream``, the offline model behind HTTP; each conversation goes through the
product's own SDK clients (``AnthropicAdapter``, ``OpenAIClient``: the official SDKs underneath)
pointed at the proxy, with ``x-llm386-session`` naming its session. In the Messages conversation
the upstream answers one call with a 529 "overloaded" error; the agent sends the same request
again, as agents do, so the session has a failed turn in its middle.

Invariants: deterministic (the request bytes are canonical JSON of fixed messages, the replies a
function of them, the failure scripted); idempotent (a session already traced is skipped); the
placeholder API key goes to the loopback upstream only and is never stored (the proxy redacts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.blocks import canonical_json
from runtime.errors import Llm386Error, ModelCallFailed
from runtime.providers.anthropic.adapter import AnthropicAdapter
from runtime.providers.httpclient import RetryingClient
from runtime.providers.offline.upstream import OfflineUpstream
from runtime.providers.openai.client import OpenAIClient
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.proxy.apis import SESSION_HEADER
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceStore

DEMO_KEY = "llm386-demo-key-for-the-loopback-upstream"  # not a key: the upstream checks none
OVERLOADED = "Overloaded (the demo's scripted failure: the agent sends the call again)"


@dataclass(frozen=True)
class Captured:
    """One conversation the demo sends through the proxy."""

    session: str
    model: str
    system: str
    messages: tuple[str, ...]
    fail_at: int | None = None  # the user message whose first call the upstream fails (0-based)
    chat: bool = False  # OpenAI Chat Completions instead of Anthropic Messages


CAPTURED: tuple[Captured, ...] = (
    Captured("demo-proxy-messages", "claude-sonnet-4-6", "You are a terse support assistant.",
             ("Hello! Can you help me change a flight?", "My booking is HAT123; move it to Friday.",
              "Thanks. What is the baggage allowance?", "Great, that is all."), fail_at=1),
    Captured("demo-proxy-chat", "gpt-4o", "You are a terse travel assistant.",
             ("Hi, which airports serve Paris?", "Which one is closer to the city?"), chat=True),
)  # fmt: skip


def _messages_body(c: Captured, history: Sequence[dict[str, str]]) -> bytes:
    return canonical_json({"model": c.model, "max_tokens": 256, "system": c.system,
                           "messages": list(history)})  # fmt: skip


def _chat_body(c: Captured, history: Sequence[dict[str, str]]) -> bytes:
    system = [{"role": "system", "content": c.system}]
    return canonical_json({"model": c.model, "max_tokens": 256, "messages": system + list(history)})


def _converse(c: Captured, client: RetryingClient, upstream: OfflineUpstream) -> int:
    """Send ``c``'s messages one by one through ``client``; return how many calls were made."""
    body: Callable[[Captured, Sequence[dict[str, str]]], bytes] = (
        _chat_body if c.chat else _messages_body
    )
    history: list[dict[str, str]] = []
    calls = 0
    for number, text in enumerate(c.messages):
        history.append({"role": "user", "content": text})
        if number == c.fail_at:
            upstream.fail_next(529, OVERLOADED)
            calls += 1
            _expect_failure(client, body(c, history))  # then sent again, as an agent retries
        reply = client.send(body(c, history), expected_sha256=None)
        calls += 1
        history.append({"role": "assistant", "content": reply.text})
    return calls


def _expect_failure(client: RetryingClient, request: bytes) -> None:
    try:
        client.send(request, expected_sha256=None)
    except ModelCallFailed:
        return
    raise Llm386Error("the offline upstream answered a call it was told to fail; report this bug")


def _client(c: Captured, proxy: str) -> RetryingClient:
    options: dict[str, Any] = {"api_key": DEMO_KEY, "max_retries": 0, "timeout": 30.0,
                               "headers": {SESSION_HEADER: c.session}}  # fmt: skip
    if c.chat:
        return OpenAIClient(base_url=proxy + "/v1", **options)
    return AnthropicAdapter(base_url=proxy, **options)


def load_captured_sessions(
    store: BlockStore, traces: TraceStore, conversations: Sequence[Captured] = CAPTURED
) -> str:
    """Send the conversations not yet traced through the capture proxy; return a summary."""
    todo = [c for c in conversations if not traces.count(session=c.session)]
    if not todo:
        return f"capture proxy: all {len(conversations)} captured session(s) already loaded."
    recorder = Recorder(store, traces).start()
    calls = 0
    try:
        with OfflineUpstream() as upstream:
            upstreams = {Family.ANTHROPIC: upstream.base_url,
                         Family.OPENAI: upstream.base_url + "/v1"}  # fmt: skip
            with ProxyThread(ProxySettings(port=0, upstreams=upstreams), recorder) as proxy:
                for c in todo:
                    with _client(c, proxy.base_url) as client:
                        calls += _converse(c, client, upstream)
    finally:
        recorder.close()
    if recorder.lost or recorder.recorded != calls:
        raise Llm386Error(
            f"the capture proxy recorded {recorder.recorded} of the demo's {calls} calls "
            f"({recorder.last_error or 'no error reported'}); check the store, then run the "
            "demo again (sessions already recorded are kept)"
        )
    formats = sorted({"OpenAI Chat Completions" if c.chat else "Anthropic Messages" for c in todo})
    failed = sum(1 for c in todo if c.fail_at is not None)
    return (
        f"capture proxy: {len(todo)} session(s) recorded through the proxy ({calls} calls, "
        f"{' and '.join(formats)}; {failed} scripted 529 mid-session)."
    )
