"""The only place the web app opens the runtime's store.

One store handle per store path per process, shared by every request thread (LMDB readers do
not block each other or the writer). A failed open is not cached: fix the path or the files and
the next request tries again. Tests point settings at a temporary store and call
:func:`reset_stores` between runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

from runtime import open_store
from runtime.indexes.snapshot import index_for
from runtime.inspect.sessions import forget_tables
from runtime.inspect.triage import forget_triage
from runtime.storage.interface import BlockStore
from runtime.storage.migrations import migrate
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import TraceStore

from .conf import web_config

_lock = threading.Lock()
_stores: dict[Path | str, BlockStore] = {}
_traces: dict[Path | str, TraceStore] = {}


def get_store() -> BlockStore:
    """Return the process-wide store at LLM386["STORE_PATH"], opening it on first use."""
    path = web_config().STORE_PATH
    with _lock:
        store = _stores.get(path)
        if store is None:
            store = open_store(path)  # raises StoreError subclasses with a message saying why
            if not store.kv.readonly:
                migrate(store.kv)  # a store of an older layout is upgraded in place
            # Keep the pager's term index in step with what this process writes (text search
            # in the sessions list reads it).
            index_for(store)
            _stores[path] = store
        return store


def get_traces() -> TraceStore:
    """Return the trace store kept in the same environment as :func:`get_store`'s store."""
    store = get_store()
    path = web_config().STORE_PATH
    with _lock:
        traces = _traces.get(path)
        if traces is None:
            traces = _traces[path] = KvTraceStore(store)
        return traces


def reset_stores() -> None:
    """Close and forget every open store (tests, and after a store is replaced on disk)."""
    with _lock:
        stores = list(_stores.values())
        _stores.clear()
        _traces.clear()
    forget_tables()
    forget_triage()
    for store in stores:
        store.close()
