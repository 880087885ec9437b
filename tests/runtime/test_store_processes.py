"""The store across processes: a killed writer loses nothing it acknowledged; readers see writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from runtime import NewBlock, open_store
from runtime.storage.lmdb import env as lmdbenv

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import sys
    from runtime import NewBlock, open_store
    store = open_store(sys.argv[1])
    i = 0
    while True:
        if i % 10 == 0:
            batch = [NewBlock("fact", f"batch {i} item {j}") for j in range(5)]
            store.put_many("crash", batch)
        else:
            store.put("crash", NewBlock("user-message", f"single {i}"))
        print(i, flush=True)  # printed only after the put returned
        i += 1
    """
)


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env
    )


def test_sigkilled_writer_loses_no_acknowledged_put(tmp_path):
    path = tmp_path / "store"
    open_store(path).close()
    writer = _spawn(WRITER, str(path))
    assert writer.stdout is not None
    acknowledged = -1
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 60:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    store = open_store(path)
    assert store.verify().ok
    bodies = {e.body for e in store.entries("crash")}
    for i in range(acknowledged + 1):
        expected = f"batch {i} item 4" if i % 10 == 0 else f"single {i}"
        assert expected in bodies, f"put {i} returned but is missing after the crash"


READER = textwrap.dedent(
    """
    import sys, time
    from runtime import open_store
    from runtime.errors import SessionNotFound
    store = open_store(sys.argv[1])
    deadline = time.monotonic() + 60
    seen = 0
    while seen < 200 and time.monotonic() < deadline:
        try:
            seen = store.session_info("live").count
        except SessionNotFound:
            seen = 0
        time.sleep(0.01)
    print(seen, flush=True)
    """
)


def test_a_reader_process_sees_a_writer_process_grow_the_store(tmp_path):
    path = tmp_path / "store"
    writer_store = open_store(path)
    reader = _spawn(READER, str(path))
    time.sleep(0.2)
    for i in range(200):
        # Large bodies force the map to grow while the other process is reading.
        writer_store.put("live", NewBlock("document-chunk", f"{i} " + "z" * 200_000))
    out, _ = reader.communicate(timeout=120)
    assert int(out.strip()) == 200


def _pause_then_get(t):
    time.sleep(0.001)
    return t.get("blocks", b"x")


def _read_in_threads(store, until, errors):
    def loop():
        while not until.is_set():
            try:
                store.sessions()
                # Use the transaction after each pause: an invalidated one fails on use.
                store.kv.read(lambda t: [_pause_then_get(t) for _ in range(20)])
            except Exception as exc:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(repr(exc))
                return

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    return threads


def test_reader_threads_survive_another_process_growing_the_map(tmp_path):
    path = tmp_path / "store"
    store = open_store(path, tokenizers=())
    store.put("s", NewBlock("fact", "hello"))
    until, errors = threading.Event(), []
    threads = _read_in_threads(store, until, errors)
    try:
        grower = _spawn(GROWER, str(path))
        grower.communicate(timeout=180)
        for _ in range(50):  # adopting the new size must not break the reader threads
            store.session_count()
            time.sleep(0.01)
    finally:
        until.set()
        for thread in threads:
            thread.join()
    assert errors == []
    assert store.env.env.info()["map_size"] > lmdbenv.INITIAL_MAP_SIZE


GROWER = textwrap.dedent(
    """
    import sys
    from runtime import NewBlock, open_store
    store = open_store(sys.argv[1], tokenizers=())
    for i in range(90):  # ~90 MB: past the 64 MiB initial map
        store.put("there", NewBlock("document-chunk", f"{i} " + "y" * 1_000_000))
    """
)
