"""Sessions as GenAI spans: what ``llm386 export --otlp`` sends, before the SDK sends it.

Owns: ``OutSpan`` (one span to send: deterministic ids, explicit times, attributes) and
``session_spans`` (a session's turns as an ``invoke_agent`` span over one ``chat`` span each).

Invariants:
- Deterministic: the trace id is derived from the session id, a chat span's id from its
  record's call id, the agent span's from the session; times are the records' own
  (``started_at`` and ``latency_ms``), never the clock. The same session gives the same spans.
- The current GenAI conventions (v1.37 on): ``gen_ai.system_instructions``,
  ``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.tool.definitions`` as JSON
  of role + parts, ``gen_ai.usage.*`` counting cached tokens inside the input count (as the
  conventions do), and ``gen_ai.conversation.id`` = the session, so any backend groups them.
- Our own attributes are namespaced ``llm386.*``: the prompt hash, the call id, the turn, the
  fidelity badge, the plan's sections (``llm386.section.<name>.tokens``) and its blocks
  (``llm386.block.ids`` with ``llm386.block.sections``, in plan order).
- A turn is its head record (``TurnGroup.head``); replays and re-pages of it are not sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.inspect.chat import ChatMessage, Part, PartKind, read_request, read_response
from runtime.replay.fidelity import replay_capability
from runtime.tracing.records import TraceRecord, TraceStatus, TraceStore

SCOPE = "llm386.export"
MS = 1_000_000  # ns


@dataclass(frozen=True)
class OutSpan:
    """One span to export: ids as integers (what the SDK takes), times in ns since the epoch."""

    name: str
    trace_id: int
    span_id: int
    parent_id: int | None
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(hash=False)
    error: str | None = None
    client: bool = False  # a model call (SpanKind.CLIENT), else the agent (INTERNAL)


def derived_id(kind: str, value: str, size: int) -> int:
    """Return a nonzero id of ``size`` bytes derived from ``kind`` and ``value``."""
    digest = hashlib.sha256(f"llm386 {kind} {value}".encode()).digest()
    return int.from_bytes(digest[:size], "big") or 1


def session_spans(traces: TraceStore, session: str) -> list[OutSpan]:
    """Return a session's turns as spans: the agent span first, then one chat span per turn."""
    heads = [group.head for _, group in traces.turn_groups(session, limit=None)]
    records = traces.get_many(heads)
    trace_id = derived_id("trace", session, 16)
    root_id = derived_id("agent", session, 8)
    chats = [_chat(traces, r, trace_id, root_id) for r in records]
    start = min((s.start_ns for s in chats), default=0)
    end = max((s.end_ns for s in chats), default=start)
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "llm386",
             "gen_ai.conversation.id": session, "llm386.session": session,
             "llm386.turns": len(chats)}  # fmt: skip
    root = OutSpan(f"invoke_agent {session}", trace_id, root_id, None, start, end, agent)
    return [root, *chats]


def _chat(traces: TraceStore, record: TraceRecord, trace_id: int, parent: int) -> OutSpan:
    stored = traces.stored_trace(record.call_id)
    request = read_request(stored.request)
    start = record.started_at * MS
    end = start + int((record.latency_ms or 0) * MS)
    attributes = (
        _model_attributes(record)
        | _content(request.system, request.messages, read_response(record.response), record)
        | {"gen_ai.tool.definitions": _json([_tool(t.name, t.description, t.schema)
                                             for t in request.tools])}
        | _usage(record)
        | _ours(record)
    )  # fmt: skip
    if not request.tools:
        del attributes["gen_ai.tool.definitions"]
    error = None
    if record.status is TraceStatus.ERROR:
        error = record.error.message if record.error else "the call failed"
    name = f"chat {record.model}"
    span_id = derived_id("span", record.call_id, 8)
    return OutSpan(name, trace_id, span_id, parent, start, end, attributes, error, client=True)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _model_attributes(record: TraceRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": record.provider.value,
        "gen_ai.request.model": record.model, "gen_ai.conversation.id": record.session,
    }  # fmt: skip
    if record.stop_reason:
        out["gen_ai.response.finish_reasons"] = [record.stop_reason]
    return out


def _content(
    system: Sequence[Part], messages: Sequence[ChatMessage], output: ChatMessage | None,
    record: TraceRecord,
) -> dict[str, Any]:  # fmt: skip
    out = {"gen_ai.input.messages": _json([_message(m) for m in messages])}
    instructions = [{"type": "text", "content": p.text} for p in system if p.kind is PartKind.TEXT]
    if instructions:
        out["gen_ai.system_instructions"] = _json(instructions)
    if output is not None and output.parts:
        message = _message(output) | (
            {"finish_reason": record.stop_reason} if record.stop_reason else {}
        )
        out["gen_ai.output.messages"] = _json([message])
    return out


def _message(message: ChatMessage) -> dict[str, Any]:
    return {"role": message.role, "parts": [_part(p) for p in message.parts]}


def _part(part: Part) -> dict[str, Any]:
    if part.kind is PartKind.TEXT:
        return {"type": "text", "content": part.text}
    if part.kind is PartKind.TOOL_USE:
        return {"type": "tool_call", "id": part.ref, "name": part.name,
                "arguments": _arguments(part.text)}  # fmt: skip
    if part.kind is PartKind.TOOL_RESULT:
        return {"type": "tool_call_response", "id": part.ref, "response": part.text}
    return {"type": "llm386.other", "content": part.text}  # kept, marked as not ours to read


def _arguments(text: str) -> Any:
    """Return tool-call arguments as the object they encode (the conventions' form), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _tool(name: str, description: str, schema: str) -> dict[str, Any]:
    return {"type": "function", "name": name, "description": description,
            "parameters": _arguments(schema)}  # fmt: skip


def _usage(record: TraceRecord) -> dict[str, Any]:
    usage = record.usage
    if usage is None:
        return {}
    return {
        "gen_ai.usage.input_tokens": usage.total_input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_input_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_creation_input_tokens,
    }


def _ours(record: TraceRecord) -> dict[str, Any]:
    plan = record.plan if isinstance(record.plan, Mapping) else {}
    selected = [s for s in plan.get("selected") or () if isinstance(s, Mapping)]
    out: dict[str, Any] = {
        "llm386.call_id": record.call_id, "llm386.turn": record.turn,
        "llm386.prompt.sha256": record.prompt_hash, "llm386.origin": record.origin.value,
        "llm386.fidelity": replay_capability(record).fidelity.value,
    }  # fmt: skip
    if selected:
        out["llm386.block.ids"] = [str(s.get("block_id", "")) for s in selected]
        out["llm386.block.sections"] = [str(s.get("section", "")) for s in selected]
    for section in plan.get("sections") or ():
        if isinstance(section, Mapping) and section.get("section"):
            name = f"llm386.section.{section['section']}"
            out[f"{name}.tokens"] = int(section.get("used") or 0)
            if isinstance(section.get("allocated"), int):
                out[f"{name}.allocated"] = section["allocated"]
    return out
