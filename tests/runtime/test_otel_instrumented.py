"""Real instrumentation: OpenLLMetry's opentelemetry-instrumentation-anthropic (pinned in the
lock) instruments the official anthropic client calling the loopback fake Anthropic server; the
SDK's OTLP/HTTP exporter sends the spans to our receiver on the proxy's port.

OpenLLMetry 0.62.4 writes the current GenAI conventions (v1.37 on: gen_ai.input.messages,
gen_ai.output.messages, gen_ai.system_instructions, gen_ai.tool.definitions as JSON of
role + parts) when content capture is on (TRACELOOP_TRACE_CONTENT=true).
"""

from __future__ import annotations

import json

import anthropic
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from runtime.inspect.chat import read_request
from runtime.otel.spans import trace_spans
from tests.fakes.anthropic_server import text_reply, tool_use_reply

pytestmark = pytest.mark.usefixtures("no_anthropic_env")

MODEL = "claude-sonnet-4-6"
SYSTEM = "You are a weather assistant."
TOOL = {"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture
def tracing(otlp_receiver):
    """A TracerProvider whose spans the SDK's OTLP/HTTP exporter sends to the receiver."""
    provider = TracerProvider(resource=Resource({"service.name": "weather-agent"}))
    exporter = OTLPSpanExporter(endpoint=otlp_receiver.url, headers=otlp_receiver.headers)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def instrumented(tracing, monkeypatch):
    monkeypatch.setenv("TRACELOOP_TRACE_CONTENT", "true")
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=tracing)
    yield tracing
    instrumentor.uninstrument()


def _agent_run(provider, server):
    """Two calls of a weather agent under one agent span, the tool run between them."""
    client = anthropic.Anthropic(api_key="sk-ant-test", base_url=server.base_url, max_retries=0)
    server.enqueue(tool_use_reply("toolu_1", "get_weather", {"city": "Paris"},
                                  text="Let me check.", usage=(120, 20, 0, 100)),
                   text_reply("It is sunny in Paris.", usage=(30, 9, 100, 0)))  # fmt: skip
    tracer = provider.get_tracer("weather-agent")
    with tracer.start_as_current_span("invoke_agent weather") as agent:
        first = client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=[TOOL],
                                       messages=[QUESTION])  # fmt: skip
        with tracer.start_as_current_span("execute_tool get_weather"):
            result = "sunny, 21C"
        history = [QUESTION, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                 "content": result}]}]  # fmt: skip
        client.messages.create(model=MODEL, max_tokens=256, system=SYSTEM, tools=[TOOL],
                               messages=history)  # fmt: skip
    client.close()
    return f"{agent.get_span_context().trace_id:032x}"


def test_openllmetry_spans_of_the_anthropic_client_become_turns(instrumented, model_server,
                                                               otlp_receiver):  # fmt: skip
    session = _agent_run(instrumented, model_server)
    store, traces = otlp_receiver.store, otlp_receiver.traces
    assert [s.session for s in store.sessions()] == [session]  # no conversation id: the trace
    first, second = (traces.get(c) for _, c in traces.turns(session))
    assert first.config["otlp"]["convention"] == "current"
    request = read_request(traces.stored_trace(second.call_id).request)
    assert [t.name for t in request.tools] == ["get_weather"]
    roles = [(m.role, [p.kind.value for p in m.parts]) for m in request.messages]
    assert roles == [("system", ["text"]), ("user", ["text"]), ("assistant", ["text", "tool_use"]),
                     ("tool", ["tool_result"])]  # fmt: skip
    assert request.messages[0].parts[0].text == SYSTEM
    assert json.loads(request.messages[2].parts[1].text) == {"city": "Paris"}
    assert request.messages[3].parts[0].text == "sunny, 21C"
    assert second.response["content"] == "It is sunny in Paris."
    # The fake server's usage, cache writes and reads included, as the API reported it.
    assert (first.usage.input_tokens, first.usage.output_tokens) == (120, 20)
    assert first.usage.cache_creation_input_tokens == 100
    assert (second.usage.input_tokens, second.usage.cache_read_input_tokens) == (30, 100)
    assert first.model == MODEL and first.config["otlp"]["service"] == "weather-agent"
    rows = store.kv.read(lambda t: trace_spans(t, session))
    assert sorted(r["name"] for r in rows) == sorted(
        ["invoke_agent weather", "execute_tool get_weather", "anthropic.chat", "anthropic.chat"]
    )


def test_the_plain_sdk_exporter_sends_hand_made_genai_spans(tracing, otlp_receiver):
    tracer = tracing.get_tracer("hand-made")
    messages = [{"role": "user", "parts": [{"type": "text", "content": "Hello?"}]}]
    output = [{"role": "assistant", "finish_reason": "stop",
               "parts": [{"type": "text", "content": "Hello."}]}]  # fmt: skip
    with tracer.start_as_current_span("chat m", attributes={
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
        "gen_ai.provider.name": "openai", "gen_ai.conversation.id": "hand-1",
        "gen_ai.input.messages": json.dumps(messages), "gen_ai.output.messages": json.dumps(output),
        "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 2,
    }):  # fmt: skip
        pass
    traces = otlp_receiver.traces
    (record,) = (traces.get(c) for _, c in traces.turns("hand-1"))
    assert record.response["content"] == "Hello." and record.usage.input_tokens == 5
