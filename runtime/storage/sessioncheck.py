"""Verify and repair across the block store and the trace store: what a session and its turns
must agree on.

Checks (all in one read snapshot; repair runs them again inside its write transaction):

    turn-without-reply   an agent turn's trace record answered OK, but the session holds none
                         of the blocks its reply reduces to (a crash between two writes, before
                         a turn was one transaction). Repair puts the reply blocks back.
    duplicated-import    a session with two import records for one turn (two imports of one
                         file at once, before the comparison moved into the write). Repair keeps
                         the first copy's records and entries and removes the rest.
    partial-import       imported blocks whose turns were never recorded (an import killed
                         between its writes). Repair removes the session and its records, so
                         the file imports again whole.

Sessions written by llm386 now commit each of these as one transaction; these checks find and
clean up what older versions, or a store copied mid-write, left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from runtime.blocks import BlockKind, EntryRef
from runtime.errors import ReducerError
from runtime.reducers import ToolUseReducer, block_id
from runtime.storage.interface import Problem
from runtime.storage.kv import Tables
from runtime.tracing.records import TraceOrigin, TraceRecord, TraceStatus

if TYPE_CHECKING:
    from runtime.storage.blockstore import KvBlockStore
    from runtime.storage.tracestore import KvTraceStore

_REPLY_KINDS = (BlockKind.ASSISTANT_MESSAGE, BlockKind.TOOL_CALL)


@dataclass(frozen=True)
class _Session:
    name: str
    entries: list[EntryRef]
    records: list[TraceRecord]

    @property
    def imported(self) -> list[TraceRecord]:
        return sorted(
            (r for r in self.records if r.origin is TraceOrigin.IMPORT),
            key=lambda r: (r.turn, r.upto_seq if r.upto_seq is not None else -1, r.call_id),
        )

    @property
    def from_import(self) -> bool:
        return bool(self.entries) and all(
            e.provenance.source.startswith("import:") for e in self.entries
        )


def _sessions(store: KvBlockStore, traces: KvTraceStore) -> list[_Session]:
    names = sorted({s.session for s in store.sessions()} | _traced_sessions(traces))
    out = []
    for name in names:
        records = traces.get_many([cid for _, cid in traces.turns(name)])
        out.append(_Session(name, store.entry_refs(name), records))
    return out


def _traced_sessions(traces: KvTraceStore) -> set[str]:
    """Return the sessions the trace store holds records of (its per-session totals table)."""
    from runtime.storage.tracerows import SESSIONS

    return traces.kv.read(lambda t: {key.decode() for key in t.keys(SESSIONS)})


def reply_ids(record: TraceRecord) -> list[str]:
    """Return the ids of the blocks an agent turn's reply reduces to (none if it is not one)."""
    agent_turn = "agent" in record.config and record.origin is TraceOrigin.LIVE
    if not agent_turn or record.status is not TraceStatus.OK or record.response is None:
        return []
    try:
        return [block_id(b) for b in ToolUseReducer().reduce(None, record.response).blocks]
    except ReducerError:
        return []  # a reply that does not reduce never had blocks


def _missing_replies(s: _Session) -> list[Problem]:
    held = {e.id for e in s.entries}
    return [
        Problem(
            "turn-without-reply",
            f"{s.name} turn {r.turn} ({r.call_id}): its reply is not in the session",
        )  # fmt: skip
        for r in s.records
        if (ids := reply_ids(r)) and not any(bid in held for bid in ids)
    ]


def _duplicated(s: _Session) -> list[Problem]:
    turns = [r.turn for r in s.imported]
    if len(turns) == len(set(turns)):
        return []
    extra = len(turns) - len(set(turns))
    return [Problem("duplicated-import", f"{s.name}: {extra} import records repeat a turn")]


def _partial(s: _Session) -> list[Problem]:
    if not s.from_import or _duplicated(s):
        return []
    turns = [r.turn for r in s.imported]
    if turns != list(range(1, len(turns) + 1)) or _turn_missing_after(s):
        return [Problem("partial-import", f"{s.name}: imported blocks without all their turns "
                                          f"({len(turns)} recorded); repair removes the session "
                                          "so the file imports again whole")]  # fmt: skip
    return []


def _turn_missing_after(s: _Session) -> bool:
    """Whether an assistant message follows the last recorded turn's own blocks."""
    last = s.imported[-1] if s.imported else None
    start = last.upto_seq if last is not None and last.upto_seq is not None else 0
    in_last_turn = last is not None
    for entry in s.entries:
        if entry.seq < start:
            continue
        if entry.kind in _REPLY_KINDS:
            if not in_last_turn:
                return True
        else:
            in_last_turn = False
    return False


def check_sessions(store: KvBlockStore, traces: KvTraceStore) -> list[Problem]:
    """Return what the block store and trace store disagree on, session by session."""

    def check(_t: Tables) -> list[Problem]:  # one snapshot for every read of both stores
        problems: list[Problem] = []
        for s in _sessions(store, traces):
            problems += _missing_replies(s) + _duplicated(s) + _partial(s)
        return problems

    return store.kv.read(check)


def repair_sessions(store: KvBlockStore, traces: KvTraceStore) -> list[Problem]:
    """Fix what ``check_sessions`` finds, in the caller's write (``store.atomic``)."""
    fixed: list[Problem] = []
    for s in _sessions(store, traces):
        for problem in _missing_replies(s):
            _put_reply(store, traces, s, problem)
            fixed.append(problem)
        if problems := _duplicated(s):
            _drop_second_copy(store, traces, s)
            fixed += problems
        elif problems := _partial(s):
            from runtime.storage.purge import purge_session

            purge_session(store, traces, s.name)
            fixed += problems
    return fixed


def _put_reply(store: KvBlockStore, traces: KvTraceStore, s: _Session, problem: Problem) -> None:
    cid = problem.detail.rsplit("(", 1)[1].split(")", 1)[0]
    record = traces.get(cid)
    reduction = ToolUseReducer().reduce(None, record.response)
    store.put_many(s.name, reduction.blocks, reduction.edges)


def _drop_second_copy(store: KvBlockStore, traces: KvTraceStore, s: _Session) -> None:
    """Keep each turn's first import record and the entries it names; remove the copies."""
    kept: dict[int, TraceRecord] = {}
    for record in s.imported:
        kept.setdefault(record.turn, record)
    extra = [r.call_id for r in s.imported if kept[r.turn] is not r]
    ids = [e.id for e in s.entries]
    copies = max(sum(1 for r in s.imported if r.turn == t) for t in kept)
    size = len(ids) // copies
    seqs = [e.seq for e in s.entries[size:]]
    copied = bool(size) and len(ids) % copies == 0 and ids == ids[:size] * copies

    def drop(t: Tables) -> None:
        traces.delete_records(extra)  # joins this write
        if copied:
            store.remove_entries_txn(t, s.name, seqs)

    store.kv.write(drop)  # joins the caller's write (``store.atomic``)
