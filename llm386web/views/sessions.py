"""Sessions list and session page: one window of rows per request, never the whole index."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from llm386web.conf import web_config
from llm386web.store_access import get_store
from runtime.blocks import Entry, SessionInfo
from runtime.errors import InvalidSession

from .common import SeqPage, limit_from, page_from, render_page, start_from


@dataclass(frozen=True)
class SessionRow:
    """A session summary with the meta fields the list shows pulled out."""

    info: SessionInfo
    model: str
    turns: object
    reward: object
    failing: bool

    @classmethod
    def of(cls, info: SessionInfo) -> SessionRow:
        meta = info.meta
        reward = meta.get("reward")
        # An imported run that scored 0 failed its task even if nobody flagged it.
        failing = meta.get("failing") is True or (
            isinstance(reward, int | float) and not isinstance(reward, bool) and reward == 0
        )
        return cls(info, str(meta.get("model") or ""), meta.get("turns"), reward, failing)


@dataclass(frozen=True)
class EntryRow:
    entry: Entry
    tokens: int


@require_GET
def session_list(request: HttpRequest) -> HttpResponse:
    """List sessions in id order, one page at a time."""
    store = get_store()
    page = page_from(request, store.session_count())
    rows = [SessionRow.of(info) for info in store.sessions(page.offset, page.limit)]
    context = {"page": page, "rows": rows}
    return render_page(request, "sessions/list.html", "sessions-table", context)


def _session_info(session_id: str) -> SessionInfo:
    try:
        return get_store().session_info(session_id)
    except InvalidSession as exc:
        raise Http404(f"There is no session {session_id!r}: {exc}") from None


def _seq_page(session: str, start: int, limit: int, total: int) -> tuple[SeqPage, list[Entry]]:
    """Read one page of entries from seq ``start`` plus what the pager needs (keyset, no scans)."""
    store = get_store()
    entries = store.entries(session, start, limit + 1)
    more, entries = len(entries) > limit, entries[:limit]
    before = store.entry_refs(session, start, limit, reverse=True) if start > 0 else []
    tail = store.entry_refs(session, 0, limit, reverse=True) if more else []
    page = SeqPage(
        start=start,
        limit=limit,
        total=total,
        shown=(entries[0].seq, entries[-1].seq) if entries else None,
        prev_value=before[-1].seq if before else None,
        next_value=entries[-1].seq + 1 if more else None,
        last_value=tail[-1].seq if tail else None,
    )
    return page, entries


@require_GET
def session_detail(request: HttpRequest, session_id: str) -> HttpResponse:
    """Show a session's entries in seq order, one page at a time, with token counts."""
    info = _session_info(session_id)  # SessionNotFound becomes a 404 in the middleware
    page, entries = _seq_page(session_id, start_from(request), limit_from(request), info.count)
    tokenizer = web_config().TOKENIZER
    counts = get_store().token_counts([e.id for e in entries], tokenizer)
    rows = [EntryRow(e, n) for e, n in zip(entries, counts, strict=True)]
    context = {"session": SessionRow.of(info), "page": page, "rows": rows, "tokenizer": tokenizer}
    return render_page(request, "sessions/detail.html", "entries-table", context)
