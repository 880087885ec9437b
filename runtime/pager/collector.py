"""Pausing Python's cyclic garbage collector around one page or pack.

Owns: ``collector_paused()``, a re-entrant, thread-safe pause of the cyclic collector.

Why: a page or pack makes thousands of short-lived tuples, dicts and dataclasses. With the
collector on, they trigger several young-generation collections per call, and the ones alive at
that moment are promoted to the old generation, which soon forces a full collection of every
object in the process (the store's caches included): measured at 3 ms of a 1,000-block page's
8 ms p50, and 50-500 ms spikes at p99. Nothing a page or pack makes is cyclic garbage, so
reference counting frees it all; whatever is left is collected as usual once the pause ends.

Invariants:
- Nesting and threads: the collector is off while any pause is open, and is switched back on
  when the last one closes, only if it was on when the first one opened.
- It changes no result, only when the collector runs.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_open = 0  # pauses currently open, in any thread
_was_enabled = False  # the collector's state when the first open pause began


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Keep the cyclic collector off for the body (see the module docstring)."""
    global _open, _was_enabled
    with _lock:
        if _open == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _open += 1
    try:
        yield
    finally:
        with _lock:
            _open -= 1
            if _open == 0 and _was_enabled:
                gc.enable()
