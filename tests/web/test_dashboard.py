"""The dashboard page and its CSV downloads: login, bad parameters, grouping, escaping."""

from __future__ import annotations

import csv
import io
import re
import time

import pytest
from django.test import Client

from runtime import BlockStore
from runtime.providers.usage import Usage
from runtime.tracing.records import TraceError, TraceStatus, TraceStore
from tests.runtime.test_dashboard import _rec, _write

pytestmark = pytest.mark.django_db

HOSTILE = '=cmd|"/c calc"!A1<script>alert(1)</script>'
HOUR = 3_600_000


@pytest.fixture
def calls(store: BlockStore, traces: TraceStore) -> None:
    now = int(time.time() * 1000)
    _write((store, traces), [
        _rec("proxied", now - HOUR, usage=Usage(100, 10, 50, 5), latency_ms=120.0),
        _rec("proxied", now - 2 * HOUR, status=TraceStatus.ERROR, response=None,
             error=TraceError("overloaded_error", "busy"), latency_ms=900.0),
        _rec("hostile", now - HOUR, model=HOSTILE, usage=Usage(7, 3), latency_ms=40.0),
    ], {"proxied": "proxy", "hostile": "tau-bench"})  # fmt: skip


def _csv(response) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_the_dashboard_needs_a_login(client: Client, store: BlockStore) -> None:
    response = client.get("/dashboard/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.get("/dashboard/errors.csv").status_code == 302


def test_the_page_draws_every_chart_with_its_csv_link(logged_in: Client, calls: None) -> None:
    response = logged_in.get("/dashboard/?range=24h")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('<svg class="dash"') == 6
    for name in ("input-tokens", "output-tokens", "cost", "latency-p50", "latency-p95", "errors"):
        assert f'href="/dashboard/{name}.csv?range=24h"' in html
    assert 'href="/dashboard/" aria-current="page">Dashboard</a>' in html
    assert "style=" not in html and "<script>" not in html.replace("<script src=", "")
    assert re.search(r"<dt>Errors</dt><dd>1</dd>", html)
    assert 'id="search-q" type="search" name="q" value=""' in html  # the header's box stays empty
    assert "Per hour (UTC), by model." in html


def test_hostile_model_names_are_escaped_in_the_svg_and_defused_in_csv(
    logged_in: Client, calls: None
) -> None:
    html = logged_in.get("/dashboard/?range=24h").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    rows = _csv(logged_in.get("/dashboard/output-tokens.csv?range=24h"))
    models = {row[1] for row in rows[1:]}
    assert "'" + HOSTILE in models and HOSTILE not in models


def test_csv_has_a_header_and_a_row_per_bucket_and_group(logged_in: Client, calls: None) -> None:
    response = logged_in.get("/dashboard/cost.csv?range=24h&group=source")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="llm386-cost-by-source.csv"'
    rows = _csv(response)
    assert rows[0] == ["bucket_start_utc", "source", "calls", "cost_input_usd",
                       "cost_cache_read_usd", "cost_cache_write_usd", "cost_output_usd",
                       "cost_usd", "unpriced_calls"]  # fmt: skip
    assert {row[1] for row in rows[1:]} == {"proxy", "import"}
    assert len(rows) - 1 == 2 * 24 or len(rows) - 1 == 2 * 25  # every hour × both sources
    proxy = [row for row in rows[1:] if row[1] == "proxy" and row[2] != "0"]
    assert sum(int(row[2]) for row in proxy) == 2
    assert sum(float(row[4]) for row in proxy) > 0  # cache reads priced apart


def test_grouping_by_source_names_the_sources_in_the_legend(logged_in: Client, calls: None) -> None:
    html = logged_in.get("/dashboard/?range=7d&group=source").content.decode()
    assert '<span class="swatch series-0"></span>proxy' in html
    assert '<span class="swatch series-1"></span>import' in html
    assert 'aria-current="page">By source</a>' in html
    assert "Per hour (UTC), by source." in html


def test_htmx_gets_only_the_charts_fragment(logged_in: Client, calls: None) -> None:
    html = logged_in.get("/dashboard/?group=source", HTTP_HX_REQUEST="true").content.decode()
    assert html.lstrip().startswith('<section id="dashboard-charts"')


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("range=forever", "range=&#x27;forever&#x27; is not one of"),
        ("group=colour", "group=&#x27;colour&#x27; is not one of"),
        ("since=yesterday", "is not a date written YYYY-MM-DD"),
        ("since=2026-03-02&until=2026-03-01", "starts (2026-03-02) after it ends"),
        ("since=1900-01-01&until=2026-01-01", "narrow it with since and until"),
    ],
)
def test_bad_parameters_are_a_400_with_a_message(
    logged_in: Client, calls: None, query: str, message: str
) -> None:
    for url in (f"/dashboard/?{query}", f"/dashboard/errors.csv?{query}"):
        response = logged_in.get(url)
        assert response.status_code == 400, url
        assert message in response.content.decode(), url


def test_an_unknown_chart_is_a_400_naming_the_charts(logged_in: Client, calls: None) -> None:
    response = logged_in.get("/dashboard/pie.csv")
    assert response.status_code == 400
    assert "no chart &#x27;pie&#x27;; charts: input-tokens" in response.content.decode()


def test_an_empty_store_shows_empty_charts(logged_in: Client) -> None:
    html = logged_in.get("/dashboard/").content.decode()
    assert "No call was sent in this window" in html
    assert html.count("no data in this window") == 6
