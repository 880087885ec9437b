"""Web server time on big data, through Django's test client (no network, no browser).

Targets (issue 5): the turn page of a 5,000-block turn in 300 ms, the compare page of two
200,000-token turns in 300 ms, the sessions list at 10,000 sessions in 100 ms; and (issue 17)
that list filtered by date range, provider, tag and a meta term at once in 100 ms.

Data, all written through the app's own store handle in a temporary LLM386_HOME:
- "big": one session of 5,000 blocks (about 200,000 tokens) and two traced turns: turn 1 packs
  all 5,000 (system, 20 tool schemas, 600 retrieved facts with per-retriever scores, the rest
  recent messages) and omits 1,000 more candidates; turn 2 adds one reply and one question.
  Their Anthropic requests are about 200,000 tokens each.
- 10,000 small sessions with one or two traced turns each, a tenth failing, some errored, a
  third tagged "nightly".

Each figure is the whole request: middleware (login, CSP), the view, the runtime and the
template. The sessions list is measured warm (no write since the last request), after a write
(the summary table refreshes the changed session), and cold (a new process's first request).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import time_calls, write_result

ROOT = Path(__file__).resolve().parents[1]
BIG_BLOCKS = 5_000
SESSIONS = 10_000
TARGETS_MS = {"turn_page": 300, "compare_page": 300, "sessions_list": 100,
              "sessions_list_filtered": 100}  # fmt: skip
# Every filter that reads session meta at once: a date range, provider, a tag and a meta term.
FILTERED = ("/sessions/?since=2025-10-09&until=2025-10-09&provider=anthropic&tag=nightly"
            "&meta=failing%3Dfalse")  # fmt: skip
WORDS = [
    "reservation",
    "flight",
    "passenger",
    "baggage",
    "cabin",
    "economy",
    "business",
    "refund",
    "policy",
    "change",
    "cancel",
    "airport",
    "date",
    "time",
    "customer",
    "agent",
    "booking",
    "payment",
    "certificate",
    "gift",
    "card",
    "credit",
    "insurance",
    "seat",
    "upgrade",
    "delay",
    "membership",
    "gold",
    "silver",
    "regular",
    "origin",
    "destination",
    "round",
    "trip",
    "one",
    "way",
]


def _setup_django(home: str, store: str | None = None) -> None:
    os.environ["LLM386_HOME"] = home
    os.environ.pop("LLM386_STORE", None)
    if store:  # a postgresql:// URL (or a folder): the app's store instead of $LLM386_HOME/store
        os.environ["LLM386_STORE"] = store
    os.environ["DJANGO_SETTINGS_MODULE"] = "llm386web.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _big_session(store: Any, traces: Any) -> tuple[str, str, str]:
    """Write the 5,000-block session and its two turns; return (turn 1, turn 2, a block id)."""
    from runtime import NewBlock
    from runtime.blocks import BlockKind

    rng = random.Random(5)
    kinds = [BlockKind.SYSTEM] + [BlockKind.TOOL_SCHEMA] * 20 + [BlockKind.FACT] * 600
    kinds += [BlockKind.USER_MESSAGE, BlockKind.ASSISTANT_MESSAGE] * (
        (BIG_BLOCKS - len(kinds)) // 2
    )
    kinds += [BlockKind.FACT] * 1000 + [BlockKind.ASSISTANT_MESSAGE, BlockKind.USER_MESSAGE]
    bodies = [f"{i}: {_text(rng, 30)}" for i in range(len(kinds))]
    ids = [
        e.id
        for e in store.put_many("big", [NewBlock(k, b) for k, b in zip(kinds, bodies, strict=True)])
    ]
    store.set_session_meta("big", model="claude-sonnet-4-6", title="5,000-block turn")
    first = _turn(traces, ids, kinds, bodies, 1, BIG_BLOCKS)
    second = _turn(traces, ids, kinds, bodies, 2, BIG_BLOCKS + 2)
    return first, second, ids[0]


def _section(kind: Any) -> str:
    from runtime.pager.sections import section_of

    return section_of(kind).value


def _turn(
    traces: Any, ids: list[str], kinds: list[Any], bodies: list[str], turn: int, upto: int
) -> str:
    from runtime.blocks import canonical_json
    from runtime.providers.usage import Usage
    from runtime.tracing.records import (
        Provider,
        StoredTrace,
        TraceRecord,
        new_call_id,
        prompt_hash,
    )

    packed = [i for i in range(len(ids)) if i < BIG_BLOCKS or i >= len(ids) - 2][:upto]
    packed = [i for i in packed if i < BIG_BLOCKS] + [i for i in packed if i >= BIG_BLOCKS + 1000]
    omitted = range(BIG_BLOCKS, BIG_BLOCKS + 1000)

    def item(i: int, reason: str) -> dict[str, Any]:
        return {"block_id": ids[i], "seq": i, "kind": kinds[i].value, "section": _section(kinds[i]),
                "reason": reason, "score": round(1 / (1 + i), 6),
                "scores": {"bm25": round((i % 97) / 97, 4), "recency": round(i / len(ids), 4)},
                "tokens": 40}  # fmt: skip

    selected = [item(i, "required" if kinds[i].value in ("system", "tool-schema") else "retrieved")
                for i in packed]  # fmt: skip
    messages = [{"role": "user" if k.value == "user-message" else "assistant",
                 "content": [{"type": "text", "text": bodies[i]}]}
                for i, k in ((i, kinds[i]) for i in packed) if k.value.endswith("message")]  # fmt: skip
    request = canonical_json({"model": "claude-sonnet-4-6", "max_tokens": 4096,
                              "system": bodies[0], "messages": messages})  # fmt: skip
    sections: dict[str, int] = {}
    for entry in selected:
        sections[entry["section"]] = sections.get(entry["section"], 0) + 40
    plan = {"selected": selected, "omitted": [item(i, "over-budget") for i in omitted],
            "sections": [{"section": s, "allocated": 60_000, "used": n} for s, n in sections.items()],
            "tokens": sum(sections.values())}  # fmt: skip
    response = canonical_json({"content": [{"type": "text", "text": "ok"}], "role": "assistant"})
    record = TraceRecord(
        call_id=new_call_id(), session="big", turn=turn, started_at=1_760_000_000_000 + turn,
        provider=Provider.ANTHROPIC, model="claude-sonnet-4-6", prompt_hash=prompt_hash(request),
        request_size=len(request), latency_ms=900.0, plan=plan,
        estimated_input_tokens=plan["tokens"], usage=Usage(2_000, 10, 195_000, 3_000),
        response={"content": [{"type": "text", "text": "ok"}]}, response_hash=prompt_hash(response),
    )  # fmt: skip
    traces.record_many([StoredTrace(record, request, response)])
    return record.call_id


def _many_sessions(store: Any, traces: Any) -> str:
    """Write SESSIONS small traced sessions; return one prompt hash to search for."""
    from runtime import NewBlock
    from runtime.blocks import BlockKind, canonical_json
    from runtime.providers.usage import Usage
    from runtime.tracing.records import (
        Provider,
        StoredTrace,
        TraceError,
        TraceRecord,
        TraceStatus,
        new_call_id,
        prompt_hash,
    )

    rng, items, probe = random.Random(10), [], ""
    for i in range(SESSIONS):
        name = f"s{i:05d}"
        words = _text(rng, 12)
        store.put_many(name, [NewBlock(BlockKind.USER_MESSAGE, f"{name} {words}"),
                              NewBlock(BlockKind.ASSISTANT_MESSAGE, _text(rng, 20))])  # fmt: skip
        store.set_session_meta(name, model=("gpt-4o", "claude-sonnet-4-6")[i % 2],
                               failing=i % 10 == 0, title=words[:60],
                               tags=["nightly"] if i % 3 == 0 else [])  # fmt: skip
        for turn in range(1, 2 + i % 2):
            request = canonical_json({"messages": [{"role": "user", "content": words}], "n": turn})
            error = i % 37 == 0
            items.append(StoredTrace(TraceRecord(
                call_id=new_call_id(), session=name, turn=turn, started_at=1_760_000_000_000 + i,
                provider=Provider.ANTHROPIC, model="m", prompt_hash=prompt_hash(request),
                request_size=len(request), usage=None if error else Usage(100 + i, 20),
                status=TraceStatus.ERROR if error else TraceStatus.OK,
                error=TraceError("api_error", "boom", 500) if error else None,
            ), request))  # fmt: skip
            probe = probe or prompt_hash(request)
        if len(items) >= 2000:
            traces.record_many(items)
            items = []
    traces.record_many(items)
    return probe


def _timed(client: Any, url: str, repeat: int) -> dict[str, float]:
    def get() -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")

    get()  # compile templates, fill caches that survive between requests in one process
    return time_calls(get, repeat)


def _first_request_ms(client: Any, url: str, reset: Any) -> dict[str, float]:
    samples = []
    for _ in range(5):
        reset()
        start = time.perf_counter()
        assert client.get(url).status_code == 200
        samples.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(sorted(samples)[2], 4), "max_ms": round(max(samples), 4), "runs": 5}


def measure(repeat: int = 20) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from llm386web.store_access import get_store, get_traces
    from runtime.inspect.sessions import forget_tables

    store, traces = get_store(), get_traces()
    started = time.perf_counter()
    turn1, turn2, system_block = _big_session(store, traces)
    probe = _many_sessions(store, traces)
    build_s = round(time.perf_counter() - started, 1)
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(user)

    def touch() -> None:  # one write: the next list request refreshes one changed row
        store.set_session_meta("s00001", touched=time.perf_counter())

    results = {
        "turn_page": _timed(client, f"/traces/{turn1}/", repeat),
        "turn_section_first_page": _timed(client, f"/traces/{turn1}/sections/recent/", repeat),
        "turn_section_last_page": _timed(
            client, f"/traces/{turn1}/sections/recent/?offset=4300", repeat
        ),
        "turn_omitted_first_page": _timed(client, f"/traces/{turn1}/omitted/", repeat),
        "turn_messages_first_page": _timed(client, f"/traces/{turn1}/messages/", repeat),
        "compare_page": _timed(client, f"/compare/{turn1}/{turn2}/", repeat),
        "sessions_list": _timed(client, "/sessions/", repeat),
        "sessions_list_failing_by_tokens": _timed(
            client, "/sessions/?failing=yes&sort=tokens", repeat
        ),
        "sessions_list_page_150": _timed(client, "/sessions/?offset=7450", repeat),
        "sessions_list_filtered": _timed(client, FILTERED, repeat),
        "sessions_list_word_search": _timed(client, "/sessions/?q=refund+baggage", repeat),
        "sessions_list_prompt_hash_search": _timed(client, f"/sessions/?q={probe}", repeat),
        "sessions_list_after_a_write": time_calls(
            lambda: (touch(), client.get("/sessions/")), repeat
        ),
        "sessions_list_first_request": _first_request_ms(client, "/sessions/", forget_tables),
        "block_page_used_by_both_big_turns": _timed(client, f"/blocks/{system_block}/", repeat),
    }
    results["sessions_list_after_a_write"]["note"] = "includes the write itself (one meta update)"
    return {
        "figures": results,
        "data_build_s": build_s,
        "turn_request_bytes": traces.get(turn1).request_size,
    }


def main(out_dir: Path, store: str | None = None) -> dict[str, Any]:
    """Measure the pages on a store in a temporary LLM386_HOME (or at ``store``, a URL)."""
    with tempfile.TemporaryDirectory(prefix="llm386-bench-web-") as home:
        _setup_django(home, store)
        figures = measure()
    verdict = {
        name: {"target_ms": target, "p50_ms": figures["figures"][name]["p50_ms"],
               "met": figures["figures"][name]["p50_ms"] <= target}
        for name, target in TARGETS_MS.items()
    }  # fmt: skip
    backend = "postgresql" if store and "://" in store else "lmdb"
    return write_result(out_dir, "web", {**figures, "targets": verdict, "sessions": SESSIONS,
                                         "big_turn_blocks": BIG_BLOCKS, "backend": backend})  # fmt: skip


def run_apart(
    name: str, measure_fn: Callable[[], dict[str, Any]], targets: dict[str, float], out_dir: Path
) -> dict[str, Any]:
    """Run ``measure_fn`` against a fresh Django home and write ``<name>.json`` with a verdict
    per target; in a process where another Django benchmark already ran (run_all), run
    ``bench.bench_<name>`` in a subprocess instead, since Django's settings cannot change."""
    from django.apps import apps

    if apps.ready:
        subprocess.run([sys.executable, "-m", f"bench.bench_{name}", str(out_dir)], check=True,
                       cwd=ROOT)  # fmt: skip
        return dict(json.loads((out_dir / f"{name}.json").read_text()))
    with tempfile.TemporaryDirectory(prefix=f"llm386-bench-{name}-") as home:
        _setup_django(home)
        result = measure_fn()
    verdict = {key: {"target_ms": target, "p50_ms": result["figures"][key]["p50_ms"],
                     "met": result["figures"][key]["p50_ms"] <= target}
               for key, target in targets.items()}  # fmt: skip
    return write_result(out_dir, name, {**result, "targets": verdict})


if __name__ == "__main__":
    import argparse

    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--store", help="the app's store: a postgresql:// URL (an empty database)")
    args = parser.parse_args()
    main(Path(args.out), args.store)
