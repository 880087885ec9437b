"""The trace store on an LMDB block store: ``KvTraceStore`` under its former name.

The trace store is written once on the key-value seam (``runtime.storage.tracestore``); this
name stays for callers that open it from a path or hand it a raw LMDB transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.errors import StoreError
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.engine import LmdbTables
from runtime.storage.tracechunks import pack_bytes
from runtime.storage.tracerows import FLAGGED, TABLES, unpack_bytes
from runtime.storage.tracestore import KvTraceStore
from runtime.tracing.records import StoredTrace

__all__ = ["FLAGGED", "LmdbTraceStore", "pack_bytes", "unpack_bytes"]


class LmdbTraceStore(KvTraceStore):
    """Trace records in the LMDB environment of a block store (or of the store at a path)."""

    def __init__(self, store_or_path: Any) -> None:
        if isinstance(store_or_path, str | Path):
            from runtime.storage.lmdb.store import LmdbStore

            store_or_path = LmdbStore(store_or_path)  # checks the folder is an llm386 store
        self.env: lmdbenv.Env = store_or_path.env
        for name in TABLES:  # opened before any transaction that reads them (LMDB's rule)
            with contextlib.suppress(StoreError):  # read-only, no such table: reading says so
                self.env.db(name.encode())
        super().__init__(store_or_path)

    def record_many_txn(self, txn: lmdbenv.Txn, items: Sequence[StoredTrace]) -> None:
        """Record ``items`` in the caller's raw LMDB write transaction (checked by the caller)."""
        self.record_many_in(LmdbTables(self.env, txn, readonly=False), items)
