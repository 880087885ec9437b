"""Verify and repair for the LMDB store: re-derive every hash, check every index both ways.

Verify reads everything in one read transaction and changes nothing. Repair runs the same
checks inside one write transaction and fixes what is safe to fix: it drops index rows and edges
that point at missing blocks, rebuilds missing reverse-index rows and session counts. A block whose
body no longer hashes to its id cannot be repaired (the true content is unknown); repair reports
it and leaves it for the user to delete.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.blocks import BlockKind, canonical_json, content_hash
from runtime.storage.codec import (
    BYTE_EDGE,
    entry_block_id,
    json_load,
    split_entry_key,
    split_member_key,
)
from runtime.storage.interface import Problem, RepairReport, VerifyReport
from runtime.storage.lmdb.env import Txn

if TYPE_CHECKING:
    from runtime.storage.lmdb.store import LmdbStore


def _block_problems(txn: Txn, store: LmdbStore) -> tuple[int, list[Problem]]:
    problems: list[Problem] = []
    count = 0
    with txn.cursor(db=store._blocks) as cur:
        for key, raw in cur:
            count += 1
            try:
                rec = json_load(raw)
                ok = content_hash(BlockKind(rec["k"]), rec["b"]) == key.hex()
            except Exception:  # noqa: BLE001 - any decoding failure is the corruption we report
                ok = False
            if not ok:
                problems.append(Problem("hash-mismatch", key.hex(), repairable=False))
    return count, problems


def _entry_problems(txn: Txn, store: LmdbStore) -> tuple[int, list[Problem]]:
    problems: list[Problem] = []
    count = 0
    with txn.cursor(db=store._entries) as cur:
        for key, raw in cur:
            count += 1
            session, seq = split_entry_key(key)
            bid = entry_block_id(raw)
            if txn.get(bytes.fromhex(bid), db=store._blocks) is None:
                problems.append(Problem("dangling-entry", f"{session}#{seq}"))
            elif txn.get(bytes.fromhex(bid) + key, db=store._members) is None:
                problems.append(Problem("missing-member", f"{session}#{seq}"))
    with txn.cursor(db=store._members) as cur:
        for key in cur.iternext(keys=True, values=False):
            raw = txn.get(key[32:], db=store._entries)
            if raw is None or entry_block_id(raw) != key[:32].hex():
                session, seq = split_member_key(key)
                problems.append(Problem("orphan-member", f"{key[:32].hex()}@{session}#{seq}"))
    return count, problems


def _edge_problems(txn: Txn, store: LmdbStore) -> tuple[int, list[Problem]]:
    problems: list[Problem] = []
    count = 0
    for db, mirror, name in (
        (store._edges_out, store._edges_in, "out"),
        (store._edges_in, store._edges_out, "in"),
    ):
        with txn.cursor(db=db) as cur:
            for key in cur.iternext(keys=True, values=False):
                count += name == "out"
                here, kind, there = key[:32], key[32], key[33:]
                label = f"{name}:{here.hex()[:12]}-{BYTE_EDGE.get(kind, kind)}-{there.hex()[:12]}"
                if kind not in BYTE_EDGE or any(
                    txn.get(end, db=store._blocks) is None for end in (here, there)
                ):
                    problems.append(Problem("dangling-edge", label))
                elif txn.get(there + bytes([kind]) + here, db=mirror) is None:
                    problems.append(Problem("one-way-edge", label))
    return count, problems


def _session_problems(txn: Txn, store: LmdbStore) -> list[Problem]:
    problems: list[Problem] = []
    counts: dict[str, int] = {}
    with txn.cursor(db=store._entries) as cur:
        for key in cur.iternext(keys=True, values=False):
            session, _ = split_entry_key(key)
            counts[session] = counts.get(session, 0) + 1
    with txn.cursor(db=store._sessions) as cur:
        for key, raw in cur:
            session = key.decode()
            if json_load(raw)["count"] != counts.pop(session, 0):
                problems.append(Problem("count-mismatch", session))
    problems.extend(Problem("missing-session", s) for s in sorted(counts))
    return problems


def check_store(store: LmdbStore, txn: Txn) -> VerifyReport:
    """Return what is wrong with the store as seen by ``txn``."""
    blocks, problems = _block_problems(txn, store)
    entries, entry_problems = _entry_problems(txn, store)
    edges, edge_problems = _edge_problems(txn, store)
    problems += entry_problems + edge_problems + _session_problems(txn, store)
    with txn.cursor(db=store._tokens) as cur:
        for key in cur.iternext(keys=True, values=False):
            if txn.get(key.split(b"\x00", 1)[1], db=store._blocks) is None:
                problems.append(Problem("orphan-token-count", key.split(b"\x00", 1)[1].hex()))
    return VerifyReport(blocks, entries, edges, tuple(problems))


def repair_problems(store: LmdbStore, txn: Txn, report: VerifyReport) -> RepairReport:
    """Fix every repairable problem of ``report`` inside ``txn``."""
    fixed: list[Problem] = []
    unfixable: list[Problem] = []
    for problem in report.problems:
        handler = _FIXES.get(problem.code)
        if handler is None or not problem.repairable:
            unfixable.append(problem)
            continue
        handler(store, txn, problem.detail)
        fixed.append(problem)
    return RepairReport(tuple(fixed), tuple(unfixable))


def _entry_parts(detail: str) -> tuple[str, int]:
    session, seq = detail.rsplit("#", 1)
    return session, int(seq)


def _fix_dangling_entry(store: LmdbStore, txn: Txn, detail: str) -> None:
    from runtime.storage.codec import entry_key

    session, seq = _entry_parts(detail)
    key = entry_key(session, seq)
    raw = txn.get(key, db=store._entries)
    if raw is not None:
        txn.delete(bytes.fromhex(entry_block_id(raw)) + key, db=store._members)
        txn.delete(key, db=store._entries)
    _recount(store, txn, session)


def _fix_missing_member(store: LmdbStore, txn: Txn, detail: str) -> None:
    from runtime.storage.codec import entry_key

    session, seq = _entry_parts(detail)
    key = entry_key(session, seq)
    bid = entry_block_id(txn.get(key, db=store._entries))
    txn.put(bytes.fromhex(bid) + key, b"", db=store._members)


def _fix_orphan_member(store: LmdbStore, txn: Txn, detail: str) -> None:
    from runtime.storage.codec import member_key

    bid, rest = detail.split("@", 1)
    session, seq = _entry_parts(rest)
    txn.delete(member_key(bid, session, seq), db=store._members)


def _fix_edge(store: LmdbStore, txn: Txn, detail: str) -> None:
    # Re-scan rather than parse the short label: drop every edge row whose ends are missing or
    # whose mirror row is missing, then re-add the mirror for edges whose ends both exist.
    for db, mirror in ((store._edges_out, store._edges_in), (store._edges_in, store._edges_out)):
        with txn.cursor(db=db) as cur:
            keys = list(cur.iternext(keys=True, values=False))
        for key in keys:
            here, kind, there = key[:32], key[32], key[33:]
            alive = kind in BYTE_EDGE and all(
                txn.get(e, db=store._blocks) is not None for e in (here, there)
            )
            if not alive:
                txn.delete(key, db=db)
                txn.delete(there + bytes([kind]) + here, db=mirror)
            else:
                txn.put(there + bytes([kind]) + here, b"", db=mirror)


def _recount(store: LmdbStore, txn: Txn, session: str) -> None:
    from runtime.storage.codec import session_prefix

    prefix = session_prefix(session)
    count = 0
    last = -1
    with txn.cursor(db=store._entries) as cur:
        if cur.set_range(prefix):
            for key in cur.iternext(keys=True, values=False):
                if not key.startswith(prefix):
                    break
                count += 1
                last = split_entry_key(key)[1]
    raw = txn.get(session.encode(), db=store._sessions)
    info: dict[str, Any] = json_load(raw) if raw else {"n": 0, "c": 0, "u": 0, "m": {}}
    info["count"] = count
    info["n"] = max(info["n"], last + 1)
    txn.put(session.encode(), canonical_json(info), db=store._sessions)


def _fix_count(store: LmdbStore, txn: Txn, detail: str) -> None:
    _recount(store, txn, detail)


def _fix_orphan_tokens(store: LmdbStore, txn: Txn, detail: str) -> None:
    with txn.cursor(db=store._tokens) as cur:
        keys = [
            k for k in cur.iternext(keys=True, values=False) if k.endswith(bytes.fromhex(detail))
        ]
    for key in keys:
        txn.delete(key, db=store._tokens)


_FIXES = {
    "dangling-entry": _fix_dangling_entry,
    "missing-member": _fix_missing_member,
    "orphan-member": _fix_orphan_member,
    "dangling-edge": _fix_edge,
    "one-way-edge": _fix_edge,
    "count-mismatch": _fix_count,
    "missing-session": _fix_count,
    "orphan-token-count": _fix_orphan_tokens,
}
