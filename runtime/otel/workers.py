"""Preparing OTLP exports in worker processes, so a receiver uses more than one core.

Owns: ``Preparer`` (a pool of spawned processes that run ``ingest.prepare_body``: decoding,
reading the spans, rebuilding each call's request and blocks, counting their tokens) and
``DEFAULT_WORKERS``. The receiver's own process keeps the store and does only ``commit``, the
one write; while it commits one request, a worker prepares the next, so concurrent exporters
are served on two cores where one process would use one (Python runs one thread at a time).

Invariants:
- A worker holds no store and never writes: what it returns is what ``prepare_body`` returns
  in the receiver's process (its chunks compressed as well, ``pack``), so a turn is the same
  bytes whoever prepared it.
- A request the worker refuses (``OtlpRejected``) is refused as if it was prepared here. A
  worker that dies (killed, out of memory) costs no request: that request is prepared in
  this process and the pool is started anew for the next one (logged, once per death).
- Workers are spawned, never forked: a fork of a process holding an open store (LMDB, a
  database connection) would share its handles. A worker whose receiver died without
  closing the pool (killed) ends within a second.
- A worker ignores SIGINT: Ctrl-C in the receiver's terminal reaches its whole process group,
  and the receiver, not its workers, decides what an interrupt stops (it closes the pool).
- What a worker raises reaches the receiver as an exception it can read: one that would not
  survive the trip between processes (or is not an ``Exception``) comes back as
  ``WorkerFailed`` with its type and message, never as a broken pool.
- ``workers=0`` prepares in the calling thread: the same results, on one core.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from runtime.otel.ingest import Prepared, prepare_body
from runtime.otel.wire import OtlpLimits, OtlpRejected

log = logging.getLogger("llm386.otel")
DEFAULT_WORKERS = 1  # with the receiver's own process: two cores busy
PARENT_CHECK_S = 0.5
_SPAWN = multiprocessing.get_context("spawn")


class WorkerFailed(RuntimeError):
    """What a worker raised, as its type and message, when the exception itself could not be
    sent back to the receiver."""


def _warm(tokenizers: Sequence[str]) -> None:
    """Start a new worker: ignore Ctrl-C (the receiver's to handle), watch its parent, and load
    the tokenizers before its first request waits for them."""
    from runtime.tokenizers import get_tokenizer

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()
    threading.Thread(target=_orphaned, args=(parent,), name="llm386-parent", daemon=True).start()
    for name in tokenizers:
        get_tokenizer(name)


def _orphaned(parent: int) -> None:
    """End this worker once the receiver that started it is gone (killed, never closed it):
    the pool's queue would otherwise keep it waiting for work forever."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _ready() -> bool:
    return True


def _prepare(*args: Any, **kwargs: Any) -> Prepared:
    """``prepare_body`` in a worker, raising only what the receiver can unpickle."""
    try:
        return prepare_body(*args, **kwargs)
    except OtlpRejected:
        raise
    except BaseException as exc:  # noqa: BLE001 - sent back, never lost with the pool
        if isinstance(exc, Exception) and _survives_pickling(exc):
            raise
        raise WorkerFailed(f"{type(exc).__name__}: {exc}") from None


def _survives_pickling(exc: Exception) -> bool:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure means it cannot make the trip
        return False
    return True


class Preparer:
    """``prepare_body`` in ``workers`` spawned processes (0: in the calling thread)."""

    def __init__(self, workers: int = DEFAULT_WORKERS, tokenizers: Sequence[str] = ()) -> None:
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, not {workers}")
        self.workers, self.tokenizers = workers, tuple(tokenizers)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.restarts = 0  # pools started again after a worker died

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=_SPAWN,
                                                 initializer=_warm, initargs=(self.tokenizers,))  # fmt: skip
            return self._pool

    def start(self) -> Preparer:
        """Start the workers now (and wait for them), not on the first request."""
        if self.workers:
            pool = self._executor()
            for future in [pool.submit(_ready) for _ in range(self.workers)]:
                future.result()
        return self

    def prepare(
        self, body: bytes, content_type: str | None, content_encoding: str | None,
        limits: OtlpLimits, *, max_block_bytes: int, tokenizers: Sequence[str],
    ) -> Prepared:  # fmt: skip
        """Return ``prepare_body(...)``, from a worker when there are workers."""
        args = (body, content_type, content_encoding, limits)
        names = tuple(tokenizers)
        if self.workers:
            pool = self._executor()
            try:
                return pool.submit(_prepare, *args, max_block_bytes=max_block_bytes,
                                   tokenizers=names, pack=True).result()  # fmt: skip
            except BrokenProcessPool:
                self._replace(pool)
        return prepare_body(*args, max_block_bytes=max_block_bytes, tokenizers=names)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:  # the first thread to see it; the others see the new one
                log.warning("an OTLP prepare worker died; this request was prepared in the "
                            "receiver's process and the workers were started again")  # fmt: skip
                self._pool = None
                self.restarts += 1
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
