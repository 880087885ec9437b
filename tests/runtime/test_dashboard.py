"""The dashboard's figures: buckets, percentiles, the cache cost split, errors, grouping, CSV."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from runtime import NewBlock
from runtime.blocks import BlockKind, canonical_json
from runtime.errors import InvalidInput
from runtime.indexes import callpoints
from runtime.indexes.rebuild import reindex
from runtime.inspect.dashboard import (
    DAY_MS,
    HOUR_MS,
    MAX_GROUPS,
    OTHER,
    DashQuery,
    Grouping,
    TimeRange,
    dashboard,
    percentile,
)
from runtime.inspect.dashcharts import BY_NAME, chart_series, chart_spec, csv_cell, csv_rows
from runtime.providers.pricing import call_cost, get_price
from runtime.providers.usage import Usage
from runtime.tracing import records as tr

REQUEST = canonical_json({"messages": [{"role": "user", "content": "hi"}], "model": "m"})
NOON = int(dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC).timestamp() * 1000)  # a Tuesday
HAIKU = "claude-haiku-4-5"


def _rec(session: str, at: int, model: str = HAIKU, **fields: Any) -> tr.TraceRecord:
    base = {"call_id": tr.new_call_id(), "session": session, "turn": 1, "started_at": at,
            "provider": tr.Provider.ANTHROPIC, "model": model, "prompt_hash": tr.prompt_hash(REQUEST),
            "request_size": len(REQUEST), "response": {"content": []}}  # fmt: skip
    return tr.TraceRecord(**(base | fields))  # type: ignore[arg-type]


def _write(
    stores: Any, records: list[tr.TraceRecord], sources: dict[str, str] | None = None
) -> None:
    store, traces = stores
    for session in sorted({r.session for r in records}):
        store.put(session, NewBlock(BlockKind.USER_MESSAGE, f"hello from {session}"))
        if sources and session in sources:
            store.set_session_meta(session, source=sources[session])
    traces.record_many([tr.StoredTrace(r, REQUEST) for r in records])


def _dash(stores: Any, q: DashQuery | None = None, now: int = NOON + HOUR_MS) -> Any:
    return dashboard(*stores, q or DashQuery(), now_ms=now)


def test_an_empty_store_gives_empty_buckets_and_no_groups(stores: Any) -> None:
    dash = _dash(stores, DashQuery(TimeRange.DAY))
    assert dash.empty and dash.groups == () and dash.hourly
    assert len(dash.buckets) == 24  # now is on the hour: 13:00 yesterday to 12:00 today
    assert len(_dash(stores, DashQuery(TimeRange.DAY), now=NOON + 90_000).buckets) == 25
    assert csv_rows(dash, BY_NAME["errors"]) == [["bucket_start_utc", "model", "calls", "errors"]]
    assert all(v is None for s in chart_series(dash, BY_NAME["latency-p95"]) for v in s.values)


def test_calls_fall_into_utc_hour_buckets_and_empty_hours_stay_listed(stores: Any) -> None:
    _write(stores, [_rec("a", NOON + 5, usage=Usage(10, 1)), _rec("a", NOON + 59 * 60_000,
                    usage=Usage(20, 2)), _rec("a", NOON - 2 * HOUR_MS, usage=Usage(5, 1))])  # fmt: skip
    dash = _dash(stores, DashQuery(TimeRange.DAY))
    by_label = {b.label: dash.stats(b, HAIKU) for b in dash.buckets}
    assert by_label["2026-03-10 12:00"].usage.input_tokens == 30
    assert by_label["2026-03-10 12:00"].calls == 2
    assert by_label["2026-03-10 11:00"].calls == 0
    assert by_label["2026-03-10 10:00"].usage.output_tokens == 1


def test_a_month_is_counted_in_days_and_since_until_picks_whole_utc_days(stores: Any) -> None:
    _write(stores, [_rec("a", NOON - 3 * DAY_MS, usage=Usage(7, 0)),
                    _rec("a", NOON, usage=Usage(1, 0))])  # fmt: skip
    month = _dash(stores, DashQuery(TimeRange.MONTH))
    assert not month.hourly and len(month.buckets) == 31
    custom = _dash(stores, DashQuery(since=dt.date(2026, 3, 7), until=dt.date(2026, 3, 7)))
    assert [b.label for b in custom.buckets][0] == "2026-03-07 00:00"
    assert custom.totals.usage.input_tokens == 7 and custom.totals.calls == 1
    everything = _dash(stores, DashQuery(TimeRange.ALL))
    assert everything.totals.calls == 2 and everything.hourly  # three days apart: hourly


def test_p50_and_p95_are_nearest_rank_over_the_bucket(stores: Any) -> None:
    latencies = [float(ms) for ms in range(1, 101)]  # 1..100 ms
    _write(stores, [_rec("a", NOON + i, usage=Usage(1, 1), latency_ms=ms)
                    for i, ms in enumerate(reversed(latencies))])  # fmt: skip
    dash = _dash(stores)
    cell = next(dash.stats(b, HAIKU) for b in dash.buckets if b.start_ms == NOON)
    assert (cell.latency_p50_ms, cell.latency_p95_ms) == (50.0, 95.0)
    assert percentile([3.0], 95) == 3.0 and percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0


def test_cost_splits_uncached_input_cache_reads_and_writes_at_list_price(stores: Any) -> None:
    _write(stores, [_rec("a", NOON, usage=Usage(1_000_000, 10, 2_000_000, 400_000))])
    price = get_price(HAIKU)
    totals = _dash(stores).totals
    assert totals.cost_input_usd == pytest.approx(price.input_usd_per_mtok)
    assert totals.cost_cache_read_usd == pytest.approx(
        2 * price.input_usd_per_mtok * price.cache_read
    )
    assert totals.cost_cache_write_usd == pytest.approx(
        0.4 * price.input_usd_per_mtok * price.cache_write)  # fmt: skip
    assert totals.all_input_tokens == 3_400_000
    cost = chart_series(_dash(stores), BY_NAME["cost"])
    assert [s.label for s in cost] == ["uncached input", "cache reads", "cache writes", "output"]
    assert sum(v or 0 for v in cost[1].values) == pytest.approx(totals.cost_cache_read_usd)


def test_cost_prices_output_too_and_the_total_is_every_kind(stores: Any) -> None:
    _write(stores, [_rec("a", NOON, usage=Usage(1_000_000, 200_000, 2_000_000, 400_000))])
    price = get_price(HAIKU)
    assert price.output_usd_per_mtok is not None
    totals = _dash(stores).totals
    assert totals.cost_output_usd == pytest.approx(0.2 * price.output_usd_per_mtok)
    input_all = (1 + 2 * price.cache_read + 0.4 * price.cache_write) * price.input_usd_per_mtok
    assert totals.cost_input_all_usd == pytest.approx(input_all)
    assert totals.cost_usd == pytest.approx(input_all + 0.2 * price.output_usd_per_mtok)
    assert totals.cost_usd == pytest.approx(call_cost(Usage(1_000_000, 200_000, 2_000_000,
                                                            400_000), price))  # fmt: skip
    output = chart_series(_dash(stores), BY_NAME["cost"])[3]
    assert sum(v or 0 for v in output.values) == pytest.approx(totals.cost_output_usd)


def test_cost_csv_has_every_kind_per_group_and_they_sum_to_the_total(stores: Any) -> None:
    sonnet = "claude-sonnet-4-6"
    usages = {HAIKU: Usage(1000, 500, 8000, 2000), sonnet: Usage(3000, 100, 0, 6000)}
    _write(stores, [_rec("a", NOON, usage=usages[HAIKU]),
                    _rec("b", NOON + 1, model=sonnet, usage=usages[sonnet])],
           sources={"a": "proxy", "b": "otlp"})  # fmt: skip
    header, *rows = csv_rows(_dash(stores), BY_NAME["cost"])
    assert header == ["bucket_start_utc", "model", "calls", "cost_input_usd",
                      "cost_cache_read_usd", "cost_cache_write_usd", "cost_output_usd",
                      "cost_usd", "unpriced_calls"]  # fmt: skip
    cells = {r[1]: r for r in rows if r[2] != "0"}
    for model, usage in usages.items():
        row, price = cells[model], get_price(model)
        assert float(row[6]) == pytest.approx(
            usage.output_tokens * (price.output_usd_per_mtok or 0) / 1e6
        )
        assert sum(float(c) for c in row[3:7]) == pytest.approx(float(row[7]))
        assert float(row[7]) == pytest.approx(call_cost(usage, price))
    by_source = csv_rows(_dash(stores, DashQuery(group=Grouping.SOURCE)), BY_NAME["cost"])
    totals = {r[1]: float(r[7]) for r in by_source[1:] if r[2] != "0"}
    assert totals == pytest.approx(
        {
            "proxy": call_cost(usages[HAIKU], get_price(HAIKU)),
            "otlp": call_cost(usages[sonnet], get_price(sonnet)),
        }
    )


def test_unpriced_models_are_counted_apart_and_cost_nothing(stores: Any) -> None:
    _write(stores, [_rec("a", NOON, model="a-model-nobody-priced", usage=Usage(50, 5))])
    totals = _dash(stores).totals
    assert (totals.unpriced_calls, totals.cost_usd, totals.usage.input_tokens) == (1, 0.0, 50)


def test_errors_count_failed_calls_with_no_tokens_and_repages_are_left_out(stores: Any) -> None:
    ok = _rec("a", NOON, usage=Usage(10, 1), latency_ms=40.0)
    failed = _rec("a", NOON + 1, status=tr.TraceStatus.ERROR, error=tr.TraceError("overloaded", "busy"),
                  estimated_input_tokens=999, response=None, latency_ms=300.0)  # fmt: skip
    repage = _rec("a", NOON + 2, origin=tr.TraceOrigin.REPLAY, parent_call_id=ok.call_id,
                  response=None, estimated_input_tokens=7000,
                  config={tr.REPAGE_KEY: {"of": ok.call_id, "sent": False}})  # fmt: skip
    _write(stores, [ok, failed, repage])
    totals = _dash(stores).totals
    assert (totals.calls, totals.errors, totals.usage.input_tokens) == (2, 1, 10)
    assert totals.latency_p95_ms == 300.0  # a failed call took its time too


def test_grouping_by_source_uses_the_sessions_source_kind(stores: Any) -> None:
    _write(stores, [_rec("p1", NOON, usage=Usage(1, 1)), _rec("p2", NOON, usage=Usage(2, 1)),
                    _rec("i1", NOON, usage=Usage(4, 1)), _rec("bare", NOON, usage=Usage(8, 1))],
           {"p1": "proxy", "p2": "proxy", "i1": "tau-bench"})  # fmt: skip
    dash = _dash(stores, DashQuery(group=Grouping.SOURCE))
    assert dash.groups == ("proxy", "(none)", "import")
    tokens = {s.label: sum(v or 0 for v in s.values)
              for s in chart_series(dash, BY_NAME["input-tokens"])}  # fmt: skip
    assert tokens == {"proxy": 3, "(none)": 8, "import": 4}


def test_past_max_groups_the_smallest_models_are_summed_into_other(stores: Any) -> None:
    records = [_rec("a", NOON + i, model=f"m{i:02d}", usage=Usage(1, 1))
               for i in range(MAX_GROUPS + 2) for _ in range(1 + (i < 3))]  # fmt: skip
    _write(stores, records)
    dash = _dash(stores)
    assert len(dash.groups) == MAX_GROUPS and dash.groups[-1] == OTHER
    assert dash.groups[:3] == ("m00", "m01", "m02")
    assert sum(dash.stats(b, OTHER).calls for b in dash.buckets) == 3


def test_csv_has_a_row_per_bucket_and_group_and_defuses_formulas(stores: Any) -> None:
    hostile = '=HYPERLINK("http://x")'
    _write(stores, [_rec("a", NOON, model=hostile, usage=Usage(3, 1)),
                    _rec("a", NOON, usage=Usage(4, 1))])  # fmt: skip
    dash = _dash(stores, DashQuery(TimeRange.DAY))
    rows = csv_rows(dash, chart_spec("output-tokens"))
    assert rows[0] == ["bucket_start_utc", "model", "calls", "output_tokens"]
    assert len(rows) == 1 + len(dash.buckets) * 2
    assert ["2026-03-10 12:00", "'" + hostile, "1", "1"] in rows
    assert [csv_cell(v) for v in ("+1", "-2", "@x", "\tx", "ok", None, 0.5)] == [
        "'+1", "'-2", "'@x", "'\tx", "ok", "", "0.5"]  # fmt: skip


def test_bad_queries_are_refused_with_a_message() -> None:
    with pytest.raises(InvalidInput, match="starts"):
        DashQuery(since=dt.date(2026, 3, 2), until=dt.date(2026, 3, 1))
    with pytest.raises(InvalidInput, match="no chart"):
        chart_spec("pie")


def test_call_points_kept_incrementally_equal_points_rebuilt_by_reindex(stores: Any) -> None:
    store, traces = stores
    _write(stores, [_rec("a", NOON + i, usage=Usage(i, 1), latency_ms=float(i)) for i in range(5)])
    first = callpoints.points_between(store, traces, None, None)
    _write(stores, [_rec("b", NOON - DAY_MS, usage=Usage(9, 9))])  # added since: caught up
    incremental = callpoints.points_between(store, traces, None, None)
    assert len(incremental) == len(first) + 1
    reindex(store, traces)
    assert store.kv.read(lambda t: t.count("dash_calls")) == 6
    assert callpoints.points_between(store, traces, None, None) == incremental
    dumped = store.kv.read(lambda t: list(t.scan("dash_points")))
    store.kv.write(lambda t: t.clear("dash_points"))  # rows lost: reindex brings them back
    reindex(store, traces)
    assert store.kv.read(lambda t: list(t.scan("dash_points"))) == dumped


def test_a_deleted_session_leaves_the_dashboard(stores: Any) -> None:
    store, traces = stores
    _write(stores, [_rec("gone", NOON, usage=Usage(5, 1)), _rec("kept", NOON, usage=Usage(1, 1))])
    assert _dash(stores).totals.calls == 2
    traces.delete_session("gone")
    assert _dash(stores).totals.calls == 1


def test_the_dashboard_sums_the_same_on_every_backend(backend_store: Any) -> None:
    from runtime.storage.tracestore import KvTraceStore

    stores = (backend_store, KvTraceStore(backend_store))
    _write(stores, [_rec("a", NOON, usage=Usage(10, 2, 30, 4), latency_ms=12.0),
                    _rec("b", NOON + HOUR_MS, usage=Usage(1, 1), latency_ms=99.0)],
           {"b": "otlp"})  # fmt: skip
    dash = _dash(stores, DashQuery(group=Grouping.SOURCE), now=NOON + 2 * HOUR_MS)
    assert dash.groups == ("(none)", "otlp")
    assert (dash.totals.calls, dash.totals.all_input_tokens, dash.totals.latency_p95_ms) == (
        2, 45, 99.0)  # fmt: skip
    reindex(*stores)
    assert _dash(stores, DashQuery(group=Grouping.SOURCE), now=NOON + 2 * HOUR_MS) == dash
