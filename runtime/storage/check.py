"""Verify and repair for the block store, on any engine: re-derive every hash, check every index
both ways.

Verify reads everything in one read transaction and changes nothing. Repair runs the same
checks inside one write transaction and fixes what is safe to fix: it drops index rows and edges
that point at missing blocks, rebuilds missing reverse-index rows and session counts. A block whose
body no longer hashes to its id cannot be repaired (the true content is unknown); repair reports
it and leaves it for the user to delete. (The trace store has its own checks.)
"""

from __future__ import annotations

from collections.abc import Callable

from runtime.blocks import BlockKind, content_hash
from runtime.storage.codec import (
    BLOCKS,
    BYTE_EDGE,
    EDGES_IN,
    EDGES_OUT,
    ENTRIES,
    MEMBERS,
    SESSIONS,
    TOKENS,
    entry_block_id,
    entry_key,
    json_load,
    member_key,
    split_entry_key,
    split_member_key,
)
from runtime.storage.interface import Problem, RepairReport, VerifyReport
from runtime.storage.kv import Tables
from runtime.storage.sessionrows import recount


def _hash_ok(key: bytes, raw: bytes) -> bool:
    try:
        rec = json_load(raw)
        return bool(content_hash(BlockKind(rec["k"]), rec["b"]) == key.hex())
    except Exception:  # noqa: BLE001 - any decoding failure is the corruption we report
        return False


def _block_problems(t: Tables) -> tuple[int, list[Problem]]:
    problems: list[Problem] = []
    count = 0
    for key, raw in t.scan(BLOCKS):
        count += 1
        if not _hash_ok(key, raw):
            problems.append(Problem("hash-mismatch", key.hex(), repairable=False))
    return count, problems


def _entry_problems(t: Tables) -> tuple[int, list[Problem]]:
    problems: list[Problem] = []
    count = 0
    for key, raw in t.scan(ENTRIES):
        count += 1
        session, seq = split_entry_key(key)
        bid = bytes.fromhex(entry_block_id(raw))
        if t.get(BLOCKS, bid) is None:
            problems.append(Problem("dangling-entry", f"{session}#{seq}"))
        elif t.get(MEMBERS, bid + key) is None:
            problems.append(Problem("missing-member", f"{session}#{seq}"))
    for key in t.keys(MEMBERS):
        row = t.get(ENTRIES, key[32:])
        if row is None or entry_block_id(row) != key[:32].hex():
            session, seq = split_member_key(key)
            problems.append(Problem("orphan-member", f"{key[:32].hex()}@{session}#{seq}"))
    return count, problems


def _edge_alive(t: Tables, key: bytes) -> bool:
    here, kind, there = key[:32], key[32], key[33:]
    return kind in BYTE_EDGE and all(t.get(BLOCKS, end) is not None for end in (here, there))


def _edge_problems(t: Tables) -> tuple[int, list[Problem]]:
    problems: list[Problem] = []
    count = 0
    for table, mirror, name in ((EDGES_OUT, EDGES_IN, "out"), (EDGES_IN, EDGES_OUT, "in")):
        for key in t.keys(table):
            count += name == "out"
            here, kind, there = key[:32], key[32], key[33:]
            label = f"{name}:{here.hex()[:12]}-{BYTE_EDGE.get(kind, kind)}-{there.hex()[:12]}"
            if not _edge_alive(t, key):
                problems.append(Problem("dangling-edge", label))
            elif t.get(mirror, there + bytes([kind]) + here) is None:
                problems.append(Problem("one-way-edge", label))
    return count, problems


def _session_problems(t: Tables) -> list[Problem]:
    problems: list[Problem] = []
    counts: dict[str, int] = {}
    for key in t.keys(ENTRIES):
        session, _ = split_entry_key(key)
        counts[session] = counts.get(session, 0) + 1
    for key, raw in t.scan(SESSIONS):
        session = key.decode()
        if json_load(raw)["count"] != counts.pop(session, 0):
            problems.append(Problem("count-mismatch", session))
    problems.extend(Problem("missing-session", s) for s in sorted(counts))
    return problems


def check_store(t: Tables) -> VerifyReport:
    """Return what is wrong with the block store as seen by ``t``."""
    blocks, problems = _block_problems(t)
    entries, entry_problems = _entry_problems(t)
    edges, edge_problems = _edge_problems(t)
    problems += entry_problems + edge_problems + _session_problems(t)
    for key in t.keys(TOKENS):
        bid = key.split(b"\x00", 1)[1]
        if t.get(BLOCKS, bid) is None:
            problems.append(Problem("orphan-token-count", bid.hex()))
    return VerifyReport(blocks, entries, edges, tuple(problems))


def repair_problems(t: Tables, report: VerifyReport) -> RepairReport:
    """Fix every repairable problem of ``report`` inside the write ``t``."""
    fixed: list[Problem] = []
    unfixable: list[Problem] = []
    for problem in report.problems:
        handler = _FIXES.get(problem.code)
        if handler is None or not problem.repairable:
            unfixable.append(problem)
            continue
        handler(t, problem.detail)
        fixed.append(problem)
    return RepairReport(tuple(fixed), tuple(unfixable))


def _entry_parts(detail: str) -> tuple[str, int]:
    session, seq = detail.rsplit("#", 1)
    return session, int(seq)


def _fix_dangling_entry(t: Tables, detail: str) -> None:
    session, seq = _entry_parts(detail)
    key = entry_key(session, seq)
    raw = t.get(ENTRIES, key)
    if raw is not None:
        t.delete(MEMBERS, bytes.fromhex(entry_block_id(raw)) + key)
        t.delete(ENTRIES, key)
    recount(t, session)


def _fix_missing_member(t: Tables, detail: str) -> None:
    session, seq = _entry_parts(detail)
    key = entry_key(session, seq)
    raw = t.get(ENTRIES, key)
    if raw is not None:
        t.put(MEMBERS, bytes.fromhex(entry_block_id(raw)) + key, b"")


def _fix_orphan_member(t: Tables, detail: str) -> None:
    bid, rest = detail.split("@", 1)
    session, seq = _entry_parts(rest)
    t.delete(MEMBERS, member_key(bid, session, seq))


def _fix_edge(t: Tables, detail: str) -> None:
    # Re-scan rather than parse the short label: drop every edge row whose ends are missing or
    # whose mirror row is missing, then re-add the mirror for edges whose ends both exist.
    for table, mirror in ((EDGES_OUT, EDGES_IN), (EDGES_IN, EDGES_OUT)):
        for key in list(t.keys(table)):
            here, kind, there = key[:32], key[32], key[33:]
            if not _edge_alive(t, key):
                t.delete(table, key)
                t.delete(mirror, there + bytes([kind]) + here)
            else:
                t.put(mirror, there + bytes([kind]) + here, b"")


def _fix_count(t: Tables, detail: str) -> None:
    recount(t, detail)


def _fix_orphan_tokens(t: Tables, detail: str) -> None:
    suffix = bytes.fromhex(detail)
    for key in [k for k in t.keys(TOKENS) if k.endswith(suffix)]:
        t.delete(TOKENS, key)


_FIXES: dict[str, Callable[[Tables, str], None]] = {
    "dangling-entry": _fix_dangling_entry,
    "missing-member": _fix_missing_member,
    "orphan-member": _fix_orphan_member,
    "dangling-edge": _fix_edge,
    "one-way-edge": _fix_edge,
    "count-mismatch": _fix_count,
    "missing-session": _fix_count,
    "orphan-token-count": _fix_orphan_tokens,
}
