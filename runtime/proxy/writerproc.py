"""The recorder's writer in a process of its own, so it shares neither the GIL nor a core's
time with the event loop that forwards calls.

Owns: ``write_batch`` (one batch written as turns, retried one exchange at a time when the
store refuses it; what the thread writer and the process writer both run), ``BatchResult``,
and ``serve`` (the process's main: open the store, load the tokenizers, then write each batch
the parent sends and answer with its result).

Invariants:
- The process writes only what the parent sends, one batch at a time, and answers each batch
  with how many exchanges were written and why each other one was not, so the parent's
  counters stay exact. It never logs a header or a body (a failure's reason names the route).
- It opens the store itself (by the target the parent opened): LMDB and PostgreSQL both take
  writers from several processes, and a reader sees a turn only once its batch has committed.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from runtime.errors import Llm386Error
from runtime.proxy.exchange import Exchange
from runtime.proxy.sessions import TABLE
from runtime.proxy.turns import TurnWriter
from runtime.storage.interface import BlockStore


@dataclass
class BatchResult:
    """What writing a batch did: exchanges written, (route, reason) of each one not written,
    and whether the last write worked (the recorder's ``recording`` state)."""

    recorded: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    ok: bool = True
    cpu_seconds: float = 0.0  # the writer's own CPU time for the batch


def write_timed(writer: TurnWriter, batch: list[Exchange]) -> BatchResult:
    """Return the result of writing ``batch``, with the CPU time the writing thread spent."""
    start = time.thread_time()
    result = write_batch(writer, batch, BatchResult())
    result.cpu_seconds = time.thread_time() - start
    return result


def write_batch(writer: TurnWriter, batch: list[Exchange], result: BatchResult) -> BatchResult:
    """Write ``batch`` in one store write; if the store refuses it, one exchange at a time, so
    one exchange the store refuses does not take the others with it."""
    if not batch:
        return result
    try:
        writer.write_batch(batch)
    except Exception as exc:
        if len(batch) == 1:
            result.failures.append((batch[0].api.path, f"{type(exc).__name__}: {exc}"[:300]))
            result.ok = False
            return result
        for exchange in batch:
            write_batch(writer, [exchange], result)
        return result
    result.recorded += len(batch)
    result.ok = True
    return result


PROBE = "probe"  # asks the writer process whether the store takes writes again
_PROBE_KEY = b"\0probe"  # put and deleted in one write: never seen by a reader


def probe(writer: TurnWriter) -> str | None:
    """Return why the store refuses a write now, or None when it takes one: a key of the
    proxy's table is put and deleted in one store write, which commits (so a full disk or map,
    a read-only store or a database that is down still refuses it) and leaves nothing behind."""

    def touch(t: Any) -> None:
        t.put(TABLE, _PROBE_KEY, b"")
        t.delete(TABLE, _PROBE_KEY)

    try:
        writer.store.kv.write(touch)
    except Exception as exc:  # what the store says is the answer, whatever its type
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


def warm(store: BlockStore) -> str | None:
    """Load what every write needs (tokenizers, a model profile); return the problem, if any.

    Loading the tokenizers takes about a second: done before the first call, so the first
    exchanges are not queued behind it. A failure shows again at the first write."""
    from runtime.profiles.catalog import get_profile
    from runtime.tokenizers import get_tokenizer

    try:
        for name in getattr(store, "tokenizers", ()):
            get_tokenizer(name)
        get_profile("claude-sonnet-4-6")
    except Llm386Error as exc:
        return str(exc)
    return None


def serve(conn: Connection, target: Any) -> None:
    """The writer process: answer ("ready", problem) once warm, then each batch with its
    ``BatchResult`` and each ``PROBE`` with ``probe``'s answer; on None (or the parent gone), close the store and answer ("bye",)."""
    from runtime import open_store
    from runtime.storage.tracestore import KvTraceStore

    # Ctrl-C reaches the whole process group: the parent decides when this stops (after the
    # queue is written), so the interrupt must not cut a batch short here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="llm386 proxy: %(message)s", stream=sys.stderr)
    try:
        store = open_store(target)
    except Exception as exc:  # the parent reports it and runs without a writer
        conn.send(("failed", f"{type(exc).__name__}: {exc}"[:300]))
        conn.close()
        return
    try:
        writer = TurnWriter(store, KvTraceStore(store))
        conn.send(("ready", warm(store)))
        while True:
            try:
                batch = conn.recv()
            except EOFError:  # the parent is gone: nothing more will come
                return
            if batch is None:
                break
            conn.send(probe(writer) if batch == PROBE else write_timed(writer, batch))
    finally:
        store.close()
    conn.send(("bye",))
    conn.close()
