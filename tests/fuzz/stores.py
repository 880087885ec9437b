"""A real store holding good data, and a snapshot of it to prove fuzzed writes changed nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime import LmdbStore, open_store
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.transfer.importer import ImportOptions, import_transcripts
from tests.fuzz.strategies import base_sessions, dump

GOOD_PREFIX = "good"


def good_store(path: Path) -> tuple[LmdbStore, LmdbTraceStore, list[str]]:
    """A store with the base sessions imported under the ``good`` prefix; returns their ids."""
    store = open_store(path)
    traces = LmdbTraceStore(store)
    data = dump(base_sessions(GOOD_PREFIX)).encode()
    report = import_transcripts(store, traces, data, name="good.json",
                                options=ImportOptions(prefix=GOOD_PREFIX))  # fmt: skip
    return store, traces, list(report.sessions)


def snapshot(store: LmdbStore, traces: LmdbTraceStore, sessions: list[str]) -> list[Any]:
    """Everything stored about ``sessions``: meta, entries, trace records and their bytes."""
    out: list[Any] = []
    for session in sessions:
        out.append((session, store.session_info(session).meta, store.entries(session)))
        for _, call_id in traces.turns(session):
            item = traces.stored_trace(call_id)
            out.append((item.record.to_json(), item.request, item.response))
    return out


def assert_unchanged(store: LmdbStore, traces: LmdbTraceStore, sessions: list[str],
                     before: list[Any]) -> None:  # fmt: skip
    report = store.verify()
    assert report.ok, report.to_json()
    assert snapshot(store, traces, sessions) == before
