"""``llm386 proxy --page``: tokens sent upstream against what the agent sent, and what it costs.

Each recorded tau-bench airline session (benchmark input only, read from ../shared/data) is
played through the proxy as its agent sent it: one Chat Completions call (official ``openai``
SDK) per assistant turn, carrying the messages before it and the session's tools. Three proxies
run in this process in front of one loopback fake OpenAI upstream that records the raw bytes it
gets: one unpaged, and two fresh ones with ``--page default`` (its own store each), so the same
calls are sent unpaged and paged, alternating, in one run. The same calls are then sent again as
Responses API calls (``client.responses.create``: the system message as ``instructions``, the
messages, tool calls and tool results as ``input`` items, the tools as function tools), to
three fresh proxies, as an agent on the Responses API (the OpenAI Agents SDK's default) sends
them.

Figures: cumulative input tokens (o200k over the request bodies) the agent sent and the
upstream received; the share of upstream requests whose bytes are identical from the two fresh
paged proxies; the added p50 latency of a paged call against an unpaged one. Nothing here
answers ``recall`` (the fake upstream never calls it), so misses are not measured here: that is
the paging benchmark's job.
"""

from __future__ import annotations

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
from bench.taudata import TAU_SESSIONS, TAU_TOOLS, transcripts
from runtime import open_store
from runtime.progress import Progress
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.proxy.pager import PageSettings
from runtime.storage.tracestore import KvTraceStore
from runtime.tokenizers import get_tokenizer
from runtime.transfer.transcripts import message_text, read_tools
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
    calls = []
    for t in transcripts(TAU_SESSIONS)[:limit]:
        traj = [dict(m) for m in t.messages]
        # A request needs a message: an assistant message that opens a session is no call.
        calls.append([traj[:i] for i, m in enumerate(traj) if m["role"] == "assistant" and i])
    return calls


def _send(client: openai.OpenAI, messages: list[dict[str, Any]], tools: Any, session: str) -> float:
    start = time.perf_counter()
    client.chat.completions.create(model="gpt-4o", messages=messages, tools=tools,
                                   extra_headers={"x-llm386-session": session})  # fmt: skip
    return (time.perf_counter() - start) * 1000


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-bench", base_url=url + "/v1", max_retries=0,
                         http_client=httpx2.Client(timeout=60))  # fmt: skip


def _send_responses(
    client: openai.OpenAI, messages: list[dict[str, Any]], tools: Any, session: str
) -> float:
    """Send one call as the Responses API has it (see the module docstring)."""
    system = [message_text(m) for m in messages if m.get("role") == "system"]
    items: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            items.append({"type": "function_call_output", "call_id": m["tool_call_id"],
                          "output": message_text(m)})  # fmt: skip
        elif role != "system":
            if message_text(m):
                items.append({"role": role, "content": message_text(m)})
            for call in m.get("tool_calls") or ():
                fn = call["function"]
                items.append({"type": "function_call", "call_id": call["id"], "name": fn["name"],
                              "arguments": fn["arguments"] or "{}"})  # fmt: skip
    functions = [{"type": "function", **t["function"]} for t in tools]
    start = time.perf_counter()
    client.responses.create(model="gpt-4o", instructions="\n\n".join(system) or None,  # type: ignore[arg-type]
                            input=items, tools=functions,  # type: ignore[arg-type]
                            extra_headers={"x-llm386-session": session})  # fmt: skip
    return (time.perf_counter() - start) * 1000


def _play(sessions: list[list[list[dict[str, Any]]]], tools: Any, send: Any, label: str) -> dict:
    """Play every call through an unpaged and two fresh paged proxies; return the figures."""
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
        with Progress(f"proxy --page ({label})", n_calls, unit="calls") as progress:
            for n, calls in enumerate(sessions):
                for messages in calls:
                    plain_ms.append(send(plain, messages, tools, f"s{n}"))
                    paged_ms.append(send(paged_a, messages, tools, f"s{n}"))
                    send(paged_b, messages, tools, f"s{n}")
                    got_plain, got_a, got_b = (r.body for r in up.requests[-3:])
                    sent_tokens += count(got_plain.decode())
                    up_tokens += count(got_a.decode())
                    same += got_a == got_b
                    total += 1
                    progress.advance()
    return {"calls": total, "client_input_tokens": sent_tokens, "upstream_input_tokens": up_tokens,
            "identical": same, "plain_ms": plain_ms, "paged_ms": paged_ms}  # fmt: skip


def main(out_dir: Path) -> dict[str, Any]:
    tools = [dict(t.openai) for t in read_tools(TAU_TOOLS.read_bytes(), TAU_TOOLS.name)]
    sessions = _calls(SESSIONS)
    chat = _play(sessions, tools, _send, "Chat Completions")
    responses = _play(sessions, tools, _send_responses, "Responses")
    total, sent_tokens, up_tokens = (
        chat["calls"],
        chat["client_input_tokens"],
        chat["upstream_input_tokens"],
    )
    cut = 1 - up_tokens / sent_tokens
    plain_ms, paged_ms = chat["plain_ms"], chat["paged_ms"]
    added = percentile(paged_ms, 50) - percentile(plain_ms, 50)
    r_cut = 1 - responses["upstream_input_tokens"] / responses["client_input_tokens"]
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
                "value": round(chat["identical"] / total, 4), "target": 1.0,
                "met": chat["identical"] == total},
        },
        "added_p50_ms_paged_vs_unpaged": round(added, 2),
        "responses_api": {
            "calls": responses["calls"],
            "client_input_tokens": responses["client_input_tokens"],
            "upstream_input_tokens": responses["upstream_input_tokens"],
            "input_tokens_cut": round(r_cut, 4),
            "identical_upstream_bytes_across_fresh_proxies": round(
                responses["identical"] / responses["calls"], 4),
            "plain_p50_ms": round(percentile(responses["plain_ms"], 50), 2),
            "paged_p50_ms": round(percentile(responses["paged_ms"], 50), 2),
        },
    }  # fmt: skip
    return write_result(out_dir, "proxy_paging", result)


if __name__ == "__main__":
    from bench.common import results_dir

    main(results_dir())
