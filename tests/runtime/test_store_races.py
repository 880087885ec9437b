"""Writers racing in one session from several processes lose nothing: each read-modify-write is
re-checked inside its one write transaction, on LMDB and on a shared PostgreSQL database, while
a reader lists the sessions the way the web app's sessions page does."""

from __future__ import annotations

import threading

import pytest

from runtime import open_store
from runtime.inspect.sessions import SessionQuery, query_sessions
from runtime.storage.tracestore import KvTraceStore
from tests.fuzz.crash_support import Acks, check, spawn


@pytest.fixture(params=["lmdb", "postgresql"])
def target(request, tmp_path):
    """Where the racing writers meet: an LMDB folder, or one real PostgreSQL database."""
    if request.param == "lmdb":
        return str(tmp_path / "store")
    return request.getfixturevalue("pg_url")


def _read_while(store_target: str, done: threading.Event, seen: list[int]) -> None:
    store = open_store(store_target)  # as the web app opens it
    traces = KvTraceStore(store)
    while not done.is_set():  # what the sessions page reads, again and again
        seen.append(query_sessions(store, traces, SessionQuery()).total)


def _race(tmp_path, target: str, role: str, writers: int, count: int) -> Acks:
    logs = tmp_path / "logs"
    logs.mkdir()
    open_store(target).close()
    workers = [spawn(role, target, f"{role}{i}", logs, count) for i in range(writers)]
    done, seen = threading.Event(), []
    reader = threading.Thread(target=_read_while, args=(target, done, seen))
    reader.start()
    acks = Acks()
    try:
        for w in workers:
            assert w.proc.wait(timeout=600) == 0, w.proc.stderr.read().decode()  # type: ignore[union-attr]
            w.proc.stderr.close()  # type: ignore[union-attr]
            acks.take(w)
    finally:
        done.set()
        reader.join()
    assert seen and seen == sorted(seen)  # the reader never saw a session vanish
    findings = check(target, acks)
    assert findings.problems == [] and findings.lost == []
    return acks


def test_four_processes_recording_faults_in_one_session_lose_none(tmp_path, target):
    acks = _race(tmp_path, target, "fault", 4, 25)
    assert len(acks.faults) == 100  # and check() found every one in the paging state


def test_four_writers_paging_and_faulting_shared_and_own_sessions_lose_nothing(tmp_path, target):
    """A few thousand writes: 250 times, each of 4 processes puts a block in the shared session
    and one in its own, records a fault in the shared fault session and (every 25th time) pages
    the shared session, while the reader lists the sessions."""
    acks = _race(tmp_path, target, "mixed", 4, 250)
    assert len(acks.blocks) == 2_000 and len(acks.faults) == 1_000  # 3,000 acknowledged writes
    store = open_store(target)
    assert len(store.entry_refs("mixed-shared")) == 1_000
    assert [store.session_info(f"mixed-mixed{i}").count for i in range(4)] == [250] * 4


def test_four_agents_on_one_session_never_reuse_a_turn_number(tmp_path, target):
    acks = _race(tmp_path, target, "agent", 4, 3)
    traces = KvTraceStore(open_store(target))
    numbers = sorted(turn for turn, _ in traces.turns("agent-shared"))
    assert len(acks.turns) == len(numbers) and numbers == list(range(1, len(numbers) + 1))


def test_two_imports_of_one_file_at_once_add_it_once(tmp_path, target):
    acks = _race(tmp_path, target, "import", 2, 3)  # each worker's 1st write is the shared file
    store = open_store(target)
    traces = KvTraceStore(store)
    shared = "transcript-task999-trial0"
    assert shared in acks.imports
    assert len(traces.turns(shared)) == 5
    assert len(store.entry_refs(shared)) == 12  # system, user, text, call, result, 3x2, goodbye
