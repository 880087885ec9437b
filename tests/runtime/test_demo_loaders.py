"""The demo loaders of runtime.demo without Django: the same records from two fresh stores, and
the replay/experiment loader says what it needs when its session is missing."""

from __future__ import annotations

from pathlib import Path

from runtime import open_store
from runtime.demo.budget import BUDGET_CONVERSATIONS, load_budget_sessions
from runtime.demo.captured import CAPTURED, load_captured_sessions
from runtime.demo.derived import demo_experiments, demo_replays, load_derived
from runtime.storage.lmdb.traces import LmdbTraceStore

SESSIONS = [BUDGET_CONVERSATIONS[0][0], *(c.session for c in CAPTURED)]


def _load(path: Path) -> dict[str, list[tuple[int, str, str, str]]]:
    store = open_store(path)
    traces = LmdbTraceStore(store)
    for loader in (load_budget_sessions, load_derived, load_captured_sessions):
        loader(store, traces)
    seen = {}
    for session in SESSIONS:
        records = [traces.get(cid) for _, cid in traces.turns(session)]
        seen[session] = sorted((r.turn, r.parent_call_id and "derived" or "", r.prompt_hash,
                                r.status.value) for r in records)  # fmt: skip
    store.close()
    return seen


def test_two_fresh_stores_get_the_same_requests_and_outcomes(tmp_path: Path) -> None:
    first, second = _load(tmp_path / "a"), _load(tmp_path / "b")
    assert first == second
    assert all(first[s] for s in SESSIONS)
    assert [status for *_, status in first[CAPTURED[0].session]].count("error") == 1


def test_the_replay_and_experiment_wait_for_the_budget_session(stores) -> None:
    store, traces = stores
    summary = load_derived(store, traces)
    assert "skipped" in summary and BUDGET_CONVERSATIONS[0][0] in summary
    assert demo_replays(traces) == [] and demo_experiments(traces) == []
    load_budget_sessions(store, traces)
    assert "replayed" in load_derived(store, traces)
    assert len(demo_replays(traces)) == len(demo_experiments(traces)) == 1
