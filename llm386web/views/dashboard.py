"""The dashboard: tokens, cost, latency and errors over time, by model or by source, and the
numbers behind each chart as CSV."""

from __future__ import annotations

import csv
import io
import time

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from llm386web.dashsvg import svg_chart
from llm386web.store_access import get_store, get_traces
from runtime.inspect.dashboard import Dashboard, DashQuery, Grouping, TimeRange, dashboard
from runtime.inspect.dashcharts import CHARTS, chart_spec, csv_rows
from runtime.inspect.sessionfilter import parse_day

from .common import choice_param, gc_paused, render_page

RANGES = tuple(r.value for r in TimeRange)
GROUPS = tuple(g.value for g in Grouping)
RANGE_CHOICES = (("24h", "last 24 h"), ("7d", "last 7 days"), ("30d", "last 30 days"),
                 ("all", "all time"))  # fmt: skip


def dash_query(request: HttpRequest) -> DashQuery:
    """Read the range, grouping and since/until days from the query string (400 if bad)."""
    get = request.GET.get
    return DashQuery(
        TimeRange(choice_param(request, "range", RANGES, TimeRange.WEEK.value)),
        Grouping(choice_param(request, "group", GROUPS, Grouping.MODEL.value)),
        since=parse_day(get("since", ""), "since"), until=parse_day(get("until", ""), "until"),
    )  # fmt: skip


def _dashboard(request: HttpRequest) -> Dashboard:
    return dashboard(get_store(), get_traces(), dash_query(request), now_ms=int(time.time() * 1000))


@require_GET
@gc_paused
def dashboard_page(request: HttpRequest) -> HttpResponse:
    """Show every chart of the chosen window and grouping, each with its CSV link."""
    dash = _dashboard(request)
    charts = [svg_chart(dash, spec) for spec in CHARTS]
    return render_page(request, "dashboard/dashboard.html", "dashboard-charts",
                       {"dash": dash, "charts": charts, "csv_query": request.GET.urlencode(),
                        "range_choices": RANGE_CHOICES,
                        "group_tabs": _group_tabs(request, dash.query.group)})  # fmt: skip


def _group_tabs(request: HttpRequest, current: Grouping) -> list[tuple[str, str, bool]]:
    """Return (text, URL, current) for "by model" and "by source", keeping the other filters."""
    tabs = []
    for group in Grouping:
        params = request.GET.copy()
        params["group"] = group.value
        tabs.append((f"By {group.value}", f"?{params.urlencode()}", group is current))
    return tabs


@require_GET
@gc_paused
def dashboard_csv(request: HttpRequest, chart: str) -> HttpResponse:
    """Return the numbers behind one chart: a header, then one row per bucket × group."""
    spec = chart_spec(chart)
    dash = _dashboard(request)
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(csv_rows(dash, spec))
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    name = f"llm386-{spec.name}-by-{dash.query.group.value}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
