"""Recording off the response path: a bounded queue drained by one writer.

Owns: ``Recorder``. The server hands each finished exchange to ``submit`` (never blocks); the
writer takes whatever is queued, up to ``batch`` exchanges, and writes them in one store
write through ``runtime.proxy.turns.TurnWriter``, so a burst costs one commit, not one each.
The writer is a thread of this process, or, with ``process=`` the store's target (as
``llm386 proxy`` runs it), a process of its own (``runtime.proxy.writerproc``) that a thread
here feeds one batch at a time, so writing shares neither the GIL nor a core with forwarding.

Invariants:
- Nothing is lost silently: an exchange the queue has no room for, or whose write failed, is
  counted in ``lost`` and logged (route and reason, never a header or a body).
- A failed batch is retried one exchange at a time, so one exchange the store refuses does
  not take the others with it. While the last write failed, ``accepting`` is False: the server
  marks responses ``x-llm386-recorded: false`` (or refuses them with ``--fail-closed``) until
  a write succeeds again.
- A writer process that dies is seen within a second (``recording`` turns false, the status
  says so); the batch it was writing is counted lost (it may have been committed just before)
  and a new process is started, at most ``restarts`` times; after that, recording stays down
  and says so, every further record counted lost.
- A turn is durable (committed) before any reader can see it: readers only see commits.
- ``close(timeout)`` that gives up on the writer counts the batch in flight and the rest of
  the queue lost (and logs it); nothing is written or counted after it returns.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from runtime.proxy.exchange import Exchange
from runtime.proxy.turns import TurnWriter
from runtime.proxy.writerproc import PROBE, BatchResult, probe, serve, warm, write_timed
from runtime.storage.interface import BlockStore
from runtime.storage.open import StoreTarget
from runtime.tracing.records import TraceStore

log = logging.getLogger("llm386.proxy")
_STOP = object()
_SPAWN = multiprocessing.get_context("spawn")  # never fork a process holding an open store
PROBE_SECONDS = 2.0  # while recording is down and nothing is queued: how often to try a write


class Recorder:
    """A bounded queue of exchanges and the one writer (a thread or a process) of their turns."""

    def __init__(
        self, store: BlockStore, traces: TraceStore, *, capacity: int = 10_000, batch: int = 256,
        process: StoreTarget | None = None, restarts: int = 3,
    ) -> None:  # fmt: skip
        self.store = store
        # Where records go, safe to show: a path, or a URL without its password.
        self._where = str(getattr(store, "location", store.kv.location))
        self.target, self.restarts = process, restarts
        self.writer = TurnWriter(store, traces) if process is None else None
        self._child: BaseProcess | None = None
        self._pid: int | None = None  # the writer process's, for the status page
        self._conn: Connection | None = None
        self.started_processes = 0
        self.capacity, self.batch = capacity, batch
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self.submitted = self.recorded = self.lost = 0
        self._inflight = 0  # exchanges in the batch being written
        self._closed = False  # close() gave up on the writer: nothing is counted after it
        self.cpu_seconds = 0.0  # the writer's CPU time for the batches it wrote
        self.healthy = True
        self.last_error: str | None = None
        self._probed = 0.0  # time.monotonic() of the last probe
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm386-recorder", daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until the writer has loaded what every write needs (tokenizers, profiles)."""
        return self._ready.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer (and its process).

        What is not written within ``timeout`` (the batch being written, and the queue) is
        counted lost and logged; nothing is written or counted after this returns."""
        if self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=timeout)
                self._thread.join(timeout)
            except queue.Full:
                pass  # no room even for the stop: the writer is far behind
            if self._thread.is_alive():
                self._give_up()
        self._stop_child(timeout)

    def _give_up(self) -> None:
        """Count the batch being written and everything queued lost, and stop the writer."""
        drained = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            drained += item is not _STOP
            self._queue.task_done()
        with self._lock:
            lost = self._inflight + drained
            self.lost += lost
            self._inflight, self._closed = 0, True
            self.healthy = False
            self.last_error = "the proxy stopped before these calls were written"
        log.error("LOST the records of %d calls: the proxy stopped before they were written "
                  "(the batch being written may have been recorded)", lost)  # fmt: skip
        with contextlib.suppress(queue.Full):  # (only a racing submit could have filled it)
            self._queue.put_nowait(_STOP)  # the writer stops after the batch it is in
        child = self._child
        if child is not None:
            with contextlib.suppress(ValueError, OSError):  # closed or gone already
                child.kill()  # the batch it is writing is abandoned; the next join is quick

    @property
    def accepting(self) -> bool:
        """Whether a record submitted now can be taken: the store writes and the queue has room."""
        return self.healthy and self._writer_up() and not self._queue.full()

    def _writer_up(self) -> bool:
        if self.target is None:
            return True
        child = self._child
        try:
            return child is not None and child.is_alive()
        except ValueError:  # the writer thread closed it just now: it is being replaced
            return False

    def submit(self, exchange: Exchange) -> bool:
        """Queue an exchange to be recorded; return False (and count it lost) if there is no room."""
        try:
            if self._closed:
                raise queue.Full  # nothing will write it
            self._queue.put_nowait(exchange)
        except queue.Full:
            with self._lock:
                self.lost += 1
            return False
        with self._lock:
            self.submitted += 1
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every submitted exchange is written or lost; return whether it got there."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def status(self) -> dict[str, Any]:
        up = self._writer_up()
        pid = self._pid
        with self._lock:
            out: dict[str, Any] = {
                "recorded": self.recorded, "lost": self.lost, "queue": self._queue.qsize(),
                "queue_capacity": self.capacity, "recording": self.healthy and up,
                "last_error": self.last_error, "store": self._where,
            }  # fmt: skip
        if self.target is not None:
            out["writer"] = {"process": pid, "alive": up,
                             "started": self.started_processes}  # fmt: skip
        return out

    def _warm(self) -> None:
        try:
            if self.target is not None:
                self._start_child()
                return
            problem = warm(self.store)
            if problem is not None:
                log.error("the recorder could not load its tokenizers: %s", problem)
        finally:
            self._ready.set()

    def _next(self) -> Any:
        """Return the next queued item; meanwhile, see to it that a writer process runs."""
        while True:
            try:
                return self._queue.get(timeout=1.0)
            except queue.Empty:
                if self.target is not None and not self._writer_up():
                    self._restart("stopped")
                elif not self.healthy and time.monotonic() - self._probed >= PROBE_SECONDS:
                    self._probe()

    def _probe(self) -> None:
        """See whether the store takes a write again, and if so, say recording is back.

        Without it, a proxy running --fail-closed would stay down after any failed write (a
        disk since freed, a database back up): it refuses every call, so no record comes to
        show that writes work again."""
        self._probed = time.monotonic()
        if self._closed:
            return
        if self.writer is not None:
            problem = probe(self.writer)
        elif self._conn is None or not self._writer_up():
            return  # no writer process: restarting it is _restart's business
        else:
            try:
                self._conn.send(PROBE)
                problem = self._conn.recv()
            except (EOFError, OSError):  # it died: _next sees it and starts another
                return
        with self._lock:
            if self._closed or self.healthy or problem is not None:
                return
            self.healthy, self.last_error = True, None
        log.warning("recording is back: the store takes writes again")

    def _run(self) -> None:
        self._warm()
        while True:
            items = [self._next()]
            while len(items) < self.batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in items)
            batch = [item for item in items if item is not _STOP]
            with self._lock:  # close() counts what is in flight: no batch escapes both
                closed = self._closed
                if closed:
                    self.lost += len(batch)
                else:
                    self._inflight = len(batch)
            if closed and batch:
                log.error("LOST the records of %d calls: the proxy stopped before they were "
                          "written", len(batch))  # fmt: skip
            elif not closed:
                self._write(batch)
            for _ in items:
                self._queue.task_done()
            if stop:
                return

    def _write(self, batch: list[Exchange]) -> None:
        if not batch:
            return
        if self.writer is not None:
            self._count(write_timed(self.writer, batch))
            return
        if not self._writer_up():
            self._restart("stopped")
        if self._conn is None or not self._writer_up():
            self._lose(batch, self.last_error or "the recording process is down")
            return
        try:
            self._conn.send(batch)
            result = self._conn.recv()
        except (EOFError, OSError) as exc:  # it died while writing this batch
            why = f"the recording process died while writing ({type(exc).__name__})"
            self._lose(batch, why + "; these calls may have been recorded just before")
            self._restart("died")
            return
        except Exception as exc:  # e.g. a batch that cannot be sent: lost, and said so
            self._lose(batch, f"the batch could not reach the recording process ({exc})"[:300])
            return
        self._count(result)

    def _count(self, result: BatchResult) -> None:
        with self._lock:
            if self._closed:
                return  # counted lost by close(), which gave up waiting for it
            self._inflight = 0
            self.recorded += result.recorded
            self.cpu_seconds += result.cpu_seconds
            self.lost += len(result.failures)
            if result.failures:
                self.last_error = result.failures[-1][1]
            self.healthy = result.ok
            if result.ok:
                self.last_error = None
        for path, reason in result.failures:
            log.error("LOST the record of a %s call: the store refused it (%s)", path, reason)

    def _lose(self, batch: list[Exchange], reason: str) -> None:
        with self._lock:
            if self._closed:
                return  # counted lost by close(), which gave up waiting for it
            self._inflight = 0
            self.lost += len(batch)
            self.healthy, self.last_error = False, reason
        log.error("LOST the records of %d calls: %s", len(batch), reason)

    # -- the writer process ---------------------------------------------------------------
    def _start_child(self) -> bool:
        """Start a writer process and wait until it is ready; return whether it is."""
        parent, child = _SPAWN.Pipe()
        proc = _SPAWN.Process(target=serve, args=(child, self.target), name="llm386-recorder",
                              daemon=True)  # fmt: skip
        self.started_processes += 1
        reply: Any = None
        try:
            proc.start()
            child.close()
            if parent.poll(120):
                reply = parent.recv()
        except (EOFError, OSError, RuntimeError) as exc:  # RuntimeError: spawn refused
            reply = ("failed", f"{type(exc).__name__}: {exc}"[:300])
        finally:
            child.close()
        if not (isinstance(reply, tuple) and reply[0] == "ready"):
            why = reply[1] if isinstance(reply, tuple) and len(reply) > 1 else "it did not start"
            if proc.pid is not None:
                self._end(proc, 5.0)
            parent.close()
            with self._lock:
                self.healthy, self.last_error = False, f"the recording process failed: {why}"
            log.error("recording is DOWN: the recording process failed (%s)", why)
            return False
        if reply[1] is not None:
            log.error("the recorder could not load its tokenizers: %s", reply[1])
        self._child, self._conn, self._pid = proc, parent, proc.pid
        return True

    def _restart(self, what: str) -> None:
        if self._closed:
            return  # closing: close() stops the process
        old, conn = self._child, self._conn
        self._child = self._conn = None
        code = None
        if old is not None and conn is not None:
            code = self._end(old, 5.0)
            conn.close()
        restarts = self.started_processes - 1
        if restarts >= self.restarts:
            if old is None:
                return  # said already, when the last one went
            with self._lock:
                self.healthy = False
                self.last_error = (f"the recording process {what} (exit code {code}) and was "
                                   f"restarted {restarts} times already: recording is down; "
                                   "restart llm386 proxy")  # fmt: skip
            log.error("recording is DOWN: %s", self.last_error)
            return
        log.error("the recording process %s (exit code %s): starting a new one", what, code)
        if self._start_child():
            with self._lock:
                self.healthy, self.last_error = True, None

    def _stop_child(self, timeout: float) -> None:
        proc, conn = self._child, self._conn
        self._child = self._conn = None
        if proc is None or conn is None:
            return
        try:
            conn.send(None)
            if conn.poll(timeout):
                conn.recv()  # ("bye",): the store is closed
        except (EOFError, OSError):
            pass  # it is gone already
        self._end(proc, timeout)
        conn.close()

    @staticmethod
    def _end(proc: BaseProcess, timeout: float) -> int | None:
        """Wait for ``proc`` to end (killing it after ``timeout``); return its exit code."""
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)
        code = proc.exitcode
        proc.close()
        return code
