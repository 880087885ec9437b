"""Ingesting OTLP GenAI spans: spans per second into a fresh LMDB store (issue 13).

Each tau-bench airline session becomes the trace an instrumented agent would export: an
``invoke_agent`` span over one ``chat`` span per assistant message (current GenAI conventions:
the whole history so far in ``gen_ai.input.messages``, the tool definitions, usage) and one
``execute_tool`` span per tool call. Each trace is one ``ExportTraceServiceRequest`` (what
the SDK's batch processor sends). Two ways, each into a fresh LMDB store:

- the target's figure, 2 cores: ``EXPORTERS`` concurrent senders through the receiver
  (``runtime.otel.receiver.handle``: token check, decode, write) with one prepare worker
  process (``runtime.otel.workers``), as the web app and the proxy run it;
- one exporter, one core: ``runtime.otel.ingest.ingest`` called for one request after the
  other in this process (the figures of the earlier rounds).

Each figure is spans over the wall time of all requests.

    python -m bench.bench_otel [out_dir] [--sessions N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common import results_dir, write_result
from bench.taudata import TAU_SESSIONS, TAU_TOOLS, transcripts
from runtime.transfer.importer import call_arguments
from runtime.transfer.transcripts import message_text, read_tools
from tests.fakes import otlp

TARGET_SPANS_PER_S = 2000
EXPORTERS = 8  # agents exporting at once to one receiver
WORKERS = 1  # prepare workers: with the receiver's process, 2 cores
MS = 1_000_000  # ns


def _parts(message: Mapping[str, Any]) -> dict[str, Any]:
    """Return a tau-bench (OpenAI chat) message as a GenAI convention message."""
    role, text = message["role"], message_text(message)
    parts: list[dict[str, Any]] = [{"type": "text", "content": text}] if text else []
    if role == "tool":
        parts = [{"type": "tool_call_response", "id": message["tool_call_id"], "response": text}]
    for call in message.get("tool_calls") or ():
        fn = call["function"]
        parts.append({"type": "tool_call", "id": call["id"], "name": fn["name"],
                      "arguments": call_arguments(fn["arguments"])})  # fmt: skip
    return {"role": role, "parts": parts}


def trace_of(index: int, traj: Sequence[Mapping[str, Any]], tools: str) -> list[Any]:
    """Return the spans an instrumented agent would export for one tau-bench conversation."""
    trace = index.to_bytes(16, "big")
    system = [m for m in traj if m["role"] == "system"]
    history = [_parts(m) for m in traj if m["role"] != "system"]
    instructions = json.dumps([{"type": "text", "content": message_text(m)} for m in system])
    spans, n, clock = [], 2, 0
    for i, message in enumerate(history):
        if message["role"] != "assistant" or not message["parts"]:
            continue
        attributes = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o", "gen_ai.conversation.id": f"tau-otel-{index}",
            "gen_ai.system_instructions": instructions,
            "gen_ai.input.messages": json.dumps(history[:i]),
            "gen_ai.output.messages": json.dumps([message | {"finish_reason": "stop"}]),
            "gen_ai.tool.definitions": tools,
            "gen_ai.usage.input_tokens": 1000 + 50 * i, "gen_ai.usage.output_tokens": 40,
        }  # fmt: skip
        spans.append(otlp.span(n, "chat gpt-4o", attributes, parent=1, trace=trace,
                               start_ms=clock, end_ms=clock + 300))  # fmt: skip
        n, clock = n + 1, clock + 310
        for part in message["parts"]:
            if part["type"] == "tool_call":
                spans.append(otlp.span(n, f"execute_tool {part['name']}", {
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": part["name"],
                    "gen_ai.tool.call.id": part["id"]}, parent=1, trace=trace,
                    start_ms=clock, end_ms=clock + 20))  # fmt: skip
                n, clock = n + 1, clock + 25
    root = otlp.span(1, "invoke_agent airline", {"gen_ai.operation.name": "invoke_agent",
                     "gen_ai.agent.name": "airline"}, trace=trace, end_ms=clock)  # fmt: skip
    return [root, *spans]


def bodies(count: int | None) -> list[tuple[bytes, int, int]]:
    """Return (protobuf body, spans, model-call spans) per tau-bench session."""
    tools = json.dumps([dict(t.openai) for t in read_tools(TAU_TOOLS.read_bytes(), TAU_TOOLS.name)])
    out = []
    for i, t in enumerate(transcripts(TAU_SESSIONS)[:count], start=1):
        spans = trace_of(i, t.messages, tools)
        calls = sum(1 for s in spans if s.name.startswith("chat"))
        out.append((otlp.body(otlp.request(*spans, service="tau-airline")), len(spans), calls))
    return out


def measure(tmp: Path, count: int | None, profile: bool) -> dict[str, Any]:
    """Ingest every session's request into a fresh store; return the rates."""
    from runtime import open_store
    from runtime.otel.ingest import ingest
    from runtime.otel.wire import PROTOBUF
    from runtime.storage.tracestore import KvTraceStore
    from runtime.tokenizers import forget_counts, get_tokenizer
    from runtime.transfer.importer import TOKENIZER

    requests = bodies(count)
    store = open_store(tmp / "store")
    for name in sorted({TOKENIZER, *store.tokenizers}):  # loaded once per process: a receiver that
        get_tokenizer(name)  # has served has them (the store counts every block in each)
    traces = KvTraceStore(store)
    profiler = cProfile.Profile() if profile else None
    load_before = os.getloadavg()
    turns, start, cpu = 0, time.perf_counter(), time.process_time()
    for done, (body, _, _) in enumerate(requests, start=1):
        if profiler:
            profiler.enable()
        result = ingest(body, PROTOBUF, None, store, traces)
        if profiler:
            profiler.disable()
        assert result.rejected == 0, result.message
        turns += result.turns_recorded
        if done % 20 == 0:
            print(f"  {done}/{len(requests)} requests ingested", flush=True)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu  # steadier than wall time on a machine shared with others
    load_after = os.getloadavg()
    store.close()
    if profiler:
        for order in ("tottime", "cumulative"):
            pstats.Stats(profiler).sort_stats(order).print_stats(40)
    spans, calls = sum(r[1] for r in requests), sum(r[2] for r in requests)
    if profile:
        return {"one_exporter_spans_per_s": round(spans / seconds)}
    forget_counts()  # the receiver's run counts its blocks afresh, as a new server would
    receiver = measure_receiver(tmp, count, EXPORTERS, WORKERS)
    rate = receiver["spans_per_s"]
    return {
        "requests": len(requests), "spans": spans, "model_call_spans": calls, "turns": turns,
        "body_mb": round(sum(len(r[0]) for r in requests) / 1e6, 1),
        "spans_per_s": rate, "receiver": receiver,
        "seconds": round(seconds, 2), "one_exporter_spans_per_s": round(spans / seconds),
        "model_calls_per_s": round(calls / seconds),
        "cpu_seconds": round(cpu, 2), "spans_per_cpu_s": round(spans / cpu),
        "target_spans_per_s": TARGET_SPANS_PER_S, "met": rate >= TARGET_SPANS_PER_S,
        "cores": os.cpu_count(), **machine_load(load_before, load_after, seconds, cpu),
        "note": "tau-bench airline sessions as current-convention GenAI spans, one request per trace, LMDB",
    }  # fmt: skip


def measure_receiver(tmp: Path, count: int | None, exporters: int, workers: int) -> dict[str, Any]:
    """Serve every session's request to ``exporters`` concurrent senders through the receiver
    (``runtime.otel.receiver.handle``: token check, decode, write), its bodies prepared by
    ``workers`` worker processes; return the rates over the wall time of all requests."""
    import queue
    import threading

    from runtime import open_store
    from runtime.otel import receiver, tokens
    from runtime.otel.ingest import preparing_for
    from runtime.otel.wire import PROTOBUF
    from runtime.otel.workers import Preparer
    from runtime.storage.tracestore import KvTraceStore
    from runtime.tokenizers import get_tokenizer

    requests = bodies(count)
    store = open_store(tmp / "store-receiver")
    names = preparing_for(store)["tokenizers"]
    for name in names:
        get_tokenizer(name)
    traces = KvTraceStore(store)
    headers = {"content-type": PROTOBUF,
               "authorization": f"Bearer {tokens.create_token(store.kv, 'bench')}"}  # fmt: skip
    preparer = Preparer(workers, names).start()  # started, tokenizers loaded: not timed
    todo: queue.Queue[bytes] = queue.Queue()
    for body, _, _ in requests:
        todo.put(body)
    failures: list[str] = []
    done = [0]

    def export() -> None:
        while True:
            try:
                body = todo.get_nowait()
            except queue.Empty:
                return
            status, _, out = receiver.handle("POST", receiver.PATH, headers, body, store=store,
                                             traces=traces, preparer=preparer)  # fmt: skip
            if status != 200:
                failures.append(f"{status}: {out[:200]!r}")
            done[0] += 1
            if done[0] % 20 == 0:
                print(f"  {done[0]}/{len(requests)} requests served", flush=True)

    senders = [threading.Thread(target=export) for _ in range(exporters)]
    start, cpu = time.perf_counter(), time.process_time()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    preparer.close()
    store.close()
    assert not failures, failures[:3]
    spans = sum(r[1] for r in requests)
    return {"exporters": exporters, "prepare_workers": workers, "seconds": round(seconds, 2),
            "spans_per_s": round(spans / seconds), "receiver_process_cpu_seconds": round(cpu, 2)}  # fmt: skip


def machine_load(
    before: tuple[float, float, float], after: tuple[float, float, float], wall: float, cpu: float
) -> dict[str, Any]:
    """Say whether other work shared the machine: the 1-minute load average just before the run
    (this process adds little to it in a few seconds) of half a core or more; and how much of
    the wall time this process had the CPU for (the rest: waiting for a core, or for commits)."""
    return {"load_average_before": [round(x, 2) for x in before],
            "load_average_after": [round(x, 2) for x in after],
            "machine_loaded": before[0] >= 0.5, "cpu_share_of_wall": round(cpu / wall, 2)}  # fmt: skip


def main(out_dir: Path | None = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=None)
    parser.add_argument("--sessions", type=int, default=None, help="only the first N sessions")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of ingest")
    args = parser.parse_args(argv if argv is not None else [])
    out = out_dir or args.out or results_dir()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp), args.sessions, args.profile)
    if args.sessions is not None or args.profile:
        print(json.dumps(result, indent=2))  # a partial or profiled run is not the result
        return result
    return write_result(out, "otel", result)


if __name__ == "__main__":
    import sys

    main(argv=sys.argv[1:])
