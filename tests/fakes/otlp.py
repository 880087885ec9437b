"""OTLP trace exports built with the official opentelemetry-proto classes, one per convention.

Each builder returns an ``ExportTraceServiceRequest``; ``body`` serialises it as protobuf or as
OTLP JSON (hex ids, lowerCamelCase), the two bodies the receiver takes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
T0 = 1_700_000_000_000_000_000  # ns


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    return AnyValue(string_value=str(value))


def attrs(values: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in values.items()]


def span_id(n: int) -> bytes:
    return n.to_bytes(8, "big")


def span(
    n: int, name: str, attributes: Mapping[str, Any], *, parent: int | None = None,
    start_ms: int = 0, end_ms: int = 100, trace: bytes = TRACE, error: str | None = None,
    events: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> Span:  # fmt: skip
    s = Span(
        trace_id=trace, span_id=span_id(n), name=name, kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=T0 + start_ms * 1_000_000, end_time_unix_nano=T0 + end_ms * 1_000_000,
        attributes=attrs(attributes),
    )  # fmt: skip
    if parent is not None:
        s.parent_span_id = span_id(parent)
    if error is not None:
        s.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    for event_name, event_attrs in events:
        s.events.add(name=event_name, time_unix_nano=s.start_time_unix_nano,
                     attributes=attrs(event_attrs))  # fmt: skip
    return s


def request(*spans: Span, service: str = "demo-agent") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(attrs({"service.name": service}))
    ss = rs.scope_spans.add()
    ss.scope.name = "tests.fakes.otlp"
    ss.spans.extend(spans)
    return req


def body(req: ExportTraceServiceRequest, kind: str = "protobuf") -> bytes:
    """Return ``req`` as a protobuf body, or as OTLP JSON (ids in hex, as the spec maps them)."""
    if kind == "protobuf":
        return req.SerializeToString()
    data = json_format.MessageToDict(req)
    for rs in data.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = base64.b64decode(s[key]).hex()
    return json.dumps(data).encode()


# -- the conventions -----------------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}  # fmt: skip
SYSTEM = "You are a weather assistant."
QUESTION = "What is the weather in Paris?"
ANSWER = "It is sunny in Paris, 21 degrees."


def current_chat(n: int, *, turn: int, conversation: str | None = "conv-1", **extra: Any) -> Span:
    """A chat span in the current conventions; ``turn`` 1 asks for a tool, 2 answers."""
    history: list[dict[str, Any]] = [
        {"role": "user", "parts": [{"type": "text", "content": QUESTION}]}
    ]
    if turn == 1:
        output = [{"role": "assistant", "finish_reason": "tool_call", "parts": [
            {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]}]  # fmt: skip
    else:
        history += [
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1",
                                             "name": "get_weather", "arguments": {"city": "Paris"}}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                                        "response": "sunny, 21C"}]},
        ]  # fmt: skip
        output = [{"role": "assistant", "finish_reason": "stop",
                   "parts": [{"type": "text", "content": ANSWER}]}]  # fmt: skip
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4-6", "gen_ai.request.max_tokens": 1024,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": SYSTEM}]),
        "gen_ai.input.messages": json.dumps(history),
        "gen_ai.output.messages": json.dumps(output),
        "gen_ai.tool.definitions": json.dumps([WEATHER_TOOL]),
        "gen_ai.usage.input_tokens": 120 * turn, "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read.input_tokens": 100 if turn == 2 else 0,
        "gen_ai.usage.cache_creation.input_tokens": 100 if turn == 1 else 0,
    }  # fmt: skip
    if conversation is not None:
        attributes["gen_ai.conversation.id"] = conversation
    attributes |= extra
    return span(n, "chat claude-sonnet-4-6", attributes, parent=1,
                start_ms=(turn - 1) * 1000 + 10, end_ms=(turn - 1) * 1000 + 400)  # fmt: skip


def agent_tree() -> list[Span]:
    """An agent span over two chats and the tool execution between them (current conventions)."""
    return [
        span(1, "invoke_agent weather", {"gen_ai.operation.name": "invoke_agent",
                                         "gen_ai.agent.name": "weather"}, end_ms=2000),
        current_chat(2, turn=1),
        span(3, "execute_tool get_weather", {"gen_ai.operation.name": "execute_tool",
                                             "gen_ai.tool.name": "get_weather",
                                             "gen_ai.tool.call.id": "call_1"},
             parent=1, start_ms=450, end_ms=900),
        current_chat(4, turn=2),
    ]  # fmt: skip


def indexed_chat(n: int, **extra: Any) -> Span:
    """A chat span in the indexed attributes of v1.36 and earlier (OpenLLMetry's default)."""
    attributes: dict[str, Any] = {
        "gen_ai.system": "OpenAI", "llm.request.type": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": SYSTEM,
        "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": QUESTION,
        "gen_ai.prompt.2.role": "assistant",
        "gen_ai.prompt.2.tool_calls.0.id": "call_1",
        "gen_ai.prompt.2.tool_calls.0.name": "get_weather",
        "gen_ai.prompt.2.tool_calls.0.arguments": '{"city": "Paris"}',
        "gen_ai.prompt.3.role": "tool", "gen_ai.prompt.3.content": "sunny, 21C",
        "gen_ai.prompt.3.tool_call_id": "call_1",
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": ANSWER,
        "gen_ai.completion.0.finish_reason": "stop",
        "llm.request.functions.0.name": "get_weather",
        "llm.request.functions.0.description": "Weather for a city",
        "llm.request.functions.0.parameters": json.dumps(WEATHER_TOOL["parameters"]),
        "gen_ai.usage.prompt_tokens": 240, "gen_ai.usage.completion_tokens": 20,
    }  # fmt: skip
    return span(n, "openai.chat", attributes | extra, trace=bytes.fromhex("11" * 16))


def events_chat(n: int) -> Span:
    """A chat span with gen_ai.content.* events (v1.26 to v1.36)."""
    prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    completion = [{"role": "assistant", "content": ANSWER}]
    attributes = {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-3-5-haiku-20241022",
                  "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 50,
                  "gen_ai.usage.output_tokens": 12}  # fmt: skip
    events = [("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(prompt)}),
              ("gen_ai.content.completion", {"gen_ai.completion": json.dumps(completion)})]  # fmt: skip
    return span(n, "chat", attributes, events=events, trace=bytes.fromhex("22" * 16))
