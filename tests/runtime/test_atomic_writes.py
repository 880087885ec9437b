"""Writes that belong together land together: imports, agent turns, purges, and a full disk.

Also: what older versions left half-written (partial and doubled imports, a turn's trace without
its reply, traces without their session) is found by `llm386 verify` and fixed by `repair`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from functools import partial
from pathlib import Path

import pytest

from runtime import LmdbStore, NewBlock, open_store
from runtime.agent.core import Agent
from runtime.cli import main
from runtime.errors import SessionNotFound, StoreFull
from runtime.providers import OfflineModel
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.storage.purge import purge_session
from runtime.storage.sessioncheck import check_sessions, reply_ids
from runtime.transfer.importer import (
    ImportOptions,
    import_transcripts,
    new_records,
    prepare,
    reconcile,
    write_blocks,
)
from runtime.transfer.transcripts import read_transcripts
from tests.runtime.atomic_support import transcript, transcript_file

ROOT = Path(__file__).resolve().parents[2]
SESSION = "transcript-task001-trial0"


@pytest.fixture
def env(tmp_path):
    store = open_store(tmp_path / "store")
    yield store, LmdbTraceStore(store)
    store.close()


class _FailsAfterFirstTrace(LmdbTraceStore):
    """A trace store that fails (like a full disk) once the import's first record is written."""

    def record_chunked_in(self, t, items) -> int:
        super().record_chunked_in(t, [next(iter(items))])
        raise StoreFull("the disk filled up (injected)")


def _rows(store: LmdbStore) -> int:
    names = (b"blocks", b"entries", b"sessions", b"traces", b"edges_out")
    return lmdbenv.read(store.env, lambda txn: sum(txn.stat(store.env.db(n))["entries"]
                                                   for n in names))  # fmt: skip


def test_an_import_that_fails_midway_leaves_no_partial_session(env):
    store, _ = env
    with pytest.raises(StoreFull):
        import_transcripts(store, _FailsAfterFirstTrace(store), transcript_file(1, 2))
    assert store.session_count() == 0 and _rows(store) == 0
    report = import_transcripts(store, LmdbTraceStore(store), transcript_file(1, 2))
    assert (report.sessions_written, report.turns_recorded) == (2, 10)


def test_reimporting_leaves_existing_sessions_meta_alone(env):
    store, traces = env
    import_transcripts(store, traces, transcript_file(1, reward=1.0))
    store.set_session_meta(SESSION, note="checked by hand")
    before = store.session_info(SESSION).meta
    changed = transcript_file(1, reward=0.0)  # same messages, the file now says it failed
    report = import_transcripts(store, traces, changed, options=ImportOptions(source="elsewhere"))
    assert (report.sessions_written, report.turns_recorded) == (0, 0)
    assert store.session_info(SESSION).meta == before
    assert before["reward"] == 1.0 and before["source"] == "openai-transcript"


def _verify(store_path: Path, capsys) -> tuple[int, str]:
    code = main(["--store", str(store_path), "verify"])
    out, err = capsys.readouterr()
    return code, out + err


def _repair(store_path: Path, capsys) -> str:
    assert main(["--store", str(store_path), "repair"]) == 0
    return capsys.readouterr().out


def _prepared(data: bytes):
    return [prepare(t, (), ImportOptions(), 1 << 20) for t in read_transcripts(data, "f")]


def test_verify_finds_a_partial_import_and_repair_lets_it_import_again(env, tmp_path, capsys):
    store, traces = env
    data = transcript_file(1)
    for p in _prepared(data):  # what an import killed between its old writes left behind
        write_blocks(store, reconcile(store, traces, p))
    code, out = _verify(tmp_path / "store", capsys)
    assert code == 2 and f"partial-import: {SESSION}" in out
    assert "fixed partial-import" in _repair(tmp_path / "store", capsys)
    assert _verify(tmp_path / "store", capsys)[0] == 0
    report = import_transcripts(store, traces, data)
    assert report.turns_recorded == 5 and check_sessions(store, traces) == []


def test_verify_finds_a_doubled_import_and_repair_keeps_one_copy(env, tmp_path, capsys):
    store, traces = env
    data = transcript_file(1)
    [p] = _prepared(data)
    single = len(p.blocks)
    # Two imports that both compared with the empty store before either wrote (the old race).
    both = [reconcile(store, traces, p), reconcile(store, traces, p)]
    for planned in both:
        seqs = write_blocks(store, planned)
        tokens = store.token_counts(list(planned.block_ids), "o200k_base")
        traces.record_stream(partial(new_records, planned, seqs, tokens, ImportOptions()))
    assert len(store.entry_refs(SESSION)) == 2 * single
    code, out = _verify(tmp_path / "store", capsys)
    assert code == 2 and f"duplicated-import: {SESSION}" in out
    _repair(tmp_path / "store", capsys)
    assert _verify(tmp_path / "store", capsys)[0] == 0
    assert len(store.entry_refs(SESSION)) == single
    assert sorted(t for t, _ in traces.turns(SESSION)) == [1, 2, 3, 4, 5]
    again = import_transcripts(store, traces, data)  # the file is recognised as imported
    assert (again.sessions_written, again.turns_recorded) == (0, 0)


def test_verify_finds_a_traced_turn_without_its_reply_and_repair_puts_it_back(
    env, tmp_path, capsys
):
    store, traces = env
    agent = Agent(store, traces, OfflineModel(), session="chat")
    agent.say("Hello! What can you do?")
    [(_, cid)] = traces.turns("chat")
    reply = reply_ids(traces.get(cid))
    assert reply
    for bid in reply:  # the state a crash between the trace commit and the reply put left
        store.delete_block(bid)
    code, out = _verify(tmp_path / "store", capsys)
    assert code == 2 and f"turn-without-reply: chat turn 1 ({cid})" in out
    assert "fixed turn-without-reply" in _repair(tmp_path / "store", capsys)
    assert _verify(tmp_path / "store", capsys)[0] == 0
    assert all(store.memberships(bid) for bid in reply)


class _FailsDeletingTraces(LmdbTraceStore):
    def delete_session(self, session: str) -> int:
        super().delete_session(session)
        raise StoreFull("the disk filled up (injected)")


def test_purge_removes_blocks_and_traces_in_one_write(env):
    store, traces = env
    import_transcripts(store, traces, transcript_file(1))
    with pytest.raises(StoreFull):
        purge_session(store, _FailsDeletingTraces(store), SESSION)
    assert store.session_info(SESSION).count > 0 and len(traces.turns(SESSION)) == 5
    report, removed = purge_session(store, traces, SESSION)
    assert removed == 5 and report.entries_removed > 0
    assert store.session_count() == 0 and traces.count() == 0


def test_trace_records_left_without_their_session_can_be_purged(env, tmp_path, capsys):
    store, traces = env
    import_transcripts(store, traces, transcript_file(1))
    store.purge_session(SESSION)  # an older llm386 killed between its two purge writes
    assert main(["--store", str(tmp_path / "store"), "purge", SESSION]) == 0
    assert "5 trace records" in capsys.readouterr().out
    assert traces.count() == 0
    with pytest.raises(SessionNotFound):
        purge_session(store, traces, SESSION)


# -- a disk that fills during a commit -------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root and mount(8)); the store under it fills up for real."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                       check=True, capture_output=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc}); the file-size-limit test covers it")
    yield mount
    lmdbenv.close_env(mount / "store")
    subprocess.run(["umount", str(mount)], check=True)


def test_a_disk_that_fills_during_a_commit_is_store_full_and_keeps_every_write_whole(small_disk):
    store = open_store(small_disk / "store", tokenizers=())
    traces = LmdbTraceStore(store)
    landed = 0
    with pytest.raises(StoreFull, match="disk under .* is full"):
        for i in range(1000):
            body = f"{i} " + uuid.UUID(int=i).hex * 200
            store.put_many(f"s{i}", [NewBlock("fact", f"{body} {j}") for j in range(4)])
            landed += 1
    with pytest.raises(StoreFull):
        import_transcripts(store, traces, json.dumps([transcript(7, turns=200)]).encode())
    lmdbenv.close_env(small_disk / "store")
    store = open_store(small_disk / "store", tokenizers=(), readonly=True)
    assert store.verify().ok and store.session_count() == landed
    assert all(info.count == 4 for info in store.sessions())


FSIZE_WRITER = textwrap.dedent(
    """
    import resource, signal, sys
    from runtime import NewBlock, open_store
    from runtime.errors import Llm386Error
    store = open_store(sys.argv[1], tokenizers=())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
    try:
        for i in range(1000):
            store.put_many(f"s{i}", [NewBlock("fact", f"{i} {j} " + "x" * 9000) for j in range(4)])
            print(i, flush=True)
    except Llm386Error as exc:
        print(type(exc).__name__, exc, flush=True)
    """
)


def test_a_commit_the_file_system_refuses_is_a_clean_error_and_writes_nothing(tmp_path):
    path = tmp_path / "store"
    open_store(path, tokenizers=()).close()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", FSIZE_WRITER, str(path)], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    *acked, last = out.stdout.splitlines()
    assert last.startswith("StoreWriteFailed") and "nothing of this write was stored" in last
    store = open_store(path, tokenizers=(), readonly=True)
    assert store.verify().ok and store.session_count() == len(acked)
    assert all(info.count == 4 for info in store.sessions())
