"""The triage list: every failing, errored or flagged turn across sessions, newest first.

Owns: ``TriageRow`` (one turn that needs a look: when, where, which model and source, its first
error or its flag's note), ``TriageQuery`` (kind, model, source, date range, page) and
``query_triage``, which answers a query from a per-process table of rows.

Which turns are listed:
- *errored*: the turn's record ended in an error (its first error is shown);
- *flagged*: a user, or the importer, flagged the record (the flag's note is shown);
- *failing*: a turn of a session marked failing (meta ``failing`` or a reward of 0); a failing
  session none of whose turns is errored or flagged is listed by its last turn, so every
  failing session has at least one row.

Invariants:
- Bounded reads: the rows come from the trace store's status index (its keys name the errored
  and flagged records) and the sessions list's summary table; only those records are decoded,
  and each once per process (records never change; only flags do, and a flag's note is read
  from its own small row). Nothing here walks every record.
- The table is rebuilt when the stores' change counters move (the same ones the sessions
  table is keyed on), so a new error or flag shows on the next request.
- The order is total: ``started_at`` descending, then call id descending.
- "Last good turn" (what the compare link pairs a row with) is the session's latest earlier
  turn whose record neither failed nor is flagged; it is looked up for the shown window only,
  from the per-turn aggregate rows (no record decoded).
"""

from __future__ import annotations

import datetime as dt
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from runtime.inspect.pagination import Pagination, by_offset
from runtime.inspect.sessionfilter import check_range
from runtime.inspect.sessions import SessionSummary, summary_table
from runtime.storage.codec import json_load
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Engine, Tables
from runtime.storage.tracestore import BY_STATUS, FLAGGED, FLAGS
from runtime.tracing.records import CALL_ID_LEN, TraceRecord, TraceStatus, TraceStore

NOTE_CHARS = 300  # what a row keeps of an error message or a note (the turn page has it all)


class TriageKind(StrEnum):
    """Why a turn is listed (a turn can be listed for more than one reason)."""

    FAILING = "failing"  # its session is marked failing
    ERRORED = "errored"  # its call ended in an error
    FLAGGED = "flagged"  # someone (or the importer) flagged it


@dataclass(frozen=True)
class TriageRow:
    """One turn the triage list shows."""

    session: str
    turn: int
    call_id: str
    model: str
    source: str  # the session's meta "source" ("" when it has none)
    started_at: int  # ms since the epoch
    errored: bool
    flagged: bool
    failing: bool  # its session is marked failing
    error: str  # the first error, "type (HTTP status): message", cut to NOTE_CHARS
    flag_note: str
    last_good: str | None = None  # call id of the session's last good turn before this one

    @property
    def note(self) -> str:
        """The first error, else the flag's note."""
        return self.error or self.flag_note

    def is_kind(self, kind: TriageKind) -> bool:
        return {TriageKind.FAILING: self.failing, TriageKind.ERRORED: self.errored,
                TriageKind.FLAGGED: self.flagged}[kind]  # fmt: skip


@dataclass(frozen=True)
class TriageQuery:
    """What the list is asked for; every field has a neutral default."""

    kind: TriageKind | None = None
    model: str = ""
    source: str = ""
    since: dt.date | None = None  # UTC days, both ends included
    until: dt.date | None = None
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        check_range(self.since, self.until)


@dataclass(frozen=True)
class TriagePage:
    rows: tuple[TriageRow, ...]
    pagination: Pagination
    total: int  # rows of every kind, before filtering
    models: tuple[str, ...]  # for the filters: every model and source among all rows, sorted
    sources: tuple[str, ...]


@dataclass(frozen=True)
class _Table:
    key: object  # the summary table it was built from (rebuilt when that one is)
    rows: tuple[TriageRow, ...]  # newest first


_lock = threading.Lock()
_tables: weakref.WeakKeyDictionary[Engine, _Table] = weakref.WeakKeyDictionary()
_records: weakref.WeakKeyDictionary[Engine, dict[str, TriageRow]] = weakref.WeakKeyDictionary()


def _status_ids(t: Tables, status: str) -> list[str]:
    prefix = status.encode() + b"\x00"
    return [key[-CALL_ID_LEN:].decode() for key in t.keys(BY_STATUS, prefix)]


def _flag_notes(t: Tables, call_ids: Sequence[str]) -> dict[str, str]:
    raws = t.get_many(FLAGS, [c.encode() for c in call_ids])
    return {c: str(json_load(raw).get("note") or "") for c, raw in zip(call_ids, raws, strict=True)
            if raw is not None}  # fmt: skip


def _first_error(rec: TraceRecord) -> str:
    if rec.status is not TraceStatus.ERROR:
        return ""
    err = rec.error
    if err is None:
        return "the call failed (no error recorded)"
    status = f" (HTTP {err.status})" if err.status is not None else ""
    return _cut(f"{err.type}{status}: {err.message}")


def _cut(text: str) -> str:
    return text if len(text) <= NOTE_CHARS else text[: NOTE_CHARS - 1] + "…"


def _row_of(rec: TraceRecord) -> TriageRow:
    return TriageRow(rec.session, rec.turn, rec.call_id, rec.model, "", rec.started_at,
                     rec.status is TraceStatus.ERROR, False, False, _first_error(rec), "")  # fmt: skip


def _decoded(kv: Engine, traces: TraceStore, call_ids: Iterable[str]) -> dict[str, TriageRow]:
    """Return the base row of each call id, decoding only records not seen before."""
    with _lock:
        cache = _records.setdefault(kv, {})
        wanted = list(dict.fromkeys(call_ids))
        missing = [c for c in wanted if c not in cache]
    fresh = {rec.call_id: _row_of(rec) for rec in traces.get_many(missing)} if missing else {}
    with _lock:
        cache.update(fresh)
        kept = {c: cache[c] for c in wanted if c in cache}
        _records[kv] = dict(kept)  # rows no longer listed (unflagged, purged) are let go
        return kept


def _last_turn_ids(traces: TraceStore, sessions: Sequence[str]) -> list[str]:
    out = []
    for session in sessions:
        groups = traces.turn_groups(session, limit=1, reverse=True)
        if groups:
            out.append(groups[0][1].head)
    return out


def _build(
    store: BlockStore, traces: TraceStore, key: object, summaries: Sequence[SessionSummary]
) -> _Table:
    errored, flagged = store.kv.read(lambda t: (_status_ids(t, TraceStatus.ERROR.value),
                                                _status_ids(t, FLAGGED)))  # fmt: skip
    notes = store.kv.read(lambda t: _flag_notes(t, flagged))
    by_session = {s.session: s for s in summaries}
    quiet = [s.session for s in summaries if s.failing and not s.flagged and not s.errors]
    rows = _decoded(store.kv, traces, [*errored, *flagged, *_last_turn_ids(traces, quiet)])
    out = []
    for cid, row in rows.items():
        summary = by_session.get(row.session)
        if summary is None:
            continue  # purged since its records were listed
        out.append(replace(row, source=summary.source, failing=summary.failing,
                           flagged=cid in notes, flag_note=_cut(notes.get(cid, ""))))  # fmt: skip
    out.sort(key=lambda r: (r.started_at, r.call_id), reverse=True)
    return _Table(key, tuple(out))


def triage_table(store: BlockStore, traces: TraceStore) -> tuple[TriageRow, ...]:
    """Return every triage row, newest first, rebuilt only if the stores changed since."""
    sessions = summary_table(store, traces)
    with _lock:
        old = _tables.get(store.kv)
        if old is not None and old.key is sessions:
            return old.rows
    table = _build(store, traces, sessions, sessions.rows)
    with _lock:
        _tables[store.kv] = table
    return table.rows


def forget_triage() -> None:
    """Drop every cached table and decoded row (tests that replace a store on disk)."""
    with _lock:
        _tables.clear()
        _records.clear()


def _keep(row: TriageRow, q: TriageQuery) -> bool:
    day = dt.datetime.fromtimestamp(row.started_at / 1000, dt.UTC).date()
    return (
        (q.kind is None or row.is_kind(q.kind))
        and (not q.model or row.model == q.model)
        and (not q.source or row.source == q.source)
        and (q.since is None or day >= q.since)
        and (q.until is None or day <= q.until)
    )


def last_good_turn(traces: TraceStore, row: TriageRow, flagged: frozenset[str]) -> str | None:
    """Return the call id of the session's latest turn before ``row`` that neither failed nor
    is flagged, from the per-turn aggregate rows."""
    for turn, group in traces.turn_groups(row.session, limit=None, reverse=True):
        if turn < row.turn and not group.head_failed and group.head not in flagged:
            return group.head
    return None


def query_triage(store: BlockStore, traces: TraceStore, q: TriageQuery) -> TriagePage:
    """Return one page of triage rows matching ``q``, each with its last good turn."""
    every = triage_table(store, traces)
    rows = [row for row in every if _keep(row, q)]
    flagged = frozenset(row.call_id for row in every if row.flagged)
    window = tuple(replace(row, last_good=last_good_turn(traces, row, flagged))
                   for row in rows[q.offset : q.offset + q.limit])  # fmt: skip
    return TriagePage(
        window, by_offset(q.offset, q.limit, len(rows), noun="turns "), len(every),
        tuple(sorted({r.model for r in every if r.model})),
        tuple(sorted({r.source for r in every if r.source})),
    )  # fmt: skip
