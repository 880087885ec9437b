"""Exporting sessions as GenAI spans with the OpenTelemetry SDK, round trip through our receiver."""

from __future__ import annotations

import json

import pytest

from runtime.agent.core import Agent
from runtime.inspect.chat import read_request
from runtime.otel.export import ExportFailed, export_sessions, sdk_spans
from runtime.otel.outgoing import derived_id, session_spans
from runtime.otel.spans import trace_spans
from runtime.providers import OfflineModel
from runtime.transfer.importer import DEMO_DIR, import_file

pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def source(stores, tmp_path):
    """Two imported tau-bench sessions (OpenAI chat) and one of the sample agent (Anthropic)."""
    store, traces = stores
    sessions = json.loads((DEMO_DIR / "sessions.json").read_text())[:2]
    (tmp_path / "two.json").write_text(json.dumps(sessions))
    import_file(store, traces, tmp_path / "two.json", tools_path=DEMO_DIR / "tools.json")
    agent = Agent(store, traces, OfflineModel(), session="agent-1")
    agent.say("What is 12 * 7?")
    return store, traces


def _chat(raw):
    """A request as messages, whatever its provider's shape: system texts, parts, tools."""
    req = read_request(raw)
    system = [p.text for p in req.system] + [
        p.text for m in req.messages if m.role == "system" for p in m.parts
    ]
    parts = [(p.kind.value, json.loads(p.text) if p.kind == "tool_use" else p.text, p.name, p.ref)
             for m in req.messages if m.role != "system" for p in m.parts]  # fmt: skip
    return system, parts, sorted((t.name, json.loads(t.schema)) for t in req.tools)


def _turns(traces, session):
    """What a turn is, as a reader sees it: messages, tools, output, usage, model."""
    out = []
    for _, call_id in traces.turns(session):
        record = traces.get(call_id)
        output = _chat(json.dumps({"messages": [record.response]}).encode())[1]
        out.append({"chat": _chat(traces.stored_trace(call_id).request), "output": output,
                    "usage": record.usage, "model": record.model,
                    "stop": record.stop_reason})  # fmt: skip
    return out


def _blocks(traces, session):
    return [
        [s["block_id"] for s in traces.get(c).plan["selected"]] for _, c in traces.turns(session)
    ]


def test_a_round_trip_through_our_receiver_gives_back_the_same_turns(source, otlp_receiver):
    store, traces = source
    sessions = sorted(s.session for s in store.sessions())
    lines: list[str] = []
    report = export_sessions(traces, sessions, otlp_receiver.url, headers=otlp_receiver.headers,
                             progress=lines.append)  # fmt: skip
    assert report.sessions == tuple(sessions) and len(lines) == 3 and "spans sent to" in lines[0]
    back = otlp_receiver
    assert sorted(s.session for s in back.store.sessions()) == sessions
    for session in sessions:
        assert _turns(back.traces, session) == _turns(traces, session), session
    for session in sessions[1:]:  # imported ones: the importer and ingest make the same blocks
        assert _blocks(back.traces, session) == _blocks(traces, session)
    agent = _turns(back.traces, "agent-1")
    assert agent[0]["usage"].output_tokens > 0 and agent[0]["usage"].input_tokens > 0
    assert [name for name, _ in agent[0]["chat"][2]] == ["calculator", "lookup_user_profile"]
    assert agent[1]["chat"][1][-1][0] == "tool_result"


def test_exported_spans_carry_our_namespaced_attributes_and_the_record_times(source, otlp_receiver):
    _, traces = source
    export_sessions(traces, ["agent-1"], otlp_receiver.url, headers=otlp_receiver.headers)
    first = traces.get(traces.turns("agent-1")[0][1])
    trace_hex = f"{derived_id('trace', 'agent-1', 16):032x}"
    rows = otlp_receiver.store.kv.read(lambda t: trace_spans(t, trace_hex))
    chat = next(r for r in rows if r["span"] == f"{derived_id('span', first.call_id, 8):016x}")
    attrs = chat["attributes"]
    assert attrs["llm386.prompt.sha256"] == first.prompt_hash
    assert (
        attrs["llm386.fidelity"] == "replay-complete" and attrs["llm386.call_id"] == first.call_id
    )
    assert attrs["llm386.block.ids"] == [s["block_id"] for s in first.plan["selected"]]
    assert any(k.startswith("llm386.section.") for k in attrs)
    assert chat["start"] == first.started_at * 1_000_000
    assert chat["parent"] == f"{derived_id('agent', 'agent-1', 8):016x}"


def test_the_same_session_gives_the_same_spans_every_time(source):
    _, traces = source
    once, twice = (sdk_spans(session_spans(traces, "agent-1")) for _ in range(2))
    ids = [(s.context.trace_id, s.context.span_id, s.start_time, s.end_time) for s in once]
    assert ids == [(s.context.trace_id, s.context.span_id, s.start_time, s.end_time) for s in twice]
    assert [dict(s.attributes) for s in once] == [dict(s.attributes) for s in twice]
    assert once[-1].name == "invoke_agent agent-1"  # the agent ends last, after its chats


def test_a_collector_that_refuses_names_its_url_and_status(source, otlp_receiver):
    _, traces = source
    with pytest.raises(ExportFailed, match=r"collector at http://127\.0\.0\.1:\d+/v1/traces.*401"):
        export_sessions(traces, ["agent-1"], otlp_receiver.url, headers={"Authorization": "x"})
    assert otlp_receiver.store.sessions() == []


def test_an_unreachable_collector_fails_with_its_url_after_the_timeout(source):
    _, traces = source
    with pytest.raises(
        ExportFailed,
        match=r"collector at http://127\.0\.0\.1:9/v1/traces.*cannot connect to 127.0.0.1:9",
    ):
        export_sessions(traces, ["agent-1"], "http://127.0.0.1:9/v1/traces", timeout=0.5)


def _agent_session(store, session):
    """An offline sample-agent session in ``store`` (the one the ``run`` fixture's CLI opens)."""
    from runtime.storage.tracestore import KvTraceStore

    Agent(store, KvTraceStore(store), OfflineModel(), session=session).say("What is 2 + 2?")


def test_the_cli_exports_with_progress_and_fails_cleanly(run, otlp_receiver, store):
    _agent_session(store, "cli-1")
    header = f"Authorization={otlp_receiver.headers['Authorization']}"
    code, out, err = run("export", "--otlp", otlp_receiver.url, "--header", header, "cli-1")
    assert code == 0, err
    assert f"to {otlp_receiver.url}" in out and "[1/1] cli-1" in err
    assert [s.session for s in otlp_receiver.store.sessions()] == ["cli-1"]
    code, _, err = run("export", "--otlp", "http://127.0.0.1:9/v1/traces", "--timeout", "0.3",
                       "cli-1")  # fmt: skip
    assert code == 2 and "http://127.0.0.1:9/v1/traces" in err and "Traceback" not in err
    code, _, err = run("export", "--otlp", otlp_receiver.url, "cli-1")  # no token: 401
    assert code == 2 and "401" in err and "Traceback" not in err
    code, _, err = run("export", "cli-1", "--otlp")  # no URL given, none configured
    assert code == 2 and "[otel] export_url" in err
    code, _, err = run("export", "--otlp", "cli-1")  # a session where the URL goes
    assert code == 2 and "'cli-1' is not an OTLP/HTTP URL" in err


def test_the_cli_takes_the_url_from_llm386_toml(run, otlp_receiver, tmp_path, store):
    (tmp_path / "llm386.toml").write_text(f'[otel]\nexport_url = "{otlp_receiver.url}"\n')
    _agent_session(store, "cli-2")
    header = f"Authorization={otlp_receiver.headers['Authorization']}"
    code, _, err = run("export", "cli-2", "--header", header, "--otlp")
    assert code == 0, err
    assert [s.session for s in otlp_receiver.store.sessions()] == ["cli-2"]
