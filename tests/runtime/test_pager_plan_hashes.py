"""Golden plan and prompt hashes of long sessions: speeding up the pager must not change a byte.

The demo golden file (``test_golden_hashes``) covers short sessions; this one covers what only
long ones reach: the selection horizon, blocks past it (``Beyond``), omissions past the listed
256, both passes of selection at several budgets, thresholds and candidate caps. The session is
the benchmark's (tau-bench airline messages grown in order, from the copy the project ships), with
summaries, a pinned block, duplicates, a state and a plan added so every rule of
``runtime.pager.selection`` runs.

Each hash is the SHA-256 of the plan's JSON with every omission (``every_omission``: listed,
unlisted and past the horizon), so every candidate's decision, reason, score breakdown and
tokens are pinned; the second is the packed request's prompt hash. The golden file was written
by the code of ce36990, before issue 16's speed work. A change that alters them on purpose
regenerates it with ``LLM386_WRITE_GOLDEN=1 pytest tests/runtime/test_pager_plan_hashes.py``
and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from bench.bench_pager import SESSION, build, grow, profile_with_budget, tasks
from bench.common import SHIPPED_TAU
from runtime.blocks import (
    BlockKind,
    Edge,
    EdgeKind,
    NewBlock,
    Provenance,
    ToolCall,
    content_hash,
)
from runtime.packer.core import pack
from runtime.packer.rendering import RenderMode
from runtime.pager.core import PageOptions, PageRequest, page
from runtime.pager.plan import PagePlan
from runtime.profiles.catalog import get_profile

GOLDEN = Path(__file__).resolve().parent / "golden" / "pager_plan_hashes.json"
SIZES = (1_500, 4_000)
BUDGETS = (3_000, 16_000, None)  # None: claude-sonnet-4-6's full budget
OPTIONS = {
    "default": PageOptions(),
    "threshold": PageOptions(threshold=0.15),
    "limit": PageOptions(limit=40),
    "strict-sections": PageOptions(flow_unused=False, dedupe=False),
    "chat-no-edges": PageOptions(render=RenderMode.CHAT, follow_edges=False),
}
TASKS = 4


def _extras(blocks: list[NewBlock]) -> tuple[list[NewBlock], list[Edge]]:
    """Return blocks that exercise summaries, pins, duplicates, state and plan, and their edges."""
    ids = [content_hash(BlockKind.parse(b.kind), str(b.body)) for b in blocks]
    users = [n for n, b in enumerate(blocks) if b.kind == BlockKind.USER_MESSAGE]
    out: list[NewBlock] = []
    edges: list[Edge] = []
    for n, at in enumerate(users[1::37][:12]):
        summary = NewBlock(BlockKind.SUMMARY, f"summary {n}: {str(blocks[at].body)[:80]}")
        out.append(summary)
        summary_id = content_hash(BlockKind.SUMMARY, str(summary.body))
        for covered in (at, at + 1):
            edges.append(Edge(summary_id, EdgeKind.DERIVED_FROM, ids[covered]))
    fact = NewBlock(BlockKind.FACT, "The airline refunds basic economy only within 24 hours.")
    out += [fact, NewBlock(BlockKind.FACT, "Gold members get two free checked bags."), fact]
    pinned = Provenance(labels=("pinned",))
    out.append(NewBlock(BlockKind.FACT, "Always confirm the reservation id.", provenance=pinned))
    out.append(NewBlock(BlockKind.STATE, "state: reservation under change"))
    out.append(NewBlock(BlockKind.PLAN, "plan: look up the user, then the reservation"))
    orphan = ToolCall("call_orphan", "get_user_details", {"user_id": "mia_li_3668"})
    out.append(NewBlock(BlockKind.TOOL_CALL, orphan.body()))  # unpaired: no result follows
    return out, edges


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan-hashes")
    out = {}
    for size in SIZES:
        blocks, edges = grow(SHIPPED_TAU / "sessions.json", SHIPPED_TAU / "tools.json", size)
        extra, extra_edges = _extras(blocks)
        store, _ = build(folder / str(size), blocks + extra, edges + extra_edges)
        users = [b for b in blocks if b.kind == BlockKind.USER_MESSAGE]
        latest = content_hash(BlockKind.USER_MESSAGE, str(users[-1].body))
        out[size] = (store, tasks(blocks)[:TASKS], latest)
    yield out
    for store, _, _ in out.values():
        store.close()


def _plan_hash(plan: PagePlan) -> str:
    data = plan.to_json() | {"every_omission": [o.to_json() for o in plan.every_omission()]}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _hashes(store, questions, latest) -> dict[str, list[str]]:
    out = {}
    for budget in BUDGETS:
        profile = (
            get_profile("claude-sonnet-4-6") if budget is None else profile_with_budget(budget)
        )
        requests = {
            f"{name}/{n}": PageRequest(SESSION, question, profile, options=options)
            for name, options in OPTIONS.items()
            for n, question in enumerate(questions)
        }
        # The sample agent's page after tool results: no task, the latest user message required.
        requests["required"] = PageRequest(SESSION, "", profile, required=(latest,))
        for key, request in requests.items():
            plan = page(store, request)
            out[f"{budget or 'full'}/{key}"] = [_plan_hash(plan), pack(store, plan).prompt_hash]
    return out


@pytest.mark.parametrize("size", SIZES)
def test_plans_and_prompts_of_long_sessions_match_the_golden_hashes(sessions, size):
    store, questions, latest = sessions[size]
    got = _hashes(store, questions, latest)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("LLM386_WRITE_GOLDEN") == "1":
        golden[str(size)] = got
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    want = golden[str(size)]
    assert sorted(got) == sorted(want)
    differ = [key for key in sorted(want) if got[key] != want[key]]
    assert not differ, f"{len(differ)} of {len(want)} plans or prompts changed: {differ[:8]}"
