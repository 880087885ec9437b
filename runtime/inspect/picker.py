"""The turn picker behind "compare with…": find turns by what a user remembers of them.

Owns ``pick_turns``: a query names turns as a session id (its turns), a session and a turn
number (``tau-task000-trial0 3``, ``…#3`` or ``…/3``), a call id or unique prefix, or a prompt
hash prefix of 8+ hex characters (every turn that sent those bytes). Anything else is looked up
as words in session ids and titles, and the sessions found are offered to pick from.

Invariants: every read goes through an index (never a scan of records); at most ``limit``
candidates, in the order they were found (turn order within a session, newest first for a
hash); the turn being compared from is never a candidate of itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.errors import AmbiguousPrefix, InvalidInput, NotFound
from runtime.inspect.sessions import SessionQuery, query_sessions
from runtime.storage.interface import BlockStore
from runtime.tracing.records import TraceRecord, TraceStatus, TraceStore

_SESSION_TURN = re.compile(r"^(\S+?)(?:\s+|#|/)(\d{1,9})$")
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
PICK_LIMIT = 20


@dataclass(frozen=True)
class Candidate:
    """One turn a user may pick: what the list shows to tell turns apart."""

    call_id: str
    session: str
    turn: int
    model: str
    started_at: int
    prompt_hash: str
    errored: bool
    flagged: bool
    matched: str  # what the query matched: "session", "turn", "call id", "prompt hash"

    @classmethod
    def of(cls, rec: TraceRecord, matched: str) -> Candidate:
        return cls(rec.call_id, rec.session, rec.turn, rec.model, rec.started_at,
                   rec.prompt_hash, rec.status is TraceStatus.ERROR, rec.flag is not None,
                   matched)  # fmt: skip


@dataclass(frozen=True)
class Pick:
    query: str
    candidates: tuple[Candidate, ...]
    sessions: tuple[str, ...]  # sessions whose id or title matched words of the query
    notes: tuple[str, ...]  # why a reading of the query found nothing, when it says something


def pick_turns(
    store: BlockStore, traces: TraceStore, query: str, *, exclude: str = "", limit: int = PICK_LIMIT
) -> Pick:
    """Return the turns ``query`` names (see the module docstring), without ``exclude``."""
    query = query.strip()[:200]
    if not query:
        return Pick("", (), (), ())
    found: list[Candidate] = []
    notes: list[str] = []
    for reading in (_by_session_turn, _by_call_id, _by_session, _by_prompt_hash):
        try:
            found += reading(traces, query, limit)
        except (NotFound, InvalidInput) as exc:
            if reading is _by_prompt_hash or isinstance(exc, AmbiguousPrefix):
                notes.append(str(exc))
    seen: set[str] = {exclude}
    unique = []
    for candidate in found:
        if candidate.call_id not in seen:
            seen.add(candidate.call_id)
            unique.append(candidate)
    sessions: tuple[str, ...] = ()
    if not unique:
        page = query_sessions(store, traces, SessionQuery(text=query, limit=10))
        sessions = tuple(row.session for row in page.rows)
    return Pick(query, tuple(unique[:limit]), sessions, tuple(notes))


def _by_session_turn(traces: TraceStore, query: str, limit: int) -> list[Candidate]:
    match = _SESSION_TURN.match(query)
    if match is None:
        return []
    group = traces.turn_group(match.group(1), int(match.group(2)))
    return [] if group is None else [Candidate.of(traces.get(group.head), "turn")]


def _by_call_id(traces: TraceStore, query: str, limit: int) -> list[Candidate]:
    return [Candidate.of(traces.get(query), "call id")]


def _by_session(traces: TraceStore, query: str, limit: int) -> list[Candidate]:
    heads = [group.head for _, group in traces.turn_groups(query, limit=limit)]
    return [Candidate.of(rec, "session") for rec in traces.get_many(heads)]


def _by_prompt_hash(traces: TraceStore, query: str, limit: int) -> list[Candidate]:
    if not _HEX.match(query.lower()):
        return []
    digest = traces.resolve_prompt_hash(query.lower())
    return [Candidate.of(r, "prompt hash") for r in traces.list(prompt_hash=digest, limit=limit)]
