"""The sessions list caches its table by backend-neutral change counters, never LMDB's txnid."""

from __future__ import annotations

from pathlib import Path

from runtime import NewBlock
from runtime.blocks import BlockKind
from runtime.indexes.snapshot import index_for
from runtime.inspect.sessions import summary_table
from tests.runtime.test_webviews import _record, _stores


def test_the_summary_table_is_kept_until_a_feed_change_or_a_trace_write(tmp_path: Path) -> None:
    store, traces = _stores(tmp_path)
    index_for(store)
    store.put_many("a", [NewBlock(BlockKind.USER_MESSAGE, "x")])
    first = summary_table(store, traces)
    assert summary_table(store, traces) is first
    stored = _record("a", 1, [])
    traces.record_many([stored])
    second = summary_table(store, traces)
    assert second is not first and second.rows[0].turns == 1
    traces.flag(stored.record.call_id, "wrong tool")  # a trace write that adds no record
    third = summary_table(store, traces)
    assert third is not second and third.rows[0].flagged == 1
    store.add_edges([])  # no edge added: nothing changed
    assert summary_table(store, traces) is third


def test_the_summary_table_sees_a_session_meta_change(tmp_path: Path) -> None:
    store, traces = _stores(tmp_path)
    index_for(store)
    store.put_many("a", [NewBlock(BlockKind.USER_MESSAGE, "x")])
    summary_table(store, traces)
    store.set_session_meta("a", title="renamed")
    assert summary_table(store, traces).rows[0].title == "renamed"
