"""Writers racing in one session from several processes lose nothing: each read-modify-write is
re-checked inside its one LMDB write transaction."""

from __future__ import annotations

from runtime import open_store
from runtime.storage.lmdb.traces import LmdbTraceStore
from tests.fuzz.crash_support import Acks, check, spawn


def _race(tmp_path, role: str, writers: int, count: int) -> Acks:
    path, logs = tmp_path / "store", tmp_path / "logs"
    logs.mkdir()
    open_store(path).close()
    workers = [spawn(role, path, f"{role}{i}", logs, count) for i in range(writers)]
    acks = Acks()
    for w in workers:
        assert w.proc.wait(timeout=600) == 0, w.proc.stderr.read().decode()  # type: ignore[union-attr]
        w.proc.stderr.close()  # type: ignore[union-attr]
        acks.take(w)
    findings = check(path, acks)
    assert findings.problems == [] and findings.lost == []
    return acks


def test_four_processes_recording_faults_in_one_session_lose_none(tmp_path):
    acks = _race(tmp_path, "fault", 4, 25)
    assert len(acks.faults) == 100  # and check() found every one in the paging state


def test_four_agents_on_one_session_never_reuse_a_turn_number(tmp_path):
    acks = _race(tmp_path, "agent", 4, 3)
    traces = LmdbTraceStore(open_store(tmp_path / "store"))
    numbers = sorted(turn for turn, _ in traces.turns("agent-shared"))
    assert len(acks.turns) == len(numbers) and numbers == list(range(1, len(numbers) + 1))


def test_two_imports_of_one_file_at_once_add_it_once(tmp_path):
    acks = _race(tmp_path, "import", 2, 3)  # each worker's 1st write is the shared file
    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)
    shared = "transcript-task999-trial0"
    assert shared in acks.imports
    assert len(traces.turns(shared)) == 5
    assert len(store.entry_refs(shared)) == 12  # system, user, text, call, result, 3x2, goodbye
