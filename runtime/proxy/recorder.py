"""Recording off the response path: a bounded queue drained by one writer thread.

Owns: ``Recorder``. The server hands each finished exchange to ``submit`` (never blocks); the
writer thread takes whatever is queued, up to ``batch`` exchanges, and writes them in one store
write through ``runtime.proxy.turns.TurnWriter``, so a burst costs one commit, not one each.

Invariants:
- Nothing is lost silently: an exchange the queue has no room for, or whose write failed, is
  counted in ``lost`` and logged (route and reason, never a header or a body).
- A failed batch is retried one exchange at a time, so one exchange the store refuses does
  not take the others with it. While the last write failed, ``accepting`` is False: the server
  marks responses ``x-llm386-recorded: false`` (or refuses them with ``--fail-closed``) until
  a write succeeds again.
- A turn is durable (committed) before any reader can see it: readers only see commits.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from runtime.errors import Llm386Error
from runtime.proxy.exchange import Exchange
from runtime.proxy.turns import TurnWriter
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceStore

log = logging.getLogger("llm386.proxy")
_STOP = object()


class Recorder:
    """A bounded queue of exchanges and the one thread that writes them as turns."""

    def __init__(
        self, store: BlockStore, traces: TraceStore, *, capacity: int = 10_000, batch: int = 256
    ) -> None:
        self.store = store
        self.writer = TurnWriter(store, traces)
        self.capacity, self.batch = capacity, batch
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._lock = threading.Lock()
        self.submitted = self.recorded = self.lost = 0
        self.healthy = True
        self.last_error: str | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llm386-recorder", daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until the writer has loaded what every write needs (tokenizers, profiles)."""
        return self._ready.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    @property
    def accepting(self) -> bool:
        """Whether a record submitted now can be taken: the store writes and the queue has room."""
        return self.healthy and not self._queue.full()

    def submit(self, exchange: Exchange) -> bool:
        """Queue an exchange to be recorded; return False (and count it lost) if there is no room."""
        try:
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
        with self._lock:
            return {"recorded": self.recorded, "lost": self.lost, "queue": self._queue.qsize(),
                    "queue_capacity": self.capacity, "recording": self.healthy,
                    "last_error": self.last_error, "store": str(getattr(self.store, "path", ""))}  # fmt: skip

    def _warm(self) -> None:
        # Loading the tokenizers takes about a second; done here, before the first call, so
        # the first exchanges are not queued behind it. A failure shows at the first write.
        from runtime.profiles.catalog import get_profile
        from runtime.tokenizers import get_tokenizer

        try:
            for name in getattr(self.store, "tokenizers", ()):
                get_tokenizer(name)
            get_profile("claude-sonnet-4-6")
        except Llm386Error as exc:
            log.error("the recorder could not load its tokenizers: %s", exc)
        finally:
            self._ready.set()

    def _run(self) -> None:
        self._warm()
        while True:
            items = [self._queue.get()]
            while len(items) < self.batch:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in items)
            self._write([item for item in items if item is not _STOP])
            for _ in items:
                self._queue.task_done()
            if stop:
                return

    def _write(self, batch: list[Exchange]) -> None:
        if not batch:
            return
        try:
            self.writer.write_batch(batch)
        except Exception as exc:
            if len(batch) == 1:
                self._failed(batch[0], exc)
                return
            for exchange in batch:  # one at a time: keep every exchange the store takes
                self._write([exchange])
            return
        with self._lock:
            self.recorded += len(batch)
            self.healthy, self.last_error = True, None

    def _failed(self, exchange: Exchange, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        with self._lock:
            self.lost += 1
            self.healthy, self.last_error = False, reason
        log.error("LOST the record of a %s call: the store refused it (%s)",
                  exchange.api.path, reason)  # fmt: skip
