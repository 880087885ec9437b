"""Running writer processes (``crash_worker``) and checking a store against what they acknowledged."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime import KvBlockStore, open_store
from runtime.paging.faults import load_state
from runtime.storage.sessioncheck import check_sessions, reply_ids
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import TraceOrigin

ROOT = Path(__file__).resolve().parents[2]
TURNS_PER_IMPORT = 5  # atomic_support.transcript: the tool turn, three answers, the goodbye


@dataclass
class Worker:
    role: str
    name: str
    out: Path
    proc: subprocess.Popen[bytes]

    def lines(self) -> list[str]:
        text = self.out.read_text() if self.out.exists() else ""
        # A line without its newline was cut by the kill mid-print: not acknowledged.
        return text.split("\n")[:-1]

    def ready(self) -> bool:
        return "ready" in self.lines()


def spawn(role: str, store: Path | str, name: str, logs: Path, count: int | None = None) -> Worker:
    out = logs / f"{name}.out"
    args = [sys.executable, "-m", "tests.fuzz.crash_worker", role, str(store), name]
    args += [] if count is None else [str(count)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with out.open("wb") as sink:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.PIPE)
    return Worker(role, name, out, proc)


def wait_ready(worker: Worker, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not worker.ready():
        if worker.proc.poll() is not None:
            raise AssertionError(f"{worker.name} died: {worker.proc.stderr.read().decode()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise AssertionError(f"{worker.name} did not start")
        time.sleep(0.02)


@dataclass
class Acks:
    imports: set[str] = field(default_factory=set)
    turns: set[str] = field(default_factory=set)
    faults: set[str] = field(default_factory=set)
    purged: set[str] = field(default_factory=set)
    blocks: set[str] = field(default_factory=set)  # "SESSION BLOCK_ID"

    def take(self, worker: Worker) -> None:
        for line in worker.lines():
            kind, _, value = line.partition(" ")
            bucket = {"import": self.imports, "turn": self.turns, "fault": self.faults,
                      "purged": self.purged, "block": self.blocks}.get(kind)  # fmt: skip
            if bucket is not None:
                bucket.add(value)

    @property
    def total(self) -> int:
        return (len(self.imports) + len(self.turns) + len(self.faults) + len(self.purged)
                + len(self.blocks))  # fmt: skip


@dataclass(frozen=True)
class Findings:
    problems: list[str]
    lost: list[str]
    partial_imports: int
    turns_without_reply: int


def check(path: Path | str, acks: Acks) -> Findings:
    """Verify the store and look for every acknowledged write in it."""
    store = open_store(path)
    traces = KvTraceStore(store)
    problems = [
        p.code + ": " + p.detail for p in store.verify().problems + traces.verify().problems
    ]
    cross = check_sessions(store, traces)
    problems += [p.code + ": " + p.detail for p in cross]
    lost: list[str] = []
    held = {s.session for s in store.sessions()}
    for session in sorted(acks.imports):
        turns = [cid for _, cid in traces.turns(session)]
        if session not in held or len(turns) != TURNS_PER_IMPORT:
            lost.append(f"import {session} ({len(turns)} turns)")
    lost += [f"purge {s}" for s in sorted(acks.purged) if s in held or traces.turns(s)]
    lost += _lost_turns(store, traces, acks)
    lost += _lost_blocks(store, acks)
    if acks.faults:
        recorded = {f.block_id for f in load_state(store, "faults-shared").faults}
        lost += [f"fault {b}" for b in sorted(acks.faults - recorded)]
    return Findings(
        problems, lost, sum(p.code == "partial-import" for p in cross),
        sum(p.code == "turn-without-reply" for p in cross),
    )  # fmt: skip


def _lost_blocks(store: KvBlockStore, acks: Acks) -> list[str]:
    """Return each acknowledged block its session lacks, and sessions whose count is off."""
    wanted: dict[str, list[str]] = {}
    for ack in sorted(acks.blocks):
        session, _, block = ack.partition(" ")
        wanted.setdefault(session, []).append(block)
    lost: list[str] = []
    for session, blocks in sorted(wanted.items()):
        held = [e.id for e in store.entry_refs(session)]
        lost += [f"block {block} of {session}" for block in blocks if block not in set(held)]
        if len(held) != len(blocks):
            lost.append(f"{session} holds {len(held)} entries, {len(blocks)} acknowledged")
    return lost


def _lost_turns(store: KvBlockStore, traces: KvTraceStore, acks: Acks) -> list[str]:
    session = "agent-shared"
    records = traces.get_many([cid for _, cid in traces.turns(session)])
    live = [r for r in records if r.origin is TraceOrigin.LIVE]
    lost = [f"turn {cid}" for cid in sorted(acks.turns - {r.call_id for r in live})]
    numbers = [r.turn for r in live]
    if len(numbers) != len(set(numbers)):
        lost.append(f"{len(numbers) - len(set(numbers))} reused turn numbers")
    held = {e.id for e in store.entry_refs(session)} if live else set()
    lost += [f"reply of {r.call_id}" for r in live if (ids := reply_ids(r)) and not set(ids) & held]
    return lost
