"""``llm386 proxy --page``: tokens sent upstream against what the agent sent, and what it costs.

Each recorded tau-bench airline session (benchmark input only, read from ../shared/data) is
played through the proxy as its agent sent it: one Chat Completions call (official ``openai``
SDK) per assistant turn, carrying the messages before it and the session's tools. Three proxies
run in this process in front of one loopback fake OpenAI upstream that records the raw bytes it
gets: one unpaged, and two fresh ones with ``--page default`` (its own store each), so the same
calls are sent unpaged and paged, alternating, in one run.

Figures: cumulative input tokens (o200k over the request bodies) the agent sent and the
upstream received; the share of upstream requests whose bytes are identical from the two fresh
paged proxies; the added p50 latency of a paged call against an unpaged one. Nothing here
answers ``recall`` (the fake upstream never calls it), so misses are not measured here: that is
the paging benchmark's job.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx2
import openai

from bench.common import percentile, write_result
from bench.taudata import TAU_SESSIONS, TAU_TOOLS
from runtime import open_store
from runtime.progress import Progress
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.proxy.pager import PageSettings
from runtime.storage.tracestore import KvTraceStore
from runtime.tokenizers import get_tokenizer
from tests.fakes.openai_server import OpenAIServer

SESSIONS = int(os.environ.get("LLM386_BENCH_PROXY_PAGING_SESSIONS", "20"))
TOKEN_CUT_TARGET = 0.30  # issue 15: cumulative uncached input tokens at least 30% below full


@contextmanager
def _proxy(root: Path, upstream: str, page: PageSettings | None) -> Iterator[str]:
    store = open_store(root)
    recorder = Recorder(store, KvTraceStore(store)).start()
    upstreams = {Family.OPENAI: upstream + "/v1", Family.ANTHROPIC: "http://127.0.0.1:9"}
    with ProxyThread(ProxySettings(port=0, upstreams=upstreams, page=page), recorder) as proxy:
        yield proxy.base_url
    recorder.close()
    store.close()


def _calls(limit: int) -> list[list[dict[str, Any]]]:
    """Return each session's calls: the messages before each assistant turn."""
    sessions = json.loads(TAU_SESSIONS.read_text())[:limit]
    calls = []
    for s in sessions:
        traj = s["traj"]
        calls.append([traj[:i] for i, m in enumerate(traj) if m.get("role") == "assistant"])
    return calls


def _send(client: openai.OpenAI, messages: list[dict[str, Any]], tools: Any, session: str) -> float:
    start = time.perf_counter()
    client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools,
                                   extra_headers={"x-llm386-session": session})  # fmt: skip
    return (time.perf_counter() - start) * 1000


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-bench", base_url=url + "/v1", max_retries=0,
                         http_client=httpx2.Client(timeout=60))  # fmt: skip


def main(out_dir: Path) -> dict[str, Any]:
    tools = json.loads(TAU_TOOLS.read_text())
    sessions = _calls(SESSIONS)
    count = get_tokenizer("o200k_base").count
    sent_tokens = up_tokens = 0
    same = total = 0
    plain_ms: list[float] = []
    paged_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack, OpenAIServer() as up:
        urls = [stack.enter_context(_proxy(Path(tmp) / name, up.base_url, page))
                for name, page in (("plain", None), ("a", PageSettings()), ("b", PageSettings()))]  # fmt: skip
        plain, paged_a, paged_b = (_client(u) for u in urls)
        n_calls = sum(len(c) for c in sessions)
        with Progress("proxy --page", n_calls, unit="calls") as progress:
            for n, calls in enumerate(sessions):
                for messages in calls:
                    plain_ms.append(_send(plain, messages, tools, f"s{n}"))
                    paged_ms.append(_send(paged_a, messages, tools, f"s{n}"))
                    _send(paged_b, messages, tools, f"s{n}")
                    got_plain, got_a, got_b = (r.body for r in up.requests[-3:])
                    sent_tokens += count(got_plain.decode())
                    up_tokens += count(got_a.decode())
                    same += got_a == got_b
                    total += 1
                    progress.advance()
    cut = 1 - up_tokens / sent_tokens
    added = percentile(paged_ms, 50) - percentile(plain_ms, 50)
    result = {
        "note": f"{len(sessions)} tau-bench airline sessions, {total} Chat Completions calls, "
        "preset default, no budget, o200k over request bodies; unpaged and paged calls "
        "alternate in one run on 2 shared cores",
        "sessions": len(sessions), "calls": total,
        "client_input_tokens": sent_tokens, "upstream_input_tokens": up_tokens,
        "plain_p50_ms": round(percentile(plain_ms, 50), 2),
        "paged_p50_ms": round(percentile(paged_ms, 50), 2),
        "targets": {
            "cumulative_input_tokens_cut": {"value": round(cut, 4), "target": TOKEN_CUT_TARGET,
                                             "met": cut >= TOKEN_CUT_TARGET},
            "identical_upstream_bytes_across_fresh_proxies": {
                "value": round(same / total, 4), "target": 1.0, "met": same == total},
        },
        "added_p50_ms_paged_vs_unpaged": round(added, 2),
    }  # fmt: skip
    return write_result(out_dir, "proxy_paging", result)


if __name__ == "__main__":
    from bench.common import results_dir

    main(results_dir())
