"""Verify and repair for the trace store, on any backend: re-hash every request, check every index.

Every request is rebuilt from its chunks and re-hashed (the one place besides writing and
``request_bytes`` that hashes request bytes); the chunk counts are recomputed from the rows and
compared with the stored ones; every aggregate (global totals, per session, per turn) is
recomputed from the records and compared.

Verify reads everything in one read transaction and changes nothing. Repair runs in one write
transaction: it rebuilds every index row and aggregate from the records (the records and the
request bytes are the truth; everything else is derived), drops request bytes no record uses,
then recomputes the chunk counts and drops chunks no request uses. A record whose stored
request is missing or no longer hashes to its prompt hash cannot be repaired (the true bytes
are unknown): it is reported, stays listed, and its bytes are refused when read.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping

from runtime.blocks import canonical_json
from runtime.errors import StoreError
from runtime.storage import migrations
from runtime.storage.interface import Problem, RepairReport, VerifyReport
from runtime.storage.kv import Tables
from runtime.storage.tracechunks import chunk_problems, rebuild_refs
from runtime.storage.tracerows import (
    BY_STATUS,
    CLIENT_REQUESTS,
    FLAGGED,
    FLAGS,
    INDEXES,
    META,
    REQUESTS,
    SESSIONS,
    TOTALS,
    TRACES,
    TURNS,
    client_request_in,
    client_sha256,
    decode_row,
    index_rows,
    put_stats,
    request_intact,
    session_key,
    status_key,
    stored_stats,
)
from runtime.tracing.aggregates import SessionTraceStats, TurnGroup
from runtime.tracing.records import TraceRecord

CHUNKED_ROWS = (REQUESTS, TRACES)  # the tables whose rows may name chunks


def _records(t: Tables) -> tuple[dict[str, TraceRecord], list[Problem]]:
    records: dict[str, TraceRecord] = {}
    problems: list[Problem] = []
    for key, raw in t.scan(TRACES):
        try:
            records[key.decode()] = decode_row(t, raw)
        except Exception:  # noqa: BLE001 - any decoding failure is the damage we report
            problems.append(Problem("trace-unreadable", key.decode(errors="replace"), False))
    return records, problems


def _request_problems(t: Tables, records: dict[str, TraceRecord]) -> list[Problem]:
    problems: list[Problem] = []
    checked: dict[str, bool] = {}
    for cid, rec in sorted(records.items()):
        if rec.prompt_hash not in checked:
            checked[rec.prompt_hash] = request_intact(t, rec.prompt_hash)
        if not checked[rec.prompt_hash]:
            problems.append(Problem(
                "request-damaged",
                f"trace {cid}: stored request missing or not hashing to {rec.prompt_hash[:12]}",
                False,
            ))  # fmt: skip
    used = {r.prompt_hash for r in records.values()}
    problems += [Problem("request-orphan", f"request {key.hex()[:12]} is used by no trace")
                 for key in t.keys(REQUESTS) if key.hex() not in used]  # fmt: skip
    # A read-only store written before chunking has no chunk tables, hence no chunks.
    with contextlib.suppress(StoreError):
        problems += [Problem(code, detail) for code, detail in chunk_problems(t, CHUNKED_ROWS)]
    return problems


def _client_problems(t: Tables, records: dict[str, TraceRecord]) -> list[Problem]:
    """The client's own bytes of calls the proxy paged: missing or damaged (not repairable: the
    record says what they hashed to), or kept for no record (dropped by repair)."""
    problems: list[Problem] = []
    for cid, rec in sorted(records.items()):
        sha = client_sha256(rec)
        if sha is not None and not _client_held(t, cid, sha):
            problems.append(Problem("client-request-damaged", f"trace {cid}: the client's own "
                                    f"request bytes are missing or not hashing to {sha[:12]}",
                                    False))  # fmt: skip
    problems += [Problem("client-request-orphan", f"client request of missing trace {k!r}")
                 for k in _client_orphans(t, records)]  # fmt: skip
    return problems


def _client_held(t: Tables, cid: str, sha: str) -> bool:
    try:
        return client_request_in(t, cid, sha) is not None
    except StoreError:  # a read-only LMDB store that never had the table holds none
        return False


def _client_orphans(t: Tables, records: Mapping[str, TraceRecord]) -> list[bytes]:
    with contextlib.suppress(StoreError):  # no table yet: nothing kept
        return [k for k in t.keys(CLIENT_REQUESTS) if k.decode(errors="replace") not in records]
    return []


def _expected_rows(records: dict[str, TraceRecord], flagged: set[str]) -> dict[str, set[bytes]]:
    rows: dict[str, set[bytes]] = {table: set() for table in INDEXES}
    for cid, rec in records.items():
        for table, key in index_rows(rec):
            rows[table].add(key)
        if cid in flagged:
            rows[BY_STATUS].add(status_key(FLAGGED, cid))
    return rows


def _index_problems(t: Tables, records: dict[str, TraceRecord], flagged: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    for table, want in _expected_rows(records, flagged).items():
        actual = set(t.keys(table))
        problems += [Problem("index-missing", f"{table}: {k!r}") for k in sorted(want - actual)]
        problems += [Problem("index-dangling", f"{table}: {k!r}") for k in sorted(actual - want)]
    problems += [Problem("flag-dangling", f"flag of missing trace {cid}")
                 for cid in sorted(flagged - set(records))]  # fmt: skip
    return problems


def _flagged(t: Tables) -> set[str]:
    return {key.decode() for key in t.keys(FLAGS)}


def aggregates_of(
    records: Mapping[str, TraceRecord], flagged: set[str]
) -> tuple[dict[str, SessionTraceStats], dict[bytes, TurnGroup]]:
    """Recompute every session's and every turn's aggregates from the records themselves."""
    stats: dict[str, SessionTraceStats] = {}
    groups: dict[bytes, TurnGroup] = {}
    for cid in sorted(records):
        rec = records[cid]
        key = session_key(rec.session, rec.turn)
        group = groups.get(key)
        groups[key] = TurnGroup.of(rec) if group is None else group.adding(rec)
        before = stats.get(rec.session, SessionTraceStats(rec.session))
        stats[rec.session] = before.counting(rec, flagged=cid in flagged, new_turn=group is None)
    return stats, groups


def _aggregate_problems(
    t: Tables, records: dict[str, TraceRecord], flagged: set[str]
) -> list[Problem]:
    if migrations.version_of(t) < migrations.CURRENT_VERSION:
        return [Problem("layout-outdated", "the store predates the session aggregates; run "
                        "`llm386 migrate`", False)]  # fmt: skip
    want_stats, want_groups = aggregates_of(records, flagged)
    problems = []
    for session in sorted(set(want_stats) | {k.decode() for k in t.keys(SESSIONS)}):
        have = stored_stats(t, session)
        want = want_stats.get(session, SessionTraceStats(session))
        if have != want:
            problems.append(Problem(
                "count-mismatch", f"session {session}: stored {_text(have)}; records say {_text(want)}"
            ))  # fmt: skip
    have_groups = {k: TurnGroup.from_stored(_json(v)) for k, v in t.scan(TURNS)}
    for key in sorted(set(have_groups) | set(want_groups)):
        if have_groups.get(key) != want_groups.get(key):
            problems.append(Problem("turn-mismatch", f"turn row {key!r} differs from its records"))
    totals = _totals(want_stats)
    raw = t.get(META, TOTALS)
    have_totals = {k: v for k, v in (_json(raw) if raw else {}).items() if v}
    if have_totals != {k: v for k, v in totals.items() if v}:
        problems.append(
            Problem("count-mismatch", f"totals: stored {have_totals}, records say {totals}")
        )
    return problems


def _json(raw: bytes) -> dict:
    from runtime.storage.codec import json_load

    return dict(json_load(raw))


def _text(s: SessionTraceStats) -> str:
    return (f"{s.calls} calls, {s.errors} errors, {s.flagged} flagged, {s.repages} re-pages, "
            f"{s.input_tokens} input and {s.output_tokens} output tokens")  # fmt: skip


def _totals(stats: Mapping[str, SessionTraceStats]) -> dict[str, int]:
    totals = Counter[str]()
    for s in stats.values():
        totals.update(calls=s.calls, error=s.errors, flagged=s.flagged)
    return dict(sorted(totals.items()))


def check_traces(t: Tables) -> VerifyReport:
    """Return every problem in the trace store (read-only)."""
    records, problems = _records(t)
    flagged = _flagged(t)
    problems += _request_problems(t, records)
    problems += _client_problems(t, records)
    problems += _index_problems(t, records, flagged)
    problems += _aggregate_problems(t, records, flagged)
    requests = sum(1 for _ in t.keys(REQUESTS))
    return VerifyReport(blocks=requests, entries=len(records), edges=0, problems=tuple(problems))


def rebuild_aggregates(t: Tables, records: Mapping[str, TraceRecord] | None = None) -> None:
    """Write every session, turn and global aggregate again from the records."""
    if records is None:
        records, _ = _records(t)
    stats, groups = aggregates_of(records, _flagged(t) & set(records))
    t.clear(SESSIONS)
    t.clear(TURNS)
    for s in stats.values():
        put_stats(t, s)
    for key, group in sorted(groups.items()):
        t.put(TURNS, key, canonical_json(group.stored()))
    t.put(META, TOTALS, canonical_json(_totals(stats)))


def repair_traces(t: Tables) -> RepairReport:
    """Rebuild indexes and aggregates from the records; drop unused request bytes."""
    report = check_traces(t)
    records, _ = _records(t)
    flagged = _flagged(t) & set(records)
    for table in INDEXES:
        t.clear(table)
    for table, keys in _expected_rows(records, flagged).items():
        t.put_many(table, [(key, b"") for key in sorted(keys)])
    _drop_orphans(t, records)
    rebuild_aggregates(t, records)
    return RepairReport(
        fixed=tuple(p for p in report.problems if p.repairable),
        unfixable=tuple(p for p in report.problems if not p.repairable),
    )


def _drop_orphans(t: Tables, records: dict[str, TraceRecord]) -> None:
    used = {bytes.fromhex(r.prompt_hash) for r in records.values()}
    for key in [k for k in t.keys(REQUESTS) if k not in used]:
        t.delete(REQUESTS, key)
    rebuild_refs(t, CHUNKED_ROWS)
    for key in [k for k in t.keys(FLAGS) if k.decode() not in records]:
        t.delete(FLAGS, key)
    for key in _client_orphans(t, records):
        t.delete(CLIENT_REQUESTS, key)
