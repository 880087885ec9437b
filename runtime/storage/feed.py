"""The change feed: how derived indexes stay in step with the block store, on any backend.

A subscriber (the pager's session index today; BM25, block uses and others may follow) is told
about every change inside the same write transaction as the change, through the engine-neutral
:class:`~runtime.storage.kv.Tables` of that transaction, so an index can never be left behind by
a crashed writer: it commits with the change or not at all. Because every subscriber derives its
tables only from what the feed tells it, its tables can be dropped and rebuilt from the store's
entries at any time (``llm386 reindex``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from runtime.blocks import Edge, Entry
from runtime.storage.kv import Tables


class ChangeFeed(Protocol):
    """A derived index kept in step with the store, inside the same write transaction."""

    def on_put(self, t: Tables, entries: list[Entry]) -> None:
        """``entries`` were appended (in session and seq order)."""

    def on_remove(self, t: Tables, entries: list[Entry]) -> None:
        """``entries`` were removed (their blocks may be gone too)."""

    def on_edges(self, t: Tables, edges: Sequence[Edge]) -> None:
        """``edges`` were added (after the blocks they join)."""

    def on_meta(self, t: Tables, session: str) -> None:
        """``session``'s meta (title, paging state, ...) changed."""
