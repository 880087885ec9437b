"""Replay overhead and re-page time on realistic turns.

Turns measured:
- tau-bench: the largest turn of the shipped GPT-4o airline runs, re-paged for
  claude-sonnet-4-6 and recorded (an Anthropic request of tens of KB, 14 tool definitions);
- agent: the last call of a 30-message sample-agent conversation made with the offline model
  (tool calls and results included).

Replay against the loopback Messages API server (tests/fakes/anthropic_server.py), per run:
``total`` is the wall time of ``replay()``; ``send`` is the adapter's own latency for the call
(SDK, HTTP and the server's answer); ``overhead = total - send`` is what replay adds: loading the
record and its bytes, re-hashing them, recording the new trace, and diffing the outputs. A bare
``AnthropicAdapter.send`` of the same bytes is timed as the baseline.
Re-page: ``repage()`` with the recorded profile (page + pack + compare), warm caches.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import percentile, results_dir, time_calls, write_result
from runtime import open_store
from runtime.agent.core import Agent
from runtime.providers import AnthropicAdapter, OfflineModel
from runtime.replay.repage import repage
from runtime.replay.resend import replay
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import TraceStore
from runtime.transfer.importer import load_demo_sessions
from tests.fakes.anthropic_server import AnthropicServer, text_reply

RUNS = 60
KEY = "sk-ant-bench-not-a-real-key"
AGENT_MESSAGES = tuple(
    m
    for n in range(10)
    for m in (f"What is {n + 3} * {n + 17}?", f"Who is user u-100{1 + n % 3}?", f"Thanks ({n}).")
)


def _largest_tau_turn(store: Any, traces: TraceStore) -> str:
    report = load_demo_sessions(store, traces)
    best = max(
        (traces.get(cid) for session in report.sessions for _, cid in traces.turns(session)),
        key=lambda r: r.request_size,
    )
    moved = repage(store, traces, best.call_id, profile="claude-sonnet-4-6", record=True)
    assert moved.record is not None
    return moved.record.call_id


def _agent_turn(store: Any, traces: TraceStore) -> str:
    agent = Agent(store, traces, OfflineModel(), session="bench-agent")
    for message in AGENT_MESSAGES:
        reply = agent.say(message)
    return reply.call_ids[-1]


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 50), 3),
        "p99_ms": round(percentile(samples, 99), 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


def _replay_http(traces: TraceStore, call_id: str, server: AnthropicServer) -> dict[str, Any]:
    totals, sends, overheads = [], [], []
    with AnthropicAdapter(api_key=KEY, base_url=server.base_url) as client:
        for _ in range(RUNS):
            server.enqueue(text_reply("replayed answer"))
            started = time.perf_counter()
            result = replay(traces, call_id, client)
            total = (time.perf_counter() - started) * 1000
            assert result.bytes_matched and result.record.latency_ms is not None
            totals.append(total)
            sends.append(result.record.latency_ms)
            overheads.append(total - result.record.latency_ms)
        request = traces.request_bytes(traces.get(call_id).prompt_hash)
        assert request is not None and server.requests[-1].body == request

        def bare() -> None:
            server.enqueue(text_reply("replayed answer"))
            client.send(request, expected_sha256=None)

        baseline = time_calls(bare, RUNS)
    return {
        "request_bytes": len(request),
        "replay_total": _stats(totals),
        "adapter_send_in_replay": _stats(sends),
        "replay_overhead": _stats(overheads),
        "bare_adapter_send": baseline,
    }


def _turn(store: Any, traces: TraceStore, call_id: str, server: AnthropicServer) -> dict[str, Any]:
    record = traces.get(call_id)
    check = repage(store, traces, call_id)
    assert check.hash_matches, check.explanation
    result = _replay_http(traces, call_id, server)
    result["offline_replay"] = time_calls(lambda: replay(traces, call_id, OfflineModel()), RUNS)
    result["repage"] = time_calls(lambda: repage(store, traces, call_id), RUNS)
    result["repage_plan"] = {
        "session_entries": record.upto_seq,
        "selected": len(check.plan.selected),
        "omitted": len(check.plan.omitted),
        "planned_tokens": check.plan.tokens,
    }
    return result


def main(out_dir: Path) -> dict[str, Any]:
    """Measure replay overhead and re-page time; write out_dir/replay.json."""
    with tempfile.TemporaryDirectory() as tmp, AnthropicServer(max_lifetime=600) as server:
        store = open_store(Path(tmp) / "store")
        traces = KvTraceStore(store)
        turns = {"tau-bench": _largest_tau_turn(store, traces), "agent": _agent_turn(store, traces)}
        result = {name: _turn(store, traces, cid, server) for name, cid in turns.items()}
    result["runs"] = RUNS
    result["note"] = (
        "replay_overhead = replay() wall time minus the adapter's own latency for the HTTP call; "
        "loopback server on 127.0.0.1"
    )
    return write_result(out_dir, "replay", result)


if __name__ == "__main__":
    main(results_dir())
