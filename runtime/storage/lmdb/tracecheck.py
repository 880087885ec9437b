"""Verify and repair for the LMDB trace store: re-hash every request, check every index.

Every request is rebuilt from its chunks and re-hashed; the chunk counts are recomputed from the
request rows and compared with the stored ones.

Verify reads everything in one read transaction and changes nothing. Repair runs in one write
transaction: it rebuilds every index row and aggregate from the records (the records and the
request bytes are the truth; everything else is derived) and drops request bytes no record
uses, then recomputes the chunk counts and drops chunks no request uses. A record whose stored request is missing or no longer hashes to its prompt hash cannot be
repaired (the true bytes are unknown): it is reported, stays listed, and reads as not
replay-complete.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from runtime.blocks import canonical_json
from runtime.storage.interface import Problem, RepairReport, VerifyReport
from runtime.storage.lmdb.chunks import chunk_problems, load_request, rebuild_refs
from runtime.storage.lmdb.env import Txn
from runtime.tracing.records import SessionTraceStats, TraceRecord

if TYPE_CHECKING:
    from runtime.storage.lmdb.traces import LmdbTraceStore


def _records(txn: Txn, traces: LmdbTraceStore) -> tuple[dict[str, TraceRecord], list[Problem]]:
    records: dict[str, TraceRecord] = {}
    problems: list[Problem] = []
    with txn.cursor(db=traces._traces) as cur:
        for key, raw in cur:
            try:
                records[key.decode()] = traces.decode_record(txn, raw)
            except Exception:  # noqa: BLE001 - any decoding failure is the damage we report
                problems.append(Problem("trace-unreadable", key.decode(errors="replace"), False))
    return records, problems


def _request_problems(
    txn: Txn, traces: LmdbTraceStore, records: dict[str, TraceRecord]
) -> list[Problem]:
    problems: list[Problem] = []
    used = {r.prompt_hash for r in records.values()}
    checked: dict[str, bool] = {}
    for cid, rec in sorted(records.items()):
        if rec.prompt_hash not in checked:
            checked[rec.prompt_hash] = _request_ok(txn, traces, rec.prompt_hash)
        if not checked[rec.prompt_hash]:
            problems.append(
                Problem(
                    "request-damaged",
                    f"trace {cid}: stored request missing or not hashing to {rec.prompt_hash[:12]}",
                    False,
                )
            )
    with txn.cursor(db=traces._requests) as cur:
        for key in cur.iternext(keys=True, values=False):
            if key.hex() not in used:
                problems.append(
                    Problem("request-orphan", f"request {key.hex()[:12]} is used by no trace")
                )
    if traces._chunks is not None:
        problems += [Problem(code, detail) for code, detail in
                     chunk_problems(txn, traces._chunks, traces.chunked_rows)]  # fmt: skip
    return problems


def _request_ok(txn: Txn, traces: LmdbTraceStore, expected: str) -> bool:
    stored = txn.get(bytes.fromhex(expected), db=traces._requests)
    if stored is None:
        return False
    try:
        load_request(txn, traces._chunks, stored, expected)
    except Exception:  # noqa: BLE001 - undecodable or missing pieces are a mismatch
        return False
    return True


def _expected_rows(
    traces: LmdbTraceStore, records: dict[str, TraceRecord], flagged: set[str]
) -> dict[Any, set[bytes]]:
    from runtime.storage.lmdb.traces import FLAGGED, _status_key

    rows: dict[Any, set[bytes]] = {}
    for cid, rec in records.items():
        for key, db in traces._index_rows(rec):
            rows.setdefault(db, set()).add(key)
        if cid in flagged:
            rows.setdefault(traces._by_status, set()).add(_status_key(FLAGGED, cid))
    return rows


def _index_problems(
    txn: Txn, traces: LmdbTraceStore, records: dict[str, TraceRecord], flagged: set[str]
) -> list[Problem]:
    problems: list[Problem] = []
    expected = _expected_rows(traces, records, flagged)
    for name, db in _index_dbs(traces):
        with txn.cursor(db=db) as cur:
            actual = set(cur.iternext(keys=True, values=False))
        want = expected.get(db, set())
        problems += [Problem("index-missing", f"{name}: {k!r}") for k in sorted(want - actual)]
        problems += [Problem("index-dangling", f"{name}: {k!r}") for k in sorted(actual - want)]
    problems += [
        Problem("flag-dangling", f"flag of missing trace {cid}")
        for cid in sorted(flagged - set(records))
    ]
    return problems


def _index_dbs(traces: LmdbTraceStore) -> list[tuple[str, Any]]:
    return [("trace_by_session", traces._by_session), ("trace_by_time", traces._by_time),
            ("trace_by_status", traces._by_status), ("trace_by_hash", traces._by_hash)]  # fmt: skip


def _flagged(txn: Txn, traces: LmdbTraceStore) -> set[str]:
    with txn.cursor(db=traces._flags) as cur:
        return {key.decode() for key in cur.iternext(keys=True, values=False)}


def _stats(records: dict[str, TraceRecord], flagged: set[str]) -> dict[str, SessionTraceStats]:
    """Recompute every session's aggregates from the records themselves."""
    out: dict[str, SessionTraceStats] = {}
    for cid in sorted(records):
        rec = records[cid]
        stats = out.get(rec.session, SessionTraceStats(rec.session))
        out[rec.session] = stats.counting(rec, flagged=cid in flagged)
    return out


def _counts(s: SessionTraceStats) -> tuple[int, ...]:
    return (s.calls, s.errors, s.flagged, s.repages, s.input_tokens, s.output_tokens)


def _counts_text(s: SessionTraceStats) -> str:
    return (f"{s.calls} calls, {s.errors} errors, {s.flagged} flagged, {s.repages} re-pages, "
            f"{s.input_tokens} input and {s.output_tokens} output tokens")  # fmt: skip


def _stats_problems(
    txn: Txn, traces: LmdbTraceStore, records: dict[str, TraceRecord], flagged: set[str]
) -> list[Problem]:
    expected = _stats(records, flagged)
    problems = []
    with txn.cursor(db=traces._sessions) as cur:
        stored = {key.decode() for key in cur.iternext(keys=True, values=False)}
    for session in sorted(set(expected) | stored):
        have, current = traces.stored_stats_txn(txn, session)
        want = expected.get(session, SessionTraceStats(session))
        # An older store's token totals counted every call; pages recount them on read.
        fields = None if current else 3
        if _counts(have)[:fields] != _counts(want)[:fields]:
            problems.append(
                Problem(
                    "count-mismatch",
                    f"session {session}: stored {_counts_text(have)}; records say {_counts_text(want)}",
                )
            )
    return problems


def check_traces(txn: Txn, traces: LmdbTraceStore) -> VerifyReport:
    """Return every problem in the trace store (read-only)."""
    records, problems = _records(txn, traces)
    flagged = _flagged(txn, traces)
    problems += _request_problems(txn, traces, records)
    problems += _index_problems(txn, traces, records, flagged)
    problems += _stats_problems(txn, traces, records, flagged)
    requests = txn.stat(traces._requests)["entries"]
    return VerifyReport(blocks=requests, entries=len(records), edges=0, problems=tuple(problems))


def repair_traces(txn: Txn, traces: LmdbTraceStore) -> RepairReport:
    """Rebuild indexes and aggregates from the records; drop unused request bytes."""
    report = check_traces(txn, traces)
    records, _ = _records(txn, traces)
    flagged = _flagged(txn, traces) & set(records)
    for _, db in _index_dbs(traces):
        txn.drop(db, delete=False)
    for db, keys in _expected_rows(traces, records, flagged).items():
        for key in sorted(keys):
            txn.put(key, b"", db=db)
    _drop_orphans(txn, traces, records)
    txn.drop(traces._sessions, delete=False)
    totals = Counter[str]()
    for stats in _stats(records, flagged).values():
        traces._put_stats(txn, stats)
        totals.update(calls=stats.calls, error=stats.errors, flagged=stats.flagged)
    txn.put(b"totals", canonical_json(dict(sorted(totals.items()))), db=traces._meta)
    fixed = tuple(p for p in report.problems if p.repairable)
    return RepairReport(
        fixed=fixed, unfixable=tuple(p for p in report.problems if not p.repairable)
    )


def _drop_orphans(txn: Txn, traces: LmdbTraceStore, records: dict[str, TraceRecord]) -> None:
    used = {bytes.fromhex(r.prompt_hash) for r in records.values()}
    with txn.cursor(db=traces._requests) as cur:
        orphans = [k for k in cur.iternext(keys=True, values=False) if k not in used]
    for key in orphans:
        txn.delete(key, db=traces._requests)
    if traces._chunks is not None:
        rebuild_refs(txn, traces._chunks, traces.chunked_rows)
    with txn.cursor(db=traces._flags) as cur:
        stale = [k for k in cur.iternext(keys=True, values=False) if k.decode() not in records]
    for key in stale:
        txn.delete(key, db=traces._flags)
