"""A big put counts its blocks' tokens on the counting thread while its write goes on: the
stored counts are those an inline count gives, on both backends, and a forked child (which
inherits no thread) still counts."""

from __future__ import annotations

import multiprocessing

import pytest

from runtime.blocks import BlockKind, NewBlock, content_hash
from runtime.storage import blockstore
from runtime.storage.blockstore import COUNT_AHEAD_BLOCKS, DEFAULT_TOKENIZERS
from runtime.tokenizers import forget_counts, get_tokenizer


def _blocks(n: int, tag: str) -> list[NewBlock]:
    return [
        NewBlock(BlockKind.USER_MESSAGE, f"{tag} message {i}: " + "word " * (i % 40))
        for i in range(n)
    ]


@pytest.mark.parametrize("size", [COUNT_AHEAD_BLOCKS - 1, COUNT_AHEAD_BLOCKS + 50])
def test_a_put_stores_the_counts_an_inline_count_gives(backend_store, size: int) -> None:
    forget_counts()
    blocks = _blocks(size, f"size {size}")
    backend_store.put_many("s", blocks)
    ids = [content_hash(b.kind, str(b.body)) for b in blocks]
    for name in DEFAULT_TOKENIZERS:
        expected = get_tokenizer(name).count_many([str(b.body) for b in blocks])
        assert backend_store.token_counts(ids, name) == expected


def test_a_failed_count_stores_nothing_of_the_put(store, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name, keys, texts):
        raise RuntimeError("tokenizer broke")

    forget_counts()
    monkeypatch.setattr(blockstore, "_block_counts", broken)
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        store.put_many("s", _blocks(COUNT_AHEAD_BLOCKS, "broken"))
    assert store.sessions() == []


def _child_put(path: str, done) -> None:
    from runtime import open_store

    s = open_store(path)
    s.put_many("child", _blocks(COUNT_AHEAD_BLOCKS, "child"))
    done.put(s.session_info("child").count)
    s.close()


def test_a_forked_child_counts_on_a_thread_of_its_own(tmp_path) -> None:
    from runtime import open_store

    path = str(tmp_path / "store")
    parent = open_store(path)
    parent.put_many("parent", _blocks(COUNT_AHEAD_BLOCKS, "parent"))  # the thread now exists
    parent.close()
    ctx = multiprocessing.get_context("fork")
    done = ctx.Queue()
    child = ctx.Process(target=_child_put, args=(path, done))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child's put never finished (waiting on the parent's thread)")
    assert child.exitcode == 0 and done.get(timeout=5) == COUNT_AHEAD_BLOCKS


def test_a_big_put_during_interpreter_shutdown_counts_inline(store, monkeypatch) -> None:
    # concurrent.futures refuses new work once the main thread has finished (an atexit hook,
    # a worker thread still importing): the put counts on its own thread instead of failing.
    import os
    from concurrent.futures import ThreadPoolExecutor

    stopped = ThreadPoolExecutor(1)
    stopped.shutdown()
    monkeypatch.setattr(blockstore, "_counter", (os.getpid(), stopped))
    blocks = _blocks(COUNT_AHEAD_BLOCKS, "late")
    store.put_many("late", blocks)
    ids = [content_hash(b.kind, str(b.body)) for b in blocks]
    expected = get_tokenizer("o200k_base").count_many([str(b.body) for b in blocks])
    assert store.token_counts(ids, "o200k_base") == expected


def test_postgresql_gets_the_rows_while_the_counts_are_still_being_counted(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The count may end only once the server has the put's other rows: a write that waited
    # for the counts before sending anything would leave the server idle meanwhile (and here
    # fail the put, the count giving up after its wait).
    import threading

    from runtime.storage import open_store
    from runtime.storage.postgres.tables import PgTables

    sent = threading.Event()
    send = PgTables._send

    def spy(self, batches):
        send(self, batches)
        if any(b.table == "blocks" for b in batches):
            sent.set()

    counted = blockstore._block_counts

    def slow(name, keys, texts):
        if not sent.wait(10):
            raise RuntimeError("the rows were not sent while counting")
        return counted(name, keys, texts)

    s = open_store(pg_url)
    try:
        forget_counts()
        monkeypatch.setattr(PgTables, "_send", spy)
        monkeypatch.setattr(blockstore, "_block_counts", slow)
        blocks = _blocks(COUNT_AHEAD_BLOCKS, "overlap")
        s.put_many("s", blocks)
        ids = [content_hash(b.kind, str(b.body)) for b in blocks]
        for name in DEFAULT_TOKENIZERS:
            assert s.token_counts(ids, name) == get_tokenizer(name).count_many(
                [str(b.body) for b in blocks]
            )
    finally:
        s.close()
