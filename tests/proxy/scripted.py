"""A scripted run of captured calls, and what the store holds after it, with the run's random
parts (call ids, generated session names) named by order of appearance.

Used to check that a change to how the recorder reads requests leaves what it writes exactly
as it was: the calls cover every wire format, tool calls and results (whose edges span calls),
moving ``cache_control`` marks, a history the client rewrites, a retry, an explicit session
header, a body that is not JSON and list items that are not objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from runtime.proxy.apis import ROUTES
from runtime.proxy.exchange import Exchange
from runtime.proxy.turns import TurnWriter
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceStore

OK_MESSAGE = b'{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":20,"output_tokens":3}}'
OK_CHAT = b'{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}'
ERROR = b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
TOOLS = [{"name": "read", "description": "read a file",
          "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]  # fmt: skip


def captured(path: str, body: bytes, n: int, *, status: int = 200, reply: bytes = OK_MESSAGE,
              session: str | None = None) -> Exchange:  # fmt: skip
    """A finished call to ``path`` with this request and reply, as the server hands it over."""
    json_headers = (("content-type", "application/json"),)
    return Exchange(ROUTES[path], path, "http://upstream" + path, 1_700_000_000_000 + n, body,
                    json_headers, session=session, status=status, response_headers=json_headers,
                    response_body=reply, ttfb_ms=1.0, total_ms=2.0)  # fmt: skip


def _agent() -> Iterator[list[dict[str, Any]]]:
    """The message lists of an agent that reads files with a tool, turn after turn."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "fix the bug in app.py"}]
    for step in range(6):
        yield messages
        call = {"type": "tool_use", "id": f"toolu_{step}", "name": "read",
                "input": {"path": f"src/f{step}.py"}}  # fmt: skip
        messages = [*messages, {"role": "assistant", "content": [
            {"type": "text", "text": f"reading file {step}"}, call]}]  # fmt: skip
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": f"toolu_{step}",
                  "content": [{"type": "text", "text": f"contents {step} " + "x" * 50}]}  # fmt: skip
        if step % 2:  # the agent moves its cache breakpoint to the newest message
            result["cache_control"] = {"type": "ephemeral"}
        messages = [*messages, {"role": "user", "content": [result]}]


def scripted_exchanges() -> list[Exchange]:
    """The calls of the script, in the order the recorder gets them."""
    out: list[Exchange] = []

    def add(path: str, data: Any, **options: Any) -> None:
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        out.append(captured(path, body, len(out), **options))

    system = [{"type": "text", "text": "You are a careful agent.",
               "cache_control": {"type": "ephemeral"}}]  # fmt: skip
    for messages in _agent():
        add("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 64, "system": system,
                             "tools": TOOLS, "messages": messages})  # fmt: skip
    # The client rewrites its history (an earlier message edited), then goes on from there.
    rewritten = [dict(m) for m in messages]
    rewritten[0] = {"role": "user", "content": "fix the bug in app.py, and add a test"}
    add("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 64, "system": system,
                         "tools": TOOLS, "messages": rewritten})  # fmt: skip
    longer = [*rewritten, {"role": "assistant", "content": "done"},
              {"role": "user", "content": "thanks"}]  # fmt: skip
    add("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 64, "system": system,
                         "tools": TOOLS, "messages": longer})  # fmt: skip
    # A failed call and its retry (the same list), then a changed system prompt.
    retry = {"model": "claude-sonnet-4-6", "max_tokens": 64, "system": "terse",
             "messages": [{"role": "user", "content": "hi"}, 7, "not a message"]}  # fmt: skip
    add("/v1/messages", retry, status=529, reply=ERROR)
    add("/v1/messages", retry)
    # The same growing list, under an explicit session header; odd spacing and key order.
    add("/v1/messages", b'{ "messages" : [ {"content":"one","role":"user"} ] ,"model":"claude-haiku-4-5"}',
        session="scripted-header")  # fmt: skip
    add("/v1/messages", b'{ "messages" : [ {"content":"one","role":"user"} ,{"role":"assistant",'
        b'"content":"two"},{"role":"user","content":"three \\u00e9"}], "model":"claude-haiku-4-5"}',
        session="scripted-header")  # fmt: skip
    # Chat Completions with tool calls, over three calls.
    chat: list[dict[str, Any]] = [{"role": "system", "content": "be brief"},
                                  {"role": "user", "content": "weather?"}]  # fmt: skip
    for step in range(3):
        add("/v1/chat/completions", {"model": "gpt-4o", "messages": chat}, reply=OK_CHAT)
        fn = {"name": "weather", "arguments": json.dumps({"city": f"c{step}"})}
        chat = [*chat, {"role": "assistant", "content": None,
                        "tool_calls": [{"id": f"call_{step}", "type": "function", "function": fn}]},
                {"role": "tool", "tool_call_id": f"call_{step}", "content": f"sunny {step}"}]  # fmt: skip
    # The Responses API: a string input, then a list of items.
    add("/v1/responses", {"model": "gpt-4o", "instructions": "be kind", "input": "hello"},
        reply=b'{"id":"resp_1","object":"response","output":[]}')  # fmt: skip
    add("/v1/responses", {"model": "gpt-4o", "instructions": "be kind", "input": [
        {"role": "user", "content": "hello"}, {"type": "function_call", "call_id": "f1",
         "name": "clock", "arguments": "{}"}, {"type": "function_call_output", "call_id": "f1",
         "output": "noon"}]}, reply=b'{"id":"resp_2","object":"response","output":[]}')  # fmt: skip
    add("/v1/messages", b"this is not JSON", status=400, reply=ERROR)
    add("/v1/messages", b'\xef\xbb\xbf{"model":"claude-sonnet-4-6","messages":[{"role":"user",'
        b'"content":"with a byte order mark"}]}')  # fmt: skip
    return out


def record_script(store: BlockStore, traces: TraceStore, writer: TurnWriter) -> None:
    """Record the script's calls, a few per batch, as the recorder's writer thread does."""
    calls = scripted_exchanges()
    for start in range(0, len(calls), 3):
        writer.write_batch(calls[start : start + 3])


def stored_state(store: BlockStore, traces: TraceStore) -> dict[str, Any]:
    """Return every record, session entry and edge in the store, random names numbered."""
    records = sorted(traces.list(limit=None), key=lambda r: r.call_id)
    names: dict[str, str] = {}

    def name(value: str) -> str:
        return (
            names.setdefault(value, f"<{len(names)}>") if value.startswith("captured-") else value
        )

    out: dict[str, Any] = {"records": [], "sessions": {}}
    for record in records:
        session = name(record.session)
        data = replace(record, call_id="", session=session).stored_json()
        data["plan"] = {**data["plan"], "session": session}
        data["request"] = (traces.request_bytes(record.prompt_hash) or b"").decode("latin-1")
        out["records"].append(data)
        if session not in out["sessions"]:
            entries = store.entries(record.session)
            edges = sorted({(e.src, e.kind, e.dst) for entry in entries
                            for e in store.edges_from(entry.id)})  # fmt: skip
            out["sessions"][session] = {
                "entries": [[e.seq, e.id, str(e.kind)] for e in entries],
                "edges": [list(edge) for edge in edges],
            }  # fmt: skip
    return out
