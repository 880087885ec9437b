"""The block store's session rows, on any engine: one record per session in the ``sessions`` table.

A record is canonical JSON ``{n: next seq, count, c: created ms, u: updated ms, m: meta}``.
Invariants: ``n`` only grows (a seq is never reused, even after deletes); ``count`` is the number
of entries the session holds; every change to a record happens inside the caller's write.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from runtime.blocks import Entry, SessionInfo, canonical_json
from runtime.storage.codec import ENTRIES, SESSIONS, json_load, session_prefix, split_entry_key
from runtime.storage.kv import Tables


def now_ms() -> int:
    return int(time.time() * 1000)


def session_record(t: Tables, session: str) -> dict[str, Any]:
    """Return the session's record, or a fresh one (not yet saved) for a new session."""
    raw = t.get(SESSIONS, session.encode())
    if raw is None:
        now = now_ms()
        return {"n": 0, "count": 0, "c": now, "u": now, "m": {}}
    return dict(json_load(raw))


def save_session(t: Tables, session: str, info: dict[str, Any]) -> None:
    t.put(SESSIONS, session.encode(), canonical_json(info))


def has_session(t: Tables, session: str) -> bool:
    return t.get(SESSIONS, session.encode()) is not None


def session_info(session: str, info: dict[str, Any]) -> SessionInfo:
    """Return the public summary of a session record."""
    return SessionInfo(session, info["count"], info["c"], info["u"], dict(info.get("m") or {}))


def list_sessions(t: Tables, offset: int, limit: int | None) -> list[SessionInfo]:
    """Return sessions ordered by id, skipping ``offset`` and keeping at most ``limit``."""
    if limit is not None and limit <= 0:
        return []
    upto = None if limit is None else offset + limit
    rows = list(t.scan(SESSIONS, limit=upto))[offset:]
    return [session_info(key.decode(), json_load(raw)) for key, raw in rows]


def lower_counts(t: Tables, removed: Iterable[Entry]) -> None:
    """Take removed entries off their sessions' counts (in session order)."""
    by_session: dict[str, int] = {}
    for entry in removed:
        by_session[entry.session] = by_session.get(entry.session, 0) + 1
    for session in sorted(by_session):
        info = session_record(t, session)
        info["count"] = max(0, info["count"] - by_session[session])
        save_session(t, session, info)


def recount(t: Tables, session: str) -> None:
    """Rebuild a session's count (and next seq) from its entries (repair uses this)."""
    count, last = 0, -1
    for key in t.keys(ENTRIES, session_prefix(session)):
        count += 1
        last = split_entry_key(key)[1]
    raw = t.get(SESSIONS, session.encode())
    info: dict[str, Any] = json_load(raw) if raw else {"n": 0, "c": 0, "u": 0, "m": {}}
    info["count"] = count
    info["n"] = max(info["n"], last + 1)
    save_session(t, session, info)
