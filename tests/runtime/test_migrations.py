"""A store written by the code before layout versions opens, upgrades in place and loses nothing.

The fixture (tests/fixtures/store-v1, made by tests/fixtures/make_v1_store.py with the code of
43c5bb9) is copied to tmp_path for every test: the committed files are never written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.errors import StoreOutdated
from runtime.inspect.paging import paging_from_totals, session_paging
from runtime.storage.kv import Tables
from runtime.storage.lmdb import env as lmdbenv
from runtime.storage.lmdb.store import LmdbStore
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.storage.migrations import (
    CURRENT_VERSION,
    MIGRATIONS,
    Migration,
    current_version,
    migrate,
)
from runtime.storage.tracecheck import aggregates_of
from runtime.storage.tracerows import SESSIONS, TURNS, session_key

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures"
FACTS = json.loads((FIXTURE / "store-v1.json").read_text())
OLD_STATS = ("calls", "turns", "errors", "flagged", "input_tokens", "output_tokens",
             "first_at", "last_at", "repages")  # fmt: skip


@pytest.fixture
def v1(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    shutil.copytree(FIXTURE / "store-v1", path, ignore=shutil.ignore_patterns("lock.mdb"))
    yield path
    lmdbenv.close_env(path)


def _aggregate_rows(store: LmdbStore) -> list[tuple[str, bytes, bytes]]:
    return store.kv.read(lambda t: [(n, k, v) for n in (SESSIONS, TURNS) for k, v in t.scan(n)])


def test_the_fixture_is_a_version_1_store(v1: Path) -> None:
    assert current_version(LmdbStore(v1).kv) == 1


def test_opening_a_v1_store_upgrades_it_in_place_with_every_hash_intact(v1: Path) -> None:
    store = LmdbStore(v1)
    traces = LmdbTraceStore(store)  # opening the trace store writable migrates
    assert current_version(store.kv) == CURRENT_VERSION
    assert [s.session for s in store.sessions()] == FACTS["sessions"]
    assert sorted(b.id for b in store.get_many(FACTS["blocks"])) == FACTS["blocks"]
    assert store.verify().ok and traces.verify().ok
    records = {r.call_id: r for r in traces.list(limit=None)}
    assert sorted(records) == sorted(FACTS["records"])
    for cid, fact in FACTS["records"].items():
        rec = records[cid]
        assert (rec.session, rec.turn, rec.prompt_hash, rec.origin.value, rec.flagged) == (
            fact["session"], fact["turn"], fact["prompt_hash"], fact["origin"], fact["flagged"],
        )  # fmt: skip
        request = traces.request_bytes(rec.prompt_hash)
        assert request is not None and hashlib.sha256(request).hexdigest() == rec.prompt_hash
        assert rec.replay_complete


def test_upgraded_aggregates_keep_the_old_figures_and_equal_a_recount(v1: Path) -> None:
    store = LmdbStore(v1)
    traces = LmdbTraceStore(store)
    sessions = FACTS["sessions"]
    for stats in traces.session_stats(sessions):
        old = FACTS["session_stats"][stats.session]
        assert {k: stats.to_json()[k] for k in OLD_STATS} == {k: old[k] for k in OLD_STATS}
    records = traces.list(limit=None)
    flagged = {r.call_id for r in records if r.flagged}
    want_stats, want_groups = aggregates_of({r.call_id: r for r in records}, flagged)
    assert traces.session_stats(sorted(want_stats)) == [want_stats[s] for s in sorted(want_stats)]
    for key, group in want_groups.items():
        session, turn = key[:-5].decode(), int.from_bytes(key[-4:], "big")
        assert session_key(session, turn) == key
        assert traces.turn_group(session, turn) == group


def test_migrating_twice_changes_nothing(v1: Path) -> None:
    store = LmdbStore(v1)
    assert migrate(store.kv) == ["session-aggregates", "ann-keys-by-session"]
    rows = _aggregate_rows(store)
    assert migrate(store.kv) == []
    assert _aggregate_rows(store) == rows
    # Running the migration's own step again (a crash after it, before its bump) is harmless.
    store.kv.write(MIGRATIONS[0].apply)
    assert _aggregate_rows(store) == rows


def test_a_migration_that_fails_leaves_the_store_at_its_version(v1: Path) -> None:
    store = LmdbStore(v1)

    def half_done(t: Tables) -> None:
        t.put("meta", b"half", b"done")
        raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        migrate(store.kv, registry=(Migration(2, "broken", half_done),))
    assert current_version(store.kv) == 1
    assert store.kv.read(lambda t: t.get("meta", b"half")) is None


def test_a_read_only_v1_store_reads_records_and_says_to_migrate(v1: Path) -> None:
    for item in v1.iterdir():
        item.chmod(0o444)
    v1.chmod(0o555)
    try:
        store = LmdbStore(v1, readonly=True)
        traces = LmdbTraceStore(store)
        some = next(iter(FACTS["records"]))
        assert traces.get(some).prompt_hash == FACTS["records"][some]["prompt_hash"]
        with pytest.raises(StoreOutdated, match="llm386 migrate"):
            traces.session_stats(["fx-agent"])
        assert current_version(store.kv) == 1
    finally:
        v1.chmod(0o755)
        for item in v1.iterdir():
            item.chmod(0o644)


def test_the_migrate_command_prints_each_migration_then_up_to_date(
    v1: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--store", str(v1), "migrate"]) == 0
    assert "applied 2 session-aggregates" in capsys.readouterr().out
    assert main(["--store", str(v1), "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_session_paging_from_aggregates_equals_the_sum_over_records(v1: Path) -> None:
    traces = LmdbTraceStore(LmdbStore(v1))
    for session in FACTS["sessions"]:
        stats = traces.session_stats([session])[0]
        records = traces.list(session=session, limit=None)
        want = session_paging(session, records, "claude-sonnet-4-6")
        got = paging_from_totals(session, stats.paging, "claude-sonnet-4-6")
        if want is None:
            assert got is None
            continue
        assert got is not None
        a, b = got.accounting, want.accounting
        assert (a.turns, a.categories, a.peak_full, a.peak_packed, a.evictions, a.faults,
                a.refaults) == (b.turns, b.categories, b.peak_full, b.peak_packed, b.evictions,
                                b.faults, b.refaults)  # fmt: skip
        assert a.full_cost.cached_usd == pytest.approx(b.full_cost.cached_usd)
        assert a.packed_cost.uncached_usd == pytest.approx(b.packed_cost.uncached_usd)
