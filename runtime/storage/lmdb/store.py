"""The block store on LMDB: the engine-neutral store over one LMDB environment, plus its checks.

``LmdbStore`` is :class:`~runtime.storage.blockstore.KvBlockStore` on an
:class:`~runtime.storage.lmdb.engine.LmdbEngine`; it adds only what is LMDB's own: refusing an
environment that holds another program's named databases, opening the block tables up front
(a read-only store without them is refused at open, as before), and the ``path`` and ``env``
attributes older callers use. Open stores with ``runtime.storage.open_store``, which also
attaches the pager's session index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

from runtime.errors import StoreNotAStore
from runtime.storage.blockstore import (
    DEFAULT_TOKENIZERS,
    SCHEMA_VERSION,
    KvBlockStore,
    PreparedPut,
    StoreHook,
)
from runtime.storage.codec import BLOCK_TABLES, META
from runtime.storage.interface import DEFAULT_MAX_BLOCK_BYTES
from runtime.storage.kv import Tables
from runtime.storage.lmdb.engine import LmdbEngine, LmdbTables

__all__ = ["DEFAULT_TOKENIZERS", "SCHEMA_VERSION", "LmdbStore", "PreparedPut", "StoreHook"]


class LmdbStore(KvBlockStore):
    """A block store in one LMDB environment on disk."""

    kv: LmdbEngine

    def __init__(
        self,
        path: str | Path,
        *,
        max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
        tokenizers: Sequence[str] = DEFAULT_TOKENIZERS,
        readonly: bool = False,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        engine = LmdbEngine(path, readonly=readonly, create=create)
        self.env = engine.env  # the env wrapper, for code not yet on the Tables seam
        super().__init__(engine, max_block_bytes=max_block_bytes, tokenizers=tokenizers)

    @property
    def location(self) -> str:
        return str(self.path)  # the path as given, as every message has always said

    def _open_layout(self) -> None:
        # Named databases are opened outside any transaction of ours: a read-only environment
        # cannot open one inside a read. Writable, only ``meta`` is opened before the stamp,
        # so the stamp's check of the environment's named databases sees no other of ours.
        for name in BLOCK_TABLES if self.kv.readonly else (META,):
            self.env.db(name.encode())
        super()._open_layout()
        for name in BLOCK_TABLES:
            self.env.db(name.encode())

    def _check_fresh(self, t: Tables) -> None:
        if t.count(META) or self._has_foreign_dbs(t):
            raise StoreNotAStore(f"{self.path} is an LMDB environment of another program")

    def _has_foreign_dbs(self, t: Tables) -> bool:
        known = {META.encode()}
        with cast(LmdbTables, t).txn.cursor() as cur:  # the main db lists named dbs
            return any(key not in known for key, _ in cur)
