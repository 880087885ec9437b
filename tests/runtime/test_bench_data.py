"""The benchmarks read any sessions ``llm386 import`` reads, not only the tau-bench recordings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_otel, bench_proxy_paging, profile_pager
from bench.bench_pager import grow, tasks
from bench.common import DATA_ENV, tau_bench_dir
from bench.taudata import tau_sessions
from runtime.blocks import BlockKind, parse_tool_call
from runtime.errors import MalformedFile

TOOLS = [
    {"type": "function", "function": {"name": "ping", "description": "no parameters"}},
    {"type": "function", "function": {"name": "lookup", "description": "x",
                                      "parameters": {"type": "object", "properties": {}}}},
]  # fmt: skip


def _call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# No system message; arguments empty and not JSON; a tool message without "name"; a call that is
# never answered; unicode; an item without reward, info or trial.
SESSIONS = [
    {"task_id": 1, "trial": 0, "reward": 0.0, "info": {}, "traj": [
        {"role": "user", "content": "ping twice 🚀"},
        {"role": "assistant", "content": None,
         "tool_calls": [_call("p1", "ping", ""), _call("p2", "lookup", "{key: broken")]},
        {"role": "tool", "tool_call_id": "p1", "content": "pong ✓"},
        {"role": "tool", "tool_call_id": "p2", "content": "Error: invalid arguments"},
        {"role": "assistant", "content": "", "tool_calls": [_call("p3", "ping", "{}")]},
    ]},
    {"task_id": 2, "traj": [{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": "hello"}]},
]  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "sessions.json").write_text(json.dumps(SESSIONS, ensure_ascii=False))
    (tmp_path / "tools.json").write_text(json.dumps(TOOLS))
    return tmp_path


def test_tool_arguments_that_are_not_json_are_kept_as_the_importer_keeps_them(data):
    sessions = tau_sessions(data / "sessions.json", data / "tools.json")
    calls = [parse_tool_call(str(b.body)) for b in sessions[0].blocks
             if b.kind == BlockKind.TOOL_CALL]  # fmt: skip
    assert [c.input for c in calls] == ["", "{key: broken", {}]
    assert len(sessions) == 2 and sessions[1].blocks[-1].body == "hello"
    schemas = [json.loads(str(b.body)) for b in sessions[0].blocks
               if b.kind == BlockKind.TOOL_SCHEMA]  # fmt: skip
    assert [s["name"] for s in schemas] == ["ping", "lookup"]


def test_the_pager_benchmark_grows_a_session_from_any_agent(data):
    blocks, edges = grow(data / "sessions.json", data / "tools.json", 60)
    assert len(blocks) == 60 and edges
    assert tasks(blocks)[0] == "ping twice 🚀"


def test_content_as_text_parts_is_read_as_its_text(data, monkeypatch):
    parts = [{"task_id": 1, "traj": [
        {"role": "user", "content": [{"type": "text", "text": "Hello 👋 "},
                                     {"type": "text", "text": "key 42?"}]},
        {"role": "assistant", "content": [], "tool_calls": [_call("c0", "lookup", '{"k": 1}')]},
        {"role": "tool", "tool_call_id": "c0", "content": [{"type": "text", "text": "四十二"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "It is 四十二"}]},
    ]}]  # fmt: skip
    (data / "sessions.json").write_text(json.dumps(parts))
    (session,) = tau_sessions(data / "sessions.json", data / "tools.json")
    bodies = [str(b.body) for b in session.blocks if b.kind != BlockKind.TOOL_SCHEMA]
    assert bodies[0] == "Hello 👋 key 42?" and bodies[-1] == "It is 四十二"
    assert json.loads(bodies[2])["content"] == "四十二"
    assert len(session.edges) == 1
    monkeypatch.setattr(bench_otel, "TAU_SESSIONS", data / "sessions.json")
    monkeypatch.setattr(bench_otel, "TAU_TOOLS", data / "tools.json")
    assert [calls for _b, _s, calls in bench_otel.bodies(None)] == [2]


def test_sessions_the_importer_refuses_are_refused_with_its_message(data):
    image = {"type": "image_url", "image_url": {"url": "data:,"}}
    bad = [{"task_id": 1, "traj": [{"role": "user", "content": [image]}]}]
    (data / "sessions.json").write_text(json.dumps(bad))
    with pytest.raises(MalformedFile, match="message 0.*'image_url', not a text part"):
        tau_sessions(data / "sessions.json", data / "tools.json")


def test_otel_traces_are_built_from_any_checked_session(data, monkeypatch):
    monkeypatch.setattr(bench_otel, "TAU_SESSIONS", data / "sessions.json")
    monkeypatch.setattr(bench_otel, "TAU_TOOLS", data / "tools.json")
    out = bench_otel.bodies(None)
    assert [calls for _body, _spans, calls in out] == [2, 1]


def test_proxy_calls_come_from_checked_sessions(data, monkeypatch):
    opening = {"task_id": 3, "traj": [{"role": "assistant", "content": "Hello, how can I help?"},
                                      {"role": "user", "content": "hi"},
                                      {"role": "assistant", "content": "hi"}]}  # fmt: skip
    (data / "sessions.json").write_text(json.dumps([*SESSIONS, opening]))
    monkeypatch.setattr(bench_proxy_paging, "TAU_SESSIONS", data / "sessions.json")
    calls = bench_proxy_paging._calls(10)
    assert [len(c) for c in calls] == [2, 1, 1]  # an opening assistant message is no call
    assert all(messages for session in calls for messages in session)


def test_one_variable_points_every_benchmark_at_another_folder(data, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(data))
    assert tau_bench_dir() == data
    monkeypatch.delenv(DATA_ENV)
    assert tau_bench_dir() != data


def test_the_pager_profile_writes_into_a_new_folder(data, tmp_path, monkeypatch):
    monkeypatch.setattr(profile_pager, "TAU_SESSIONS", data / "sessions.json")
    monkeypatch.setattr(profile_pager, "TAU_TOOLS", data / "tools.json")
    out = tmp_path / "new" / "results"
    result = profile_pager.main(out, (40,), 2)
    assert (out / result["sizes"][0]["profile"]).is_file() and (
        out / "pager_profile.json"
    ).is_file()
