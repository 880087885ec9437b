"""The sessions list: one summary row per session, filtered, searched, sorted and paged.

Owns: ``SessionSummary`` (a session's block-store record joined with its trace aggregates and
paging faults), ``SessionQuery`` and ``SessionPage``, and ``query_sessions``, which answers a
query from a per-process table of summaries.

Invariants:
- Every figure comes from aggregates the stores keep (the block store's session records, the
  trace store's per-session stats); answering a query never reads a trace record, except to
  look up the sessions holding a prompt hash (through the trace store's hash index).
- The table is rebuilt whenever the stores changed since it was built (the block store's change
  counter, kept by the session index from the change feed, or the trace store's generation
  moved), so a page never shows stale figures; between writes, a query filters and sorts rows
  already in memory.
- Sorting uses a total key (the chosen column, then the session id), so pages never overlap
  or skip a row, whatever the ties.
- Text search matches whole words (the pager's analyser: lower case, stop words dropped, light
  stemming) in block bodies, through the pager's per-session term index; a session whose index
  is behind the store is brought up to date first (the same repair the pager runs).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from runtime.blocks import SessionInfo
from runtime.errors import AmbiguousPrefix, InvalidInput, NotFound, SessionNotFound
from runtime.indexes.bm25 import query_terms
from runtime.indexes.sessionindex import changes, term_key
from runtime.indexes.snapshot import index_for, reader_for
from runtime.inspect.sessionfilter import (
    FilterChoices,
    MetaTerm,
    check_range,
    day_bounds,
    has_meta,
    in_range,
    meta_items,
    provider_of,
)
from runtime.storage.interface import BlockStore
from runtime.storage.kv import Engine, Tables
from runtime.tags import tags_of
from runtime.tracing.aggregates import SessionTraceStats
from runtime.tracing.records import TraceGeneration, TraceStore

_HASH_RE = re.compile(r"^[0-9a-fA-F]{8,64}$")  # a prompt hash or a prefix of 8+ of it
MAX_QUERY_CHARS = 500


class SessionStatus(StrEnum):
    OK = "ok"  # traced, no call failed
    ERROR = "error"  # at least one call ended in an error
    UNTRACED = "untraced"  # blocks only, no trace records


class SourceKind(StrEnum):
    """Where a session's turns came from (its meta ``source``, as each writer sets it)."""

    AGENT = "agent"  # the sample agent (and anything built on runtime.agent)
    PROXY = "proxy"  # captured by `llm386 proxy`
    IMPORT = "import"  # imported transcripts (any --source the importer was given)
    OTLP = "otlp"  # rebuilt from OpenTelemetry spans

    @classmethod
    def of(cls, source: str) -> SourceKind | None:
        """Return the kind of a meta ``source`` (None: no source was recorded)."""
        if not source:
            return None
        known = {"sample-agent": cls.AGENT, "proxy": cls.PROXY, "otlp": cls.OTLP}
        return known.get(source, cls.IMPORT)


class SortKey(StrEnum):
    ACTIVITY = "activity"
    SESSION = "session"
    MODEL = "model"
    TURNS = "turns"
    TOKENS = "tokens"
    ERRORS = "errors"
    FLAGS = "flags"


@dataclass(frozen=True)
class SessionSummary:
    """What the sessions list shows about one session."""

    session: str
    model: str
    title: str
    source: str
    entries: int
    created_at: int
    updated_at: int
    turns: int
    calls: int
    errors: int  # failed attempts (their tokens are not in the totals)
    repages: int  # re-pages recorded, not sent (their tokens are not in the totals)
    flagged: int  # turns a user (or the importer) marked failing
    failing: bool  # the session's own mark (meta "failing", or a reward of 0)
    reward: float | None
    faults: int  # page faults recorded in the session's paging state
    input_tokens: int  # answered calls only
    output_tokens: int
    last_activity: int  # ms: the later of the last block put and the last model call
    provider: str = ""  # meta "provider", else the model's (runtime.inspect.sessionfilter)
    tags: tuple[str, ...] = ()  # meta "tags"
    meta: tuple[tuple[str, str | None], ...] = ()  # every meta key, with its value if scalar
    # What the date range matches (ms): the first and last model call, or, for a session with
    # no traced call, when it was created and last written.
    active_from: int = 0
    active_to: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def status(self) -> SessionStatus:
        if self.errors:
            return SessionStatus.ERROR
        return SessionStatus.OK if self.calls else SessionStatus.UNTRACED

    @property
    def source_kind(self) -> SourceKind | None:
        return SourceKind.of(self.source)

    @property
    def is_failing(self) -> bool:
        """Failing by its own mark or by a flagged turn."""
        return self.failing or self.flagged > 0


def summarize(info: SessionInfo, stats: SessionTraceStats) -> SessionSummary:
    """Join a session's record and its trace aggregates into one summary."""
    meta = info.meta
    reward = meta.get("reward")
    reward = (
        float(reward) if isinstance(reward, int | float) and not isinstance(reward, bool) else None
    )
    paging = meta.get("paging")
    faults = paging.get("faults") if isinstance(paging, dict) else None
    last = max(info.updated_at, stats.last_at or 0)
    return SessionSummary(
        session=info.session, model=str(meta.get("model") or ""), title=str(meta.get("title") or ""),
        source=str(meta.get("source") or ""), entries=info.count, created_at=info.created_at,
        updated_at=info.updated_at, turns=stats.turns, calls=stats.calls, errors=stats.errors,
        repages=stats.repages, flagged=stats.flagged, failing=meta.get("failing") is True or reward == 0.0, reward=reward,
        faults=len(faults) if isinstance(faults, list) else 0, input_tokens=stats.input_tokens,
        output_tokens=stats.output_tokens, last_activity=last,
        provider=provider_of(meta, str(meta.get("model") or "")), tags=tags_of(meta),
        meta=meta_items(meta), active_from=stats.first_at or info.created_at,
        active_to=stats.last_at or info.updated_at,
    )  # fmt: skip


@dataclass(frozen=True)
class SessionQuery:
    """What the list is asked for; every field has a neutral default."""

    text: str = ""
    model: str = ""
    status: SessionStatus | None = None
    failing: bool | None = None
    faults: bool | None = None
    source: SourceKind | None = None
    since: dt.date | None = None  # UTC days, both ends included: sessions active in the range
    until: dt.date | None = None
    provider: str = ""
    tags: tuple[str, ...] = ()  # every one of them
    meta: tuple[MetaTerm, ...] = ()  # every one of them
    sort: SortKey = SortKey.ACTIVITY
    descending: bool = True
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if len(self.text) > MAX_QUERY_CHARS:
            raise InvalidInput(f"the search text is over {MAX_QUERY_CHARS} characters; shorten it")
        if self.offset < 0 or self.limit < 1:
            raise InvalidInput("offset must be 0 or more and limit 1 or more")
        check_range(self.since, self.until)


@dataclass(frozen=True)
class SessionPage:
    rows: tuple[SessionSummary, ...]
    total: int  # rows matching the query (all pages)
    sessions: int  # sessions in the store
    models: tuple[str, ...]  # every model named by a session, sorted (for the filter)
    hash_match: bool = False  # the text was a prompt hash and was looked up as one
    choices: FilterChoices | None = None  # every provider, tag and meta key (for the filters)


@dataclass(frozen=True)
class _Row:
    raw_info: bytes  # the stored bytes the summary was made from, to spot a change cheaply
    raw_stats: bytes | None
    summary: SessionSummary


@dataclass(frozen=True)
class _Table:
    txnid: tuple[int, TraceGeneration]  # the stores' change counters it was built at
    rows: tuple[SessionSummary, ...]  # by session id
    models: tuple[str, ...]
    by_session: dict[str, _Row]
    choices: FilterChoices


_lock = threading.Lock()
_tables: weakref.WeakKeyDictionary[Engine, _Table] = weakref.WeakKeyDictionary()
_BATCH = 2000
# The two aggregate records a summary is made from: the block store's session record and the
# trace store's session stats (layouts in runtime.storage.lmdb.store and runtime.storage.lmdb.traces). Only their
# bytes are read here, to tell which sessions changed; they are decoded by the stores' own API.
_SESSIONS_DB, _STATS_DB = "sessions", "trace_sessions"


def _txnid(store: BlockStore, traces: TraceStore) -> tuple[int, TraceGeneration]:
    # Both counters are bumped in the transaction of each change they count, and each is one
    # read: the block store's (from the change feed) and the trace store's generation.
    return store.kv.read(changes), traces.generation()


def _raw_records(store: BlockStore) -> list[tuple[str, bytes, bytes | None]]:
    def load(t: Tables) -> list[tuple[str, bytes, bytes | None]]:
        rows = list(t.scan(_SESSIONS_DB))
        stats = t.get_many(_STATS_DB, [key for key, _ in rows])
        return [(key.decode(), raw, st) for (key, raw), st in zip(rows, stats, strict=True)]

    return store.kv.read(load)


def _summaries(
    store: BlockStore, traces: TraceStore, sessions: Sequence[str]
) -> dict[str, SessionSummary]:
    """Summaries of ``sessions`` through the stores' API (all of them in batches, when many)."""
    if len(sessions) <= _BATCH:
        infos = [info for s in sessions if (info := _info_or_none(store, s)) is not None]
    else:
        infos = [info for start in range(0, store.session_count(), _BATCH)
                 for info in store.sessions(start, _BATCH)]  # fmt: skip
    stats = traces.session_stats([info.session for info in infos])
    return {i.session: summarize(i, s) for i, s in zip(infos, stats, strict=True)}


def _info_or_none(store: BlockStore, session: str) -> SessionInfo | None:
    try:
        return store.session_info(session)
    except SessionNotFound:
        return None  # purged since the raw read


def _build(
    store: BlockStore, traces: TraceStore, txnid: tuple[int, TraceGeneration], old: _Table | None
) -> _Table:
    """Return the table as of now, decoding only sessions whose stored records changed."""
    raw = _raw_records(store)
    before = old.by_session if old is not None else {}
    changed = [s for s, info, stats in raw
               if (row := before.get(s)) is None or (row.raw_info, row.raw_stats) != (info, stats)]  # fmt: skip
    changed_set = set(changed)
    fresh = _summaries(store, traces, changed) if changed else {}
    by_session: dict[str, _Row] = {}
    for session, info, stats in raw:
        summary = fresh.get(session)
        if summary is not None:
            by_session[session] = _Row(info, stats, summary)
        elif session not in fresh and session in before and session not in changed_set:
            by_session[session] = before[session]
    rows = tuple(row.summary for row in by_session.values())
    models = tuple(sorted({row.model for row in rows if row.model}))
    return _Table(txnid, rows, models, by_session, FilterChoices.of(rows))


def summary_table(store: BlockStore, traces: TraceStore) -> _Table:
    """Return the current table of summaries, refreshed only if the store changed since."""
    txnid = _txnid(store, traces)  # read before the rows: a write in between only forces a refresh
    path = store.kv
    with _lock:
        old = _tables.get(path)
        if old is not None and old.txnid == txnid:
            return old
    table = _build(store, traces, txnid, old)
    with _lock:
        _tables[path] = table
    return table


def forget_tables() -> None:
    """Drop every cached table (tests that replace a store on disk)."""
    with _lock:
        _tables.clear()


_SORT_VALUE: dict[SortKey, Callable[[SessionSummary], Any]] = {
    SortKey.ACTIVITY: lambda r: r.last_activity,
    SortKey.SESSION: lambda r: r.session,
    SortKey.MODEL: lambda r: r.model,
    SortKey.TURNS: lambda r: r.turns,
    SortKey.TOKENS: lambda r: r.total_tokens,
    SortKey.ERRORS: lambda r: r.errors,
    SortKey.FLAGS: lambda r: (r.is_failing, r.flagged),
}


def _keep(row: SessionSummary, q: SessionQuery, bounds: tuple[int | None, int | None]) -> bool:
    return (
        (not q.model or row.model == q.model)
        and (q.status is None or row.status is q.status)
        and (q.failing is None or row.is_failing == q.failing)
        and (q.faults is None or (row.faults > 0) == q.faults)
        and (q.source is None or row.source_kind is q.source)
        and (bounds == (None, None) or in_range(row.active_from, row.active_to, bounds))
        and (not q.provider or row.provider == q.provider)
        and (not q.tags or all(tag in row.tags for tag in q.tags))
        and (not q.meta or has_meta(row.meta, q.meta))
    )


def query_sessions(store: BlockStore, traces: TraceStore, q: SessionQuery) -> SessionPage:
    """Return one page of sessions matching ``q``, and how many match in all."""
    table = summary_table(store, traces)
    bounds = day_bounds(q.since, q.until)
    rows = [row for row in table.rows if _keep(row, q, bounds)]
    # (a comprehension over 10,000 rows takes about 2 ms; no index per filter is needed)
    text = q.text.strip()
    digest = _prompt_hash(traces, text)
    if text:
        rows = _search(store, traces, rows, text, digest)
    value = _SORT_VALUE[q.sort]
    # Two stable sorts give a total order: the column (either way), then session id ascending.
    rows.sort(key=lambda r: r.session)
    rows.sort(key=value, reverse=q.descending)
    window = tuple(rows[q.offset : q.offset + q.limit])
    return SessionPage(window, len(rows), len(table.rows), table.models, bool(digest),
                       table.choices)  # fmt: skip


def _prompt_hash(traces: TraceStore, text: str) -> str:
    """Return the recorded prompt hash ``text`` names (all of it or a unique 8+ prefix), or "".

    Hex text that names no single hash is searched as words only: the search view, not this
    filter, explains an ambiguous prefix.
    """
    if not _HASH_RE.match(text):
        return ""
    try:
        return traces.resolve_prompt_hash(text)
    except (AmbiguousPrefix, NotFound):
        return ""


def _search(
    store: BlockStore, traces: TraceStore, rows: list[SessionSummary], text: str, digest: str
) -> list[SessionSummary]:
    """Keep rows whose id or title contains ``text``, whose blocks hold all its words, or (when
    ``text`` names the prompt hash ``digest``) whose turns sent a request with that hash."""
    needle = text.lower()
    hits = {
        row.session for row in rows if needle in row.session.lower() or needle in row.title.lower()
    }
    if digest:
        hits |= {rec.session for rec in traces.list(prompt_hash=digest, limit=None)}
    words = query_terms(text)
    if words:
        rest = [row for row in rows if row.session not in hits]
        hits |= set(sessions_with_terms(store, rest, words))
    return [row for row in rows if row.session in hits]


def sessions_with_terms(
    store: BlockStore, rows: Sequence[SessionSummary], words: Sequence[str]
) -> list[str]:
    """Return the sessions among ``rows`` whose blocks contain every term in ``words``."""
    index = index_for(store)
    behind = _stale_sessions(index, store, rows)
    reader = reader_for(store)
    for session in behind:
        reader.snapshot(store, session)  # repairs the session's index, as the pager would

    def scan(t: Tables) -> list[str]:
        return [row.session for row in rows
                if all(t.get("ix_terms", term_key(row.session, w)) is not None for w in words)]  # fmt: skip

    return store.kv.read(scan)


def _stale_sessions(index: Any, store: BlockStore, rows: Sequence[SessionSummary]) -> list[str]:
    """Return sessions whose term index does not hold exactly their current entries."""

    def check(t: Tables) -> list[str]:
        out = []
        for row in rows:
            if not row.entries:
                continue  # nothing to index, nothing to find
            meta = index.meta(t, row.session)
            if meta is None or meta.stale or meta.n_docs != row.entries:
                out.append(row.session)
        return out

    return store.kv.read(check)
