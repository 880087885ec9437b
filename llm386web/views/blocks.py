"""Block page: content, kind, hash, edges in and out, and the sessions holding it."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET

from llm386web.conf import web_config
from llm386web.store_access import get_store, get_traces
from runtime.blocks import Block, Edge
from runtime.errors import InvalidBlock
from runtime.indexes.blockuses import UsesPage, block_uses
from runtime.inspect.pagination import by_offset

from .common import Pager, limit_from, offset_from, pager, render_page

# Bodies longer than this render cut, with a link to the whole text and the raw bytes.
PREVIEW_CHARS = 100_000
MAX_EDGES_SHOWN = 500


@dataclass(frozen=True)
class Holder:
    """A session holding the block at entry ``seq``."""

    session: str
    seq: int


@dataclass(frozen=True)
class Neighbour:
    edge: Edge
    block: Block


def _block(block_id: str) -> Block:
    try:
        return get_store().get(block_id)
    except InvalidBlock as exc:
        raise Http404(f"Block {block_id!r} not found: {exc}") from None


def _neighbours(edges: list[Edge], other_end: str) -> list[Neighbour]:
    shown = edges[:MAX_EDGES_SHOWN]
    ids = [getattr(edge, other_end) for edge in shown]
    return [Neighbour(e, b) for e, b in zip(shown, get_store().get_many(ids), strict=True)]


@require_GET
def block_detail(request: HttpRequest, block_id: str) -> HttpResponse:
    """Show one block; a unique id prefix redirects to the full-id permalink."""
    block = _block(block_id)
    if block.id != block_id:
        return redirect("block", block_id=block.id)
    store = get_store()
    edges_out, edges_in = store.edges_from(block.id), store.edges_to(block.id)
    holders = store.memberships(block.id)
    page = by_offset(offset_from(request), limit_from(request), len(holders))
    uses = block_uses(store, get_traces(), block.id, limit=web_config().PAGE_SIZE)
    full = request.GET.get("full") == "1"
    context = {
        "blk": block,
        "body": block.body if full else block.body[:PREVIEW_CHARS],
        "body_cut": not full and len(block.body) > PREVIEW_CHARS,
        "tokens": store.token_counts([block.id], web_config().TOKENIZER)[0],
        "tokenizer": web_config().TOKENIZER,
        "edges_out": _neighbours(edges_out, "dst"),
        "edges_in": _neighbours(edges_in, "src"),
        "edges_out_total": len(edges_out),
        "edges_in_total": len(edges_in),
        "max_edges": MAX_EDGES_SHOWN,
        "pager": pager(request, page, "#holders-table"),
        "holders": [Holder(s, seq) for s, seq in holders[page.cursor : page.cursor + page.limit]],
        "uses": uses,
        "uses_pager": _uses_pager(request, block.id, uses),
    }
    return render_page(request, "blocks/detail.html", "holders-table", context)


@require_GET
def block_turns(request: HttpRequest, block_id: str) -> HttpResponse:
    """One page of the turns that packed or omitted a block, with the reason each time."""
    block = _block(block_id)
    if block.id != block_id:
        return redirect("block-turns", block_id=block.id)
    uses = block_uses(get_store(), get_traces(), block.id, offset=offset_from(request),
                      limit=limit_from(request))  # fmt: skip
    context = {"blk": block, "uses": uses, "uses_pager": _uses_pager(request, block.id, uses)}
    return render_page(request, "blocks/turns.html", "uses-table", context)


def _uses_pager(request: HttpRequest, block_id: str, uses: UsesPage) -> Pager:
    """Page the uses at their own URL: the block page embeds their first window."""
    page = by_offset(uses.offset, uses.limit, uses.records, noun="records ")
    return pager(request, page, "#uses-table", url=reverse("block-turns", args=[block_id]))


@require_GET
def block_raw(request: HttpRequest, block_id: str) -> HttpResponse:
    """Return the block body's exact bytes as UTF-8 text."""
    block = _block(block_id)
    response = HttpResponse(block.body.encode("utf-8"), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{block.id}.txt"'
    return response
