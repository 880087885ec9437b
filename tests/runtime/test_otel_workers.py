"""OTLP bodies prepared in worker processes (runtime.otel.workers) while the receiver writes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading

import pytest

from bench.bench_otel import bodies
from runtime import KvTraceStore, open_store
from runtime.otel import tokens
from runtime.otel.ingest import ingest, preparing_for
from runtime.otel.receiver import PATH, handle
from runtime.otel.wire import PROTOBUF, Status
from runtime.otel.workers import Preparer

SESSIONS = 6


@pytest.fixture(scope="module")
def preparer():
    workers = Preparer(1).start()
    yield workers
    workers.close()


def _contents(store, traces):
    """Every session's entries and its turns' records (but their random call ids), request
    bytes and answers' bytes."""
    out = {}
    for info in store.sessions():
        session = info.session
        records = traces.get_many([call_id for _, call_id in traces.turns(session)])
        turns = []
        for record in records:
            data = json.loads(record.encode())
            data.pop("call_id")
            answer = traces.response_bytes(record.call_id)
            assert answer is not None and record.response_hash == hashlib.sha256(answer).hexdigest()
            turns.append((data, traces.request_bytes(record.prompt_hash), answer))
        out[session] = ([ref.id for ref in store.entry_refs(session)], turns)
    return out


def _open(tmp_path, name):
    store = open_store(tmp_path / name)
    return store, KvTraceStore(store)


def test_concurrent_exports_prepared_by_a_worker_store_what_one_exporter_stores(tmp_path, preparer):
    requests = [body for body, _, _ in bodies(SESSIONS)]
    serial = _open(tmp_path, "serial")
    for body in requests:
        assert ingest(body, PROTOBUF, None, *serial).rejected == 0
    store, traces = _open(tmp_path, "workers")
    headers = {"content-type": PROTOBUF,
               "authorization": f"Bearer {tokens.create_token(store.kv, 'ci')}"}  # fmt: skip
    answers: list[int] = []

    def export(mine):
        for body in mine:
            status, _, _ = handle("POST", PATH, headers, body, store=store, traces=traces,
                                  preparer=preparer)  # fmt: skip
            answers.append(status)

    senders = [threading.Thread(target=export, args=(requests[i::3],)) for i in range(3)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert answers == [200] * SESSIONS
    assert _contents(store, traces) == _contents(*serial)
    assert len(_contents(store, traces)) == SESSIONS


def test_a_body_the_worker_refuses_is_refused_as_the_receiver_would(tmp_path, preparer):
    store, traces = _open(tmp_path, "store")
    headers = {"content-type": PROTOBUF,
               "authorization": f"Bearer {tokens.create_token(store.kv, 'ci')}"}  # fmt: skip
    restarts = preparer.restarts
    for body in (b"\x0a\xff\xff\xff\xff\x0f", b"not protobuf at all"):
        alone = handle("POST", PATH, headers, body, store=store, traces=traces)
        status, _, out = handle("POST", PATH, headers, body, store=store, traces=traces,
                                preparer=preparer)  # fmt: skip
        assert status == alone[0] == 400
        assert Status.FromString(out).message == Status.FromString(alone[2]).message
    assert preparer.restarts == restarts  # refused by the worker, not prepared again here
    assert store.sessions() == []


def test_a_worker_that_dies_costs_no_request(tmp_path):
    store, traces = _open(tmp_path, "store")
    requests = [body for body, _, _ in bodies(2)]
    workers = Preparer(1, preparing_for(store)["tokenizers"]).start()
    try:
        pids = list(workers._executor()._processes)  # the running worker's
        os.kill(pids[0], signal.SIGKILL)
        first = workers.prepare(requests[0], PROTOBUF, None, _limits(), **preparing_for(store))
        assert workers.restarts == 1  # prepared here instead, and the pool started again
        second = workers.prepare(requests[1], PROTOBUF, None, _limits(), **preparing_for(store))
        assert list(workers._executor()._processes) != pids
    finally:
        workers.close()
    for prepared in (first, second):
        from runtime.otel.ingest import commit

        assert commit(prepared, store, traces).turns_recorded > 0
    reference = _open(tmp_path, "reference")
    for body in requests:
        ingest(body, PROTOBUF, None, *reference)
    assert _contents(store, traces) == _contents(*reference)


def test_workers_must_be_a_count():
    with pytest.raises(ValueError, match="0 or more"):
        Preparer(-1)


def _limits():
    from runtime.otel.wire import DEFAULT_OTLP_LIMITS

    return DEFAULT_OTLP_LIMITS


def test_requests_written_together_get_what_their_own_writes_give_and_one_that_fails_alone(
    tmp_path,
):
    from dataclasses import replace

    from runtime.otel import ingest as ingesting

    store, traces = _open(tmp_path, "store")
    kw = preparing_for(store)
    good = [
        ingesting.prepare_body(body, PROTOBUF, None, _limits(), **kw) for body, _, _ in bodies(3)
    ]
    # A request whose write fails: a span row under a key the engine refuses (too long).
    bad = replace(good[1], rows=((good[1].rows[0][0], b"k" * 4096, b"{}"),))
    slots = [ingesting._Slot(p) for p in (good[0], bad, good[2])]
    ingesting._commit_batch(slots, store, traces)
    assert all(slot.done for slot in slots)
    assert slots[1].error is not None and slots[1].result is None
    assert [s.result.turns_recorded for s in (slots[0], slots[2])] == [
        sum(1 for c in p.calls) for p in (good[0], good[2])
    ]
    reference = _open(tmp_path, "reference")
    for body in (bodies(3)[0][0], bodies(3)[2][0]):
        ingest(body, PROTOBUF, None, *reference)
    assert _contents(store, traces) == _contents(*reference)  # the failed request left nothing
    together = _open(tmp_path, "together")
    slots = [ingesting._Slot(p) for p in good]
    ingesting._commit_batch(slots, *together)  # one write for the three
    assert [s.result for s in slots] == [ingest(b, PROTOBUF, None, *_open(tmp_path, f"alone{i}"))
                                         for i, (b, _, _) in enumerate(bodies(3))]  # fmt: skip


def test_a_worker_ends_when_its_receiver_is_killed(tmp_path):
    import subprocess
    import sys
    import time

    script = (
        "import sys\n"
        "from runtime.otel.workers import Preparer\n"
        "if __name__ == '__main__':\n"
        "    workers = Preparer(1).start()\n"
        "    print(*workers._executor()._processes, flush=True)\n"
        "    sys.stdin.read()\n"
    )
    path = tmp_path / "receiver.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with subprocess.Popen([sys.executable, str(path)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, env=env) as receiver:  # fmt: skip
        worker = int(receiver.stdout.readline())
        os.kill(worker, 0)  # running
        receiver.kill()
        receiver.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"worker {worker} outlived its killed receiver by 30 s")


def test_ctrl_c_in_the_receivers_terminal_does_not_stop_its_workers(tmp_path):
    """SIGINT reaches the whole process group; a worker's KeyboardInterrupt must neither break
    the pool (idle worker) nor come back to the receiver's thread (busy worker)."""
    store, _ = _open(tmp_path, "store")
    kw = preparing_for(store)
    body = bodies(1)[0][0]
    workers = Preparer(1, kw["tokenizers"]).start()
    try:
        (pid,) = list(workers._executor()._processes)
        os.kill(pid, signal.SIGINT)  # idle, waiting for work
        raised: list[BaseException] = []

        def prepare_many():
            try:
                for _ in range(20):
                    workers.prepare(body, PROTOBUF, None, _limits(), **kw)
            except BaseException as exc:  # noqa: BLE001 - what the receiver's thread would see
                raised.append(exc)

        busy = threading.Thread(target=prepare_many)
        busy.start()
        for _ in range(10):  # while it prepares
            os.kill(pid, signal.SIGINT)
            busy.join(0.05)
        busy.join()
        assert raised == []
        assert workers.restarts == 0
        assert list(workers._executor()._processes) == [pid]
    finally:
        workers.close()


def test_what_a_worker_raises_reaches_the_receiver_and_keeps_the_pool(tmp_path):
    from runtime.errors import TokenizerError

    workers = Preparer(1).start()
    try:
        with pytest.raises(TokenizerError, match="unknown tokenizer 'nope'"):
            workers.prepare(bodies(1)[0][0], PROTOBUF, None, _limits(), max_block_bytes=1 << 20,
                            tokenizers=("nope",))  # fmt: skip
        assert workers.restarts == 0
    finally:
        workers.close()


class _Unpicklable(Exception):
    def __init__(self, a, b, c):  # pickle calls it again with one argument
        super().__init__(f"{a} {b} {c}")


def test_an_exception_that_cannot_cross_processes_comes_back_as_its_type_and_message(
    monkeypatch,
):
    from runtime.otel import workers as module

    def fails(*args, **kwargs):
        raise _Unpicklable("three", "part", "message")

    monkeypatch.setattr(module, "prepare_body", fails)
    with pytest.raises(module.WorkerFailed, match="^_Unpicklable: three part message$"):
        module._prepare(b"", PROTOBUF, None, _limits(), max_block_bytes=1, tokenizers=())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "prepare_body", interrupted)
    with pytest.raises(module.WorkerFailed, match="^KeyboardInterrupt: $"):
        module._prepare(b"", PROTOBUF, None, _limits(), max_block_bytes=1, tokenizers=())


def test_a_commit_inside_a_write_of_the_store_neither_waits_for_nor_joins_another_threads(
    tmp_path,
):
    """Thread A holds the store's write and commits; thread B, already leading a shared commit,
    waits for A's write lock. A must write in its own transaction, not wait for B's."""
    import time

    from runtime.otel import ingest as ingesting

    store, traces = _open(tmp_path, "store")
    kw = preparing_for(store)
    first, second = (ingesting.prepare_body(body, PROTOBUF, None, _limits(), **kw)
                     for body, _, _ in bodies(2))  # fmt: skip
    results: dict[str, object] = {}

    def leader():
        results["b"] = ingesting.commit(second, store, traces)

    def holder():
        def outer():
            b = threading.Thread(target=leader, daemon=True)
            b.start()
            deadline = time.monotonic() + 10
            while not getattr(ingesting._groups.get(traces), "writing", False):
                assert time.monotonic() < deadline, "the other commit never started"
                time.sleep(0.01)
            time.sleep(0.1)  # B now waits for this thread's write lock
            results["a"] = ingesting.commit(first, store, traces)
            return b

        results["thread"] = store.atomic(outer)

    a = threading.Thread(target=holder, daemon=True)
    a.start()
    a.join(30)
    assert not a.is_alive(), "the commit inside a write waited for the commit waiting for it"
    results["thread"].join(30)
    assert results["a"].turns_recorded > 0 and results["b"].turns_recorded > 0
    reference = _open(tmp_path, "reference")
    for body, _, _ in bodies(2):
        ingest(body, PROTOBUF, None, *reference)
    assert _contents(store, traces) == _contents(*reference)


def test_a_shared_commit_takes_at_most_its_limit_and_the_rest_are_written_next(
    tmp_path,
    monkeypatch,
):
    from runtime.otel import ingest as ingesting

    monkeypatch.setattr(ingesting, "MAX_SHARED_COMMIT", 2)
    store, traces = _open(tmp_path, "store")
    kw = preparing_for(store)
    prepared = [ingesting.prepare_body(b, PROTOBUF, None, _limits(), **kw) for b, _, _ in bodies(5)]
    sizes: list[int] = []
    real = ingesting._commit_batch

    def counted(batch, *args):
        sizes.append(len(batch))
        return real(batch, *args)

    monkeypatch.setattr(ingesting, "_commit_batch", counted)
    group = ingesting._Group()
    group.writing = True  # as if another thread wrote: the five queue up behind it
    done: list[object] = []
    threads = [threading.Thread(target=lambda p=p: done.append(group.commit(p, store, traces)))
               for p in prepared]  # fmt: skip
    for thread in threads:
        thread.start()
    while len(group.waiting) < 5:
        threading.Event().wait(0.01)
    with group.ready:
        group.writing = False
        group.ready.notify_all()
    for thread in threads:
        thread.join(30)
    assert len(done) == 5 and sorted(sizes) == [1, 2, 2]
    assert len(_contents(store, traces)) == 5


def _behind_a_failing_batch(tmp_path, monkeypatch, error):
    """A group where another thread's request is queued first and its write raises ``error``;
    return the store, its traces, the group, that request's slot and this thread's request."""
    from runtime.otel import ingest as ingesting

    monkeypatch.setattr(ingesting, "MAX_SHARED_COMMIT", 1)
    store, traces = _open(tmp_path, "store")
    kw = preparing_for(store)
    first, second = (ingesting.prepare_body(b, PROTOBUF, None, _limits(), **kw)
                     for b, _, _ in bodies(2))  # fmt: skip
    other = ingesting._Slot(first)  # queued by another thread before this one's
    real = ingesting._commit_batch

    def failing(batch, *args):
        if batch == [other]:
            raise error  # reaches this thread while it writes `other`
        return real(batch, *args)

    monkeypatch.setattr(ingesting, "_commit_batch", failing)
    group = ingesting._Group()
    group.waiting.append(other)
    return store, traces, group, other, second


def test_an_interrupt_while_writing_other_threads_requests_stops_this_thread_not_theirs(
    tmp_path, monkeypatch
):
    from runtime.otel.ingest import CommitInterrupted

    store, traces, group, other, mine = _behind_a_failing_batch(
        tmp_path, monkeypatch, KeyboardInterrupt()
    )
    with pytest.raises(KeyboardInterrupt):
        group.commit(mine, store, traces)
    assert isinstance(other.error, CommitInterrupted) and other.done
    assert "nothing of this request was stored" in str(other.error)
    assert group.waiting == [] and group.writing is False  # this thread's request left too
    assert store.sessions() == []


def test_a_failed_write_of_other_threads_requests_still_writes_this_threads(tmp_path, monkeypatch):
    store, traces, group, other, mine = _behind_a_failing_batch(
        tmp_path, monkeypatch, RuntimeError("the store refused that batch")
    )
    assert group.commit(mine, store, traces).turns_recorded > 0  # its own, written next
    assert isinstance(other.error, RuntimeError) and other.done
    assert len(store.sessions()) == 1
