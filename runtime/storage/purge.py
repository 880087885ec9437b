"""Removing a session everywhere: its entries and unshared blocks, and its trace records.

Invariant: one write transaction (``BlockStore.atomic``) removes both, so a crash leaves the
session whole or gone, never trace records without their session. Trace records whose session
has no blocks (left by an older llm386 killed mid-purge) are removable the same way.
"""

from __future__ import annotations

from runtime.errors import SessionNotFound
from runtime.storage.interface import BlockStore, PurgeReport
from runtime.tracing.records import TraceStore


def purge_session(store: BlockStore, traces: TraceStore, session: str) -> tuple[PurgeReport, int]:
    """Remove ``session`` and its trace records in one write; return both counts."""

    def purge() -> tuple[PurgeReport, int]:
        try:
            report = store.purge_session(session)
        except SessionNotFound:
            report = None
        removed = traces.delete_session(session)
        if report is None and not removed:
            raise SessionNotFound(f"no session {session!r}; `llm386 sessions` lists them")
        return report or PurgeReport(session, 0, 0, 0), removed

    return store.atomic(purge)
