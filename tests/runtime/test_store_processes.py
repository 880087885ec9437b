"""The store across processes: a killed writer loses nothing it acknowledged; readers see writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from runtime import LmdbStore, NewBlock

ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import sys
    from runtime import LmdbStore, NewBlock
    store = LmdbStore(sys.argv[1])
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
    LmdbStore(path).close()
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
    store = LmdbStore(path)
    assert store.verify().ok
    bodies = {e.body for e in store.entries("crash")}
    for i in range(acknowledged + 1):
        expected = f"batch {i} item 4" if i % 10 == 0 else f"single {i}"
        assert expected in bodies, f"put {i} returned but is missing after the crash"


READER = textwrap.dedent(
    """
    import sys, time
    from runtime import LmdbStore
    store = LmdbStore(sys.argv[1])
    deadline = time.monotonic() + 60
    seen = 0
    while seen < 200 and time.monotonic() < deadline:
        try:
            seen = store.session_info("live").count
        except Exception:
            seen = 0
        time.sleep(0.01)
    print(seen, flush=True)
    """
)


def test_a_reader_process_sees_a_writer_process_grow_the_store(tmp_path):
    path = tmp_path / "store"
    writer_store = LmdbStore(path)
    reader = _spawn(READER, str(path))
    time.sleep(0.2)
    for i in range(200):
        # Large bodies force the map to grow while the other process is reading.
        writer_store.put("live", NewBlock("document-chunk", f"{i} " + "z" * 200_000))
    out, _ = reader.communicate(timeout=120)
    assert int(out.strip()) == 200
