"""Sessions list, session timeline and a session's blocks: one window per request, never a scan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from llm386web.charts import stacked_bars, value_strip
from llm386web.conf import web_config
from llm386web.savedviews import SESSIONS, saved_views_context
from llm386web.store_access import get_store, get_traces
from runtime.blocks import Entry, SessionInfo
from runtime.errors import InvalidSession
from runtime.inspect.pagination import Pagination, by_offset, by_seq
from runtime.inspect.paging import paging_from_totals
from runtime.inspect.sessionfilter import FilterChoices, parse_day, parse_meta, parse_tags
from runtime.inspect.sessions import (
    SessionQuery,
    SessionStatus,
    SortKey,
    SourceKind,
    query_sessions,
    summarize,
)
from runtime.inspect.timeline import session_timeline, timeline_version
from runtime.tracing.records import TraceStore
from runtime.transfer.exchange import open_export

from .common import (
    choice_param,
    gc_paused,
    limit_from,
    list_page,
    offset_from,
    pager,
    pairs,
    render_page,
    start_from,
    yes_no_param,
)

SORTS = tuple(k.value for k in SortKey)
STATUSES = tuple(s.value for s in SessionStatus)
SOURCES = tuple(s.value for s in SourceKind)
SOURCE_CHOICES = (("agent", "own agent"), ("proxy", "proxy"), ("import", "import"),
                  ("otlp", "OTLP spans"))  # fmt: skip


def session_query(request: HttpRequest) -> SessionQuery:
    """Read the sessions list's filters, sort and page from the query string (400 if bad)."""
    status = choice_param(request, "status", STATUSES)
    source = choice_param(request, "source", SOURCES)
    get = request.GET.get
    return SessionQuery(
        text=get("q", "")[:500],
        model=get("model", "")[:200],
        status=SessionStatus(status) if status else None,
        failing=yes_no_param(request, "failing"),
        faults=yes_no_param(request, "faults"),
        source=SourceKind(source) if source else None,
        since=parse_day(get("since", ""), "since"),
        until=parse_day(get("until", ""), "until"),
        provider=get("provider", "")[:200],
        tags=parse_tags(get("tag", "")),
        meta=parse_meta(request.GET.getlist("meta")),
        sort=SortKey(choice_param(request, "sort", SORTS, SortKey.ACTIVITY.value)),
        descending=choice_param(request, "dir", ("asc", "desc"), "desc") == "desc",
        offset=offset_from(request),
        limit=limit_from(request),
    )


@require_GET
@gc_paused
def session_list(request: HttpRequest) -> HttpResponse:
    """List sessions with their figures; search, filter, sort and page them."""
    query = session_query(request)
    result = query_sessions(get_store(), get_traces(), query)
    page = by_offset(query.offset, query.limit, result.total)
    choices = result.choices or FilterChoices()
    return list_page(request, "sessions/list.html", "sessions-table", query, result, page,
                     model_choices=pairs(result.models), source_choices=SOURCE_CHOICES,
                     provider_choices=pairs(choices.providers), choices=choices,
                     saved=saved_views_context(request, SESSIONS))  # fmt: skip


def _session_info(session_id: str) -> SessionInfo:
    try:
        return get_store().session_info(session_id)
    except InvalidSession as exc:
        raise Http404(f"There is no session {session_id!r}: {exc}") from None


@require_GET
@gc_paused
def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    """Show a session's turns in order with their figures and a chart of input tokens."""
    info = _session_info(session_id)  # SessionNotFound becomes a 404 in the middleware
    traces = get_traces()
    stats = traces.session_stats([session_id])[0]
    context = _turns_context(request, session_id, traces) | {
        "info": info,
        "summary": summarize(info, stats),
        "paging": paging_from_totals(session_id, stats.paging, str(info.meta.get("model", ""))),
    }
    return render_page(request, "sessions/detail.html", "turns-table", context)


def _turns_context(request: HttpRequest, session_id: str, traces: TraceStore) -> dict[str, Any]:
    """Return what the turns table renders: one page of the timeline, and its live poll."""
    version = timeline_version(traces, session_id)  # read first: a turn written meanwhile shows
    timeline = session_timeline(
        traces, session_id, offset=offset_from(request), limit=limit_from(request)
    )
    query = request.GET.copy()
    query.pop("seen", None)
    page_url = reverse("session", args=[session_id]) + (f"?{query.urlencode()}" if query else "")
    query["seen"] = version
    live_url = f"{reverse('session-live', args=[session_id])}?{query.urlencode()}"
    return {"session_id": session_id, "timeline": timeline, "chart": stacked_bars(timeline),
            "strips": ((value_strip(timeline, "usd"), "Cost"),
                       (value_strip(timeline, "ms"), "Latency")),
            "pager": pager(request, timeline.pagination, "#turns-table"),
            "page_url": page_url, "live_url": live_url}  # fmt: skip


@require_GET
@gc_paused
def session_live(request: HttpRequest, session_id: str) -> HttpResponse:
    """Answer an open session page's poll: 204 while the timeline is unchanged (one read), else
    the turns table again, with the turns recorded since."""
    traces = get_traces()
    if request.GET.get("seen") == timeline_version(traces, session_id):
        return HttpResponse(status=204)
    page_query = request.GET.copy()
    page_query.pop("seen", None)
    request.GET = page_query  # the table's links are the page's own, without the poll's token
    context = _turns_context(request, session_id, traces)
    return render(request, "sessions/detail.html#turns-table", context)


@require_GET
def session_turn(request: HttpRequest, session_id: str, turn: int) -> HttpResponse:
    """Redirect a session's turn number to the permalink of its (original) record."""
    group = get_traces().turn_group(session_id, turn)
    if group is None:
        raise Http404(f"Session {session_id!r} has no turn {turn}.")
    return redirect("turn", call_id=group.head)


@dataclass(frozen=True)
class EntryRow:
    entry: Entry
    tokens: int


def _seq_page(session: str, start: int, limit: int, total: int) -> tuple[Pagination, list[Entry]]:
    """Read one page of entries from seq ``start`` plus what the pager needs (keyset, no scans)."""
    store = get_store()
    entries = store.entries(session, start, limit + 1)
    more, entries = len(entries) > limit, entries[:limit]
    before = store.entry_refs(session, start, limit, reverse=True) if start > 0 else []
    tail = store.entry_refs(session, 0, limit, reverse=True) if more else []
    page = by_seq(
        start, limit, total, (entries[0].seq, entries[-1].seq) if entries else None,
        prev=before[-1].seq if before else None,
        next=entries[-1].seq + 1 if more else None,
        last=tail[-1].seq if tail else None,
    )  # fmt: skip
    return page, entries


@require_GET
def session_blocks(request: HttpRequest, session_id: str) -> HttpResponse:
    """Show a session's entries in seq order, one page at a time, with token counts."""
    info = _session_info(session_id)
    page, entries = _seq_page(session_id, start_from(request), limit_from(request), info.count)
    tokenizer = web_config().TOKENIZER
    counts = get_store().token_counts([e.id for e in entries], tokenizer)
    rows = [EntryRow(e, n) for e, n in zip(entries, counts, strict=True)]
    summary = summarize(info, get_traces().session_stats([session_id])[0])
    context = {"info": info, "summary": summary, "pager": pager(request, page, "#entries-table"),
               "rows": rows, "tokenizer": tokenizer}  # fmt: skip
    return render_page(request, "sessions/blocks.html", "entries-table", context)


@require_GET
def session_export(request: HttpRequest, session_id: str) -> StreamingHttpResponse:
    """Stream a session as the `llm386 export` JSON Lines file (`llm386 import-session` reads it)."""
    _session_info(session_id)
    stream = open_export(get_store(), get_traces(), session_id)
    response = StreamingHttpResponse(stream.lines(), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{session_id}.llm386.jsonl"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
