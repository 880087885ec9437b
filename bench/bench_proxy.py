"""Capture proxy speed: the same calls direct and through ``llm386 proxy``, in one run.

Targets (issue 12): added latency p50 <= 2 ms for a non-streaming call; added time to first
token p50 <= 2 ms for a stream; 200 concurrent streams with no error; recording keeps up with
500 calls/s of 10 KB requests.

Set-up: a loopback fake Anthropic upstream (tests.fakes.anthropic_server) in this process; the
proxy in its own process (``llm386 proxy``, as a user runs it) recording into a
fresh store; one keep-alive httpx2 client per path. Direct and proxied calls alternate, so
both see the same machine load. Recording throughput is the recorder's writer alone (the
proxy's HTTP path never waits for it): 10 KB requests in growing sessions, submitted as fast
as possible, timed until all are durable; once with the writer as a thread of this process,
and once as a process of its own, as ``llm386 proxy`` runs it (the target's figure).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

from bench.common import percentile, write_result
from runtime import open_store
from runtime.proxy.apis import ROUTES
from runtime.proxy.exchange import Exchange
from runtime.proxy.recorder import Recorder
from runtime.storage.tracestore import KvTraceStore
from tests.fakes.anthropic_server import AnthropicServer

RUNS = int(os.environ.get("LLM386_BENCH_PROXY_RUNS", "400"))
CONCURRENT = 200
RECORD_CALLS = int(os.environ.get("LLM386_BENCH_PROXY_RECORDS", "3000"))
SESSIONS = 100  # the recording workload's agents, each call extending its own history
BODY = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 64,
                   "messages": [{"role": "user", "content": "What is 2 + 2?"}]}).encode()  # fmt: skip
STREAM_BODY = json.dumps({**json.loads(BODY), "stream": True}).encode()
HEADERS = {"content-type": "application/json", "x-api-key": "sk-bench",
           "anthropic-version": "2023-06-01"}  # fmt: skip


def _start_proxy(store: Path, upstream: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-c", "from runtime.cli import main; raise SystemExit(main())",
           "--store", str(store), "proxy", "--port",
           str(port), "--anthropic-upstream", upstream]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx2.get(url + "/llm386/status", timeout=1)
            return proc, url
        except httpx2.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the proxy did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _latency(client: httpx2.Client, body: bytes) -> float:
    start = time.perf_counter()
    response = client.post("/v1/messages", content=body, headers=HEADERS)
    response.read()
    assert response.status_code == 200
    return (time.perf_counter() - start) * 1000


def _ttft(client: httpx2.Client) -> float:
    start = time.perf_counter()
    with client.stream("POST", "/v1/messages", content=STREAM_BODY, headers=HEADERS) as response:
        first = 0.0
        for chunk in response.iter_raw():
            if not first and b"content_block_delta" in chunk:
                first = (time.perf_counter() - start) * 1000
        assert response.status_code == 200
    return first


def _paired(direct: httpx2.Client, proxied: httpx2.Client, measure: Any) -> dict[str, Any]:
    for _ in range(20):  # warm both connections and the proxy's pool
        measure(direct), measure(proxied)
    a, b = [], []
    for _ in range(RUNS):
        a.append(measure(direct))
        b.append(measure(proxied))
    direct_p50, proxied_p50 = percentile(a, 50), percentile(b, 50)
    return {"direct_p50_ms": round(direct_p50, 3), "proxied_p50_ms": round(proxied_p50, 3),
            "direct_p99_ms": round(percentile(a, 99), 3), "proxied_p99_ms": round(percentile(b, 99), 3),
            "added_p50_ms": round(proxied_p50 - direct_p50, 3), "runs": RUNS}  # fmt: skip


async def _concurrent(url: str) -> dict[str, Any]:
    limits = httpx2.Limits(max_connections=CONCURRENT + 10)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one() -> bool:
            try:
                async with client.stream("POST", "/v1/messages", content=STREAM_BODY,
                                         headers=HEADERS) as response:  # fmt: skip
                    body = b"".join([c async for c in response.aiter_raw()])
                return response.status_code == 200 and body.endswith(b'"message_stop"}\n\n')
            except httpx2.HTTPError:
                return False

        start = time.perf_counter()
        results = await asyncio.gather(*(one() for _ in range(CONCURRENT)))
        return {"streams": CONCURRENT, "errors": results.count(False),
                "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip


SYSTEM = (
    "You are a careful coding agent. "
    + "Follow the house rules and cite the files you read. " * 150
)


def _request_10kb(session: int, turn: int) -> bytes:
    """A call of a long-running agent: the same ~8 KB system prompt every call, and a history
    that grows by one reply and one user message per turn (about 10 KB in all)."""
    messages: list[dict[str, Any]] = []
    for n in range(turn + 1):
        messages.append({"role": "user", "content": f"session {session} step {n}: " + "y" * 40})
        if n < turn:
            messages.append({"role": "assistant", "content": f"done step {n} " + "z" * 40})
    return json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 256, "system": SYSTEM,
                       "messages": messages}).encode()  # fmt: skip


def _exchanges() -> list[Exchange]:
    api = ROUTES["/v1/messages"]
    reply = b'{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":2500,"output_tokens":3}}'
    sessions = SESSIONS
    exchanges = []
    for i in range(RECORD_CALLS):
        body = _request_10kb(i % sessions, i // sessions)
        exchanges.append(Exchange(api, "/v1/messages", "http://upstream/v1/messages",
                                  int(time.time() * 1000), body, (("content-type", "application/json"),),
                                  status=200, response_headers=(("content-type", "application/json"),),
                                  response_body=reply, ttfb_ms=1.0, total_ms=1.0))  # fmt: skip
    return exchanges


def _recorder(path: Path, process: bool) -> Recorder:
    store = open_store(path)
    recorder = Recorder(store, KvTraceStore(store), capacity=RECORD_CALLS + 10,
                        process=path if process else None).start()  # fmt: skip
    recorder.wait_ready()
    return recorder


def _recording(tmp: Path, *, process: bool = False) -> dict[str, Any]:
    where = "a writer process" if process else "a writer thread"
    print(f"bench_proxy: recording {RECORD_CALLS} calls of ~10 KB with {where}", file=sys.stderr,
          flush=True)  # fmt: skip
    recorder = _recorder(tmp / ("recording-process" if process else "recording"), process)
    store = recorder.store
    exchanges = _exchanges()
    sizes = [len(e.request_body) for e in exchanges]
    start = time.perf_counter()
    for exchange in exchanges:
        assert recorder.submit(exchange)
    assert recorder.flush(600)
    seconds = time.perf_counter() - start
    # The writer's own CPU time (its thread's, or its process's, as it reports per batch): the
    # rate it would keep on a core of its own, whatever else the machine is running.
    cpu_seconds = recorder.cpu_seconds
    status = recorder.status()
    recorder.close()
    store.close()
    return {"calls": RECORD_CALLS, "mean_request_bytes": round(sum(sizes) / len(sizes)),
            "sessions": SESSIONS, "seconds": round(seconds, 3),
            "calls_per_second": round(RECORD_CALLS / seconds, 1), "cpu_seconds": round(cpu_seconds, 3),
            "calls_per_cpu_second": round(RECORD_CALLS / cpu_seconds, 1), "lost": status["lost"],
            "recorded": status["recorded"]}  # fmt: skip


def _paced(tmp: Path, rate: float = 500.0) -> dict[str, Any]:
    """Offer the writer process the calls at ``rate`` a second, as a busy agent fleet would;
    return how far behind it fell: the deepest queue, and the wait after the last call until
    every call was durable."""
    print(f"bench_proxy: {RECORD_CALLS} calls offered at {rate:.0f}/s to a writer process",
          file=sys.stderr, flush=True)  # fmt: skip
    recorder = _recorder(tmp / "recording-paced", True)
    deepest, start = 0, time.perf_counter()
    for i, exchange in enumerate(_exchanges()):
        pause = start + i / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        assert recorder.submit(exchange)
        deepest = max(deepest, recorder.status()["queue"]) if i % 50 == 0 else deepest
    offered = time.perf_counter()
    assert recorder.flush(600)
    done = time.perf_counter()
    status = recorder.status()
    recorder.close()
    recorder.store.close()
    return {"calls": RECORD_CALLS, "offered_per_second": rate,
            "achieved_per_second": round(RECORD_CALLS / (done - start), 1),
            "lag_after_last_call_s": round(done - offered, 3), "deepest_queue": deepest,
            "lost": status["lost"], "recorded": status["recorded"]}  # fmt: skip


def _settled_status(url: str) -> dict[str, Any]:
    """Return the proxy's status once every call is written (or 60 s have passed)."""
    deadline = time.monotonic() + 60
    while True:
        status: dict[str, Any] = httpx2.get(url + "/llm386/status").json()
        done = status["in_flight"] == 0 and status["queue"] == 0
        if done and status["recorded"] + status["lost"] == status["calls"]:
            return status
        if time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def main(out_dir: Path) -> dict[str, Any]:
    """Measure the proxy's added latency, TTFT, concurrency and recording rate; write proxy.json."""
    with tempfile.TemporaryDirectory() as tmp, AnthropicServer(max_lifetime=1200) as up:
        proc, url = _start_proxy(Path(tmp) / "store", up.base_url)
        try:
            with (
                httpx2.Client(base_url=up.base_url) as direct,
                httpx2.Client(base_url=url) as proxied,
            ):
                print("bench_proxy: non-streaming, direct and proxied", file=sys.stderr, flush=True)
                latency = _paired(direct, proxied, lambda c: _latency(c, BODY))
                print("bench_proxy: streams, time to first token", file=sys.stderr, flush=True)
                up.enqueue()  # streams use the fake's default streamed echo
                ttft = _paired(direct, proxied, _ttft)
            print(f"bench_proxy: {CONCURRENT} concurrent streams", file=sys.stderr, flush=True)
            concurrent = asyncio.run(_concurrent(url))
            status = _settled_status(url)
            assert status["lost"] == 0 and status["recorded"] == status["calls"], status
        finally:
            proc.terminate()
            proc.wait(30)
        recording = _recording(Path(tmp))
        in_process = _recording(Path(tmp), process=True)
        paced = _paced(Path(tmp))
    result = {
        "non_streaming": latency, "streaming_ttft": ttft, "concurrent_streams": concurrent,
        "recording": recording, "recording_process": in_process, "recording_paced": paced,
        "proxy_status_after": status,
        "targets": {
            "added_latency_p50_ms": {"target": 2.0, "value": latency["added_p50_ms"],
                                     "met": latency["added_p50_ms"] <= 2.0},
            "added_ttft_p50_ms": {"target": 2.0, "value": ttft["added_p50_ms"],
                                  "met": ttft["added_p50_ms"] <= 2.0},
            "concurrent_stream_errors": {"target": 0, "value": concurrent["errors"],
                                         "met": concurrent["errors"] == 0},
            "recording_calls_per_second": {"target": 500,
                                           "value": in_process["calls_per_second"],
                                           "met": in_process["calls_per_second"] >= 500},
        },
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "note": "proxy in its own process; fake upstream and clients in the bench process, "
        "all on loopback; added = proxied p50 minus direct p50 of alternating calls",
    }  # fmt: skip
    return write_result(out_dir, "proxy", result)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results")
