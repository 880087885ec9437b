"""Progress of long work: a bar on a terminal, plain progress lines everywhere else (CI, logs).

Imports, demo loading, copies between stores, re-indexing, migrations and benchmarks report
through :class:`Progress`. It writes to stderr only, so stdout stays the command's output (a
prompt's bytes, JSON for scripts). Nothing here reaches a prompt, so reading the clock is fine.

Invariants:
- On a terminal the bar is redrawn in place (``\\r``) at most every ``redraw_s`` seconds and
  finished with a newline; elsewhere a line is printed when the work crosses each 10% step (or,
  with no total, every ``line_every_s`` seconds), so CI logs show movement without flooding.
- ``LLM386_PROGRESS=bar|lines|off`` forces a mode (tests and scripts use it).
- The last report always states the total done and the elapsed time.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TextIO, TypeVar

T = TypeVar("T")
MODES = ("bar", "lines", "off")
BAR_WIDTH = 28


def _mode(stream: TextIO) -> str:
    forced = os.environ.get("LLM386_PROGRESS", "").strip().lower()
    if forced in MODES:
        return forced
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


class Progress:
    """Report ``done`` of ``total`` units of one named job."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "",
        stream: TextIO | None = None,
        mode: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        redraw_s: float = 0.1,
        line_every_s: float = 5.0,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.mode = mode if mode in MODES else _mode(self.stream)
        self.clock, self.redraw_s, self.line_every_s = clock, redraw_s, line_every_s
        self.done = 0
        self._start = self._last = clock()
        self._step = -1  # the last 10% step reported in line mode
        self._finished = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(failed=kind is not None)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done and report if it is time to."""
        self.done += n
        now = self.clock()
        if self.mode == "bar" and now - self._last >= self.redraw_s:
            self._last = now
            self._write("\r" + self._bar_text(), end="")
        elif self.mode == "lines" and self._line_due(now):
            self._last = now
            self._write(self._line_text())

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """Yield each item, counting one unit after it is handled."""
        for item in items:
            yield item
            self.advance()

    def finish(self, *, failed: bool = False) -> None:
        """Print the final report once (done, total and elapsed time)."""
        if self._finished or self.mode == "off":
            self._finished = True
            return
        self._finished = True
        elapsed = self.clock() - self._start
        state = "stopped" if failed else "done"
        summary = f"{self.label}: {state}, {self._count_text()} in {elapsed:.1f}s"
        self._write(("\r" + self._bar_text() + "\n" if self.mode == "bar" else "") + summary)

    # -- text ---------------------------------------------------------------------------
    def _line_due(self, now: float) -> bool:
        if self.total:
            step = min(10, self.done * 10 // self.total)
            if step > self._step:
                self._step = step
                return True
            return False
        return now - self._last >= self.line_every_s

    def _count_text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            return f"{self.done:,}/{self.total:,}{unit} ({self.done * 100 // self.total}%)"
        return f"{self.done:,}{unit}"

    def _line_text(self) -> str:
        return f"{self.label}: {self._count_text()}"

    def _bar_text(self) -> str:
        if not self.total:
            return f"{self.label} {self._count_text()}"
        filled = min(BAR_WIDTH, self.done * BAR_WIDTH // self.total)
        return f"{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {self._count_text()}"

    def _write(self, text: str, end: str = "\n") -> None:
        try:
            self.stream.write(text + end)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the work
            self.mode = "off"
