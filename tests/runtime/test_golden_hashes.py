"""Golden request hashes over the demo data: moving or speeding up code must not change a byte.

The golden file was written by the code of b4acdab (before the second wave's refactors). Every
hash is the SHA-256 of request bytes the runtime renders from the demo store:

- ``agent``: every request the sample agent sends in the three offline demo conversations;
- ``pager``: page + pack of every 5th demo tau-bench session, at every turn, at two budgets, the
  way the sample agent pages (a new user message is the task; after tool results the session is
  paged with no task and the latest user message required).

A change that alters these bytes on purpose regenerates the file with
``LLM386_WRITE_GOLDEN=1 pytest tests/runtime/test_golden_hashes.py`` and says why in its commit.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from runtime import open_store
from runtime.agent.core import create_demo_conversations
from runtime.blocks import BlockKind
from runtime.packer.core import pack
from runtime.pager.core import PageRequest, page
from runtime.profiles.catalog import get_profile
from runtime.storage.tracestore import KvTraceStore
from runtime.transfer.importer import load_demo_sessions

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "request_hashes.json"
BUDGETS = (6_000, 16_000)
EVERY = 5


@pytest.fixture(scope="module", params=["lmdb", "postgresql"])
def demo(request, tmp_path_factory):
    """The demo store on each backend: both must render the same bytes as the golden file."""
    if request.param == "lmdb":
        target: object = tmp_path_factory.mktemp("golden") / "store"
    else:
        server = request.getfixturevalue("pg_server")
        target = server.url(server.create_database())
    store = open_store(target)
    traces = KvTraceStore(store)
    load_demo_sessions(store, traces)
    create_demo_conversations(store, traces)
    return store, traces


def _agent_hashes(traces) -> dict[str, list[str]]:
    sessions = sorted(
        {r.session for r in traces.list(limit=10_000) if r.provider.value != "openai"}
    )
    return {
        s: [
            r.prompt_hash
            for r in sorted(traces.list(session=s, limit=10_000), key=lambda r: r.turn)
        ]
        for s in sessions
    }


def _page_request(session: str, entries, profile) -> PageRequest:
    last = entries[-1]
    if last.kind is BlockKind.USER_MESSAGE:
        return PageRequest(session, last.body, profile, upto=last.seq)
    users = [e.id for e in entries if e.kind is BlockKind.USER_MESSAGE][-1:]
    return PageRequest(session, "", profile, required=tuple(users), upto=len(entries))


def _pager_hashes(store) -> dict[str, list[str]]:
    base = get_profile("claude-sonnet-4-6")
    extra = base.reserved_output_tokens + base.safety_margin_tokens
    names = (info.session for info in store.sessions())
    sessions = sorted(s for s in names if s.startswith("tau-airline"))[::EVERY]
    out: dict[str, list[str]] = {}
    for budget in BUDGETS:
        profile = replace(base, max_context_tokens=budget + extra)
        for session in sessions:
            entries = list(store.entries(session, 0, 100_000))
            hashes = []
            for end, entry in enumerate(entries, start=1):
                if entry.kind is BlockKind.ASSISTANT_MESSAGE or end == len(entries):
                    plan = page(store, _page_request(session, entries[:end], profile))
                    hashes.append(pack(store, plan).prompt_hash)
            out[f"{session}@{budget}"] = hashes
    return out


def test_demo_request_bytes_match_the_golden_hashes(demo):
    store, traces = demo
    now = {"agent": _agent_hashes(traces), "pager": _pager_hashes(store)}
    if os.environ.get("LLM386_WRITE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert sum(len(v) for v in golden["pager"].values()) > 100
    assert sum(len(v) for v in golden["agent"].values()) > 5
    assert now == golden
