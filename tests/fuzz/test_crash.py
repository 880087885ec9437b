"""SIGKILL during mixed writes: imports (two of one file at once), agent turns (two agents on one
session), page faults and purges from several processes. After every kill: no corrupt store, no
lost acknowledged write, no partial import, no traced turn without its reply.

Bounded in `make test` (20 kills); ``LLM386_FUZZ_LONG=1`` (what `make fuzz` sets) runs 200.
``LLM386_CRASH_REPORT=FILE`` writes the counts as JSON.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time

from runtime import open_store
from tests.fuzz.crash_support import Acks, Worker, check, spawn, wait_ready

LONG = os.environ.get("LLM386_FUZZ_LONG") == "1"
KILLS = 200 if LONG else 20
CHECK_EVERY = 50  # kills between full stops and checks in the long run
# The long run races two imports of one file and two agents on one session; the bounded one keeps
# one writer of each kind (tests/runtime/test_store_races.py races them in `make test`).
ROLES = ("import", "import", "agent", "agent", "fault", "purge") if LONG else (
    "import", "agent", "fault", "purge")  # fmt: skip


def _kill(worker: Worker, acks: Acks) -> None:
    worker.proc.send_signal(signal.SIGKILL)
    worker.proc.wait()
    assert worker.proc.stderr is not None
    worker.proc.stderr.close()
    acks.take(worker)


def _check(path, acks: Acks, kills: int) -> dict[str, int]:
    findings = check(path, acks)
    assert findings.problems == [], f"after {kills} kills: {findings.problems[:5]}"
    assert findings.lost == [], f"after {kills} kills: {findings.lost[:5]}"
    assert findings.partial_imports == findings.turns_without_reply == 0
    return {"kills": kills, "acknowledged": acks.total, "imports": len(acks.imports),
            "turns": len(acks.turns), "faults": len(acks.faults), "purges": len(acks.purged),
            "lost": 0, "problems": 0}  # fmt: skip


def test_sigkill_during_mixed_writes_loses_nothing_acknowledged(tmp_path):
    path, logs = tmp_path / "store", tmp_path / "logs"
    logs.mkdir()
    open_store(path).close()
    rng = random.Random(18)
    acks, kills, spawned = Acks(), 0, 0

    def start(role: str) -> Worker:
        nonlocal spawned
        spawned += 1
        return spawn(role, path, f"{role}{spawned}", logs)

    workers = [start(role) for role in ROLES]
    try:
        while kills < KILLS:
            i = rng.randrange(len(workers))
            wait_ready(workers[i])
            time.sleep(rng.uniform(0.05, 0.8))  # a random moment of its write loop
            _kill(workers[i], acks)
            kills += 1
            workers[i] = start(workers[i].role)
            if LONG and kills % CHECK_EVERY == 0:
                for w in workers:
                    _kill(w, acks)
                _check(path, acks, kills)
                workers = [start(role) for role in ROLES]
    finally:  # never leave a writer running, whatever failed
        for w in workers:
            if w.proc.returncode is None:
                _kill(w, acks)
    summary = _check(path, acks, kills)
    assert acks.imports and acks.turns and acks.faults and acks.purged
    if report := os.environ.get("LLM386_CRASH_REPORT"):
        with open(report, "w") as f:
            json.dump(summary, f)
