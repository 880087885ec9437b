"""Turn page: one model call as the model saw it, with its parts loaded on demand.

The page itself is light whatever the turn's size: section figures, the call's figures and
links. A section's blocks, the omitted candidates, the request's messages and its pretty JSON
are separate URLs, each a page of its own without JavaScript and a fragment for htmx.
"""

from __future__ import annotations

import json
from dataclasses import replace

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from llm386web.clients import replay_targets
from llm386web.gantt import span_gantt
from llm386web.roles import operator_required
from llm386web.store_access import get_store, get_traces
from runtime.errors import InvalidInput, StoreCorrupted
from runtime.inspect.chat import read_request, read_response
from runtime.inspect.experiments import experiment_tree, parent_of
from runtime.inspect.pagination import by_offset
from runtime.inspect.paging import proxy_paging, turn_paging
from runtime.inspect.turn import (
    SECTION_NAMES,
    EntryPage,
    entry_page,
    turn_view,
    with_blocks,
    without_plan,
)
from runtime.otel.spans import turn_span_tree
from runtime.profiles.catalog import list_profiles
from runtime.profiles.lifecycle import ModelStatus, lifecycle_of
from runtime.providers import find_provider, get_provider, sending_providers
from runtime.proxy.originals import client_request
from runtime.replay.experimentlog import ExperimentLog
from runtime.replay.fidelity import replay_capability
from runtime.replay.variance import MAX_SAMPLES
from runtime.tracing.records import CALL_ID_LEN, TraceRecord, check_call_id

from .common import gc_paused, is_fragment, limit_from, offset_from, pager, render_page

MAX_NOTE_CHARS = 2000
# Models an imported (OpenAI-format) turn, or one whose model is retired, can be re-paged for, to
# be replayed. Current models only (tests/web check it against runtime.profiles.lifecycle).
REPAGE_PROFILES = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-6")


def repage_profiles(rec: TraceRecord) -> tuple[str, ...]:
    """Return the models a turn can be re-paged for here: for a turn of a provider whose format
    is not the packer's own (OpenAI), that provider's current models first (the re-page is then
    written in its format, keeping its settings), then REPAGE_PROFILES."""
    provider = find_provider(rec.provider)
    own: tuple[str, ...] = ()
    if provider is not None and not provider.takes_packed_requests:
        own = tuple(p.name for p in list_profiles() if p.provider == provider.name
                    and lifecycle_of(p.name).status is ModelStatus.CURRENT)  # fmt: skip
    return own + tuple(name for name in REPAGE_PROFILES if name not in own)


def _record(call_id: str) -> TraceRecord:
    return get_traces().get(call_id)  # TraceNotFound / bad id become 404 / 400 in the middleware


def _full_id_or_redirect(call_id: str, name: str, **kwargs: str) -> HttpResponse | None:
    """Redirect a unique prefix to the full-id permalink of the page ``name``."""
    if check_call_id(call_id) == call_id and len(call_id) == CALL_ID_LEN:
        return None
    return redirect(name, call_id=_record(call_id).call_id, **kwargs)


@require_GET
@gc_paused
def turn_detail(request: HttpRequest, call_id: str) -> HttpResponse:
    """Show one call: sections and their budgets, figures, hash, flag, errors, response."""
    moved = _full_id_or_redirect(call_id, "turn")
    if moved is not None:
        return moved
    return render_page(request, "turns/detail.html", "flag-form", turn_context(call_id))


def turn_context(call_id: str) -> dict[str, object]:
    """Return what the turn page renders (the replay views add their outcome to it)."""
    view = turn_view(get_traces(), call_id)
    return {"view": view, "rec": view.record, "s": view.summary,
            "response": read_response(view.record.response),
            "capability": replay_capability(view.record),
            "replay_targets": replay_targets(view.record.provider), "repage_profiles": repage_profiles(view.record),
            "paging": turn_paging(view.record.paging),
            "proxy_paging": proxy_paging(view.record.paging),
            "gantt": span_gantt(turn_span_tree(get_store().kv, view.record.config)),
            } | _model_status(view.record) | experiments_context(view.record)  # fmt: skip


def experiments_context(rec: TraceRecord) -> dict[str, object]:
    """Return the turn page's experiment tree, and the experiment that made this turn, if any."""
    log = ExperimentLog(get_traces())
    return {"experiments": experiment_tree(log, rec), "made_by": parent_of(log, rec),
            "experiment_providers": sending_providers(get_provider(rec.provider).request_format),
            "max_samples": MAX_SAMPLES}  # fmt: skip


def _model_status(rec: TraceRecord) -> dict[str, object]:
    """Return the turn's model lifecycle for the page: retired turns are re-paged, not replayed."""
    lifecycle = lifecycle_of(rec.model)
    return {"model_lifecycle": lifecycle,
            "model_retired": lifecycle.status is ModelStatus.RETIRED,
            "model_deprecated": lifecycle.status is ModelStatus.DEPRECATED}  # fmt: skip


def client_version(request: HttpRequest) -> bool:
    """Whether the request asks for the client's original bytes (``?version=client``) of a call
    the proxy paged, rather than the bytes the model saw."""
    version = request.GET.get("version", "")
    if version not in ("", "client"):
        raise InvalidInput(f"version {version!r} is not known; use version=client or leave it out")
    return version == "client"


def request_bytes_of(rec: TraceRecord, client: bool = False) -> bytes:
    """Return the stored request bytes of ``rec`` (or, with ``client``, the bytes its agent sent
    before the proxy paged them); raise StoreCorrupted / Http404 if they are missing."""
    if client:
        return _client_bytes(rec)
    raw = get_traces().request_bytes(rec.prompt_hash)
    if raw is None:
        raise StoreCorrupted(
            f"trace {rec.call_id} has no stored request bytes; run `llm386 verify`"
        )
    return raw


def _client_bytes(rec: TraceRecord) -> bytes:
    paged = proxy_paging(rec.paging)
    if paged is None or not paged.client_sha256:
        raise Http404(f"Turn {rec.turn} of {rec.session} was not paged by the proxy: the bytes "
                      "sent are the client's own; leave out ?version=client.")  # fmt: skip
    raw = client_request(get_store().kv, rec.call_id, paged.client_sha256)
    if raw is None:
        raise StoreCorrupted(
            f"trace {rec.call_id} names the client's request {paged.client_sha256[:12]}, "
            "which the store does not hold (or holds damaged); run `llm386 verify`"
        )
    return raw


@require_GET
@gc_paused
def turn_section(request: HttpRequest, call_id: str, section: str) -> HttpResponse:
    """One page of a section's packed blocks, with kind, tokens, reason and scores."""
    rec = _record(call_id)
    if section not in SECTION_NAMES:  # the name goes into an htmx selector: Section values only
        raise Http404(f"{section!r} is not a section; the turn page links the sections it has.")
    page = entry_page(rec.plan, selected=True, section=section, offset=offset_from(request),
                      limit=limit_from(request))  # fmt: skip
    if not page.total:
        raise Http404(
            f"Turn {rec.turn} of {rec.session} packed nothing into a {section!r} section."
        )
    context = _entries_context(request, rec, page, section)
    return render_page(request, "turns/entries.html", "entries-list", context)


@require_GET
@gc_paused
def turn_omitted(request: HttpRequest, call_id: str) -> HttpResponse:
    """One page of the candidates the pager left out, with the reason for each."""
    rec = _record(call_id)
    page = entry_page(rec.plan, selected=False, section=None, offset=offset_from(request),
                      limit=limit_from(request))  # fmt: skip
    context = _entries_context(request, rec, page, None)
    return render_page(request, "turns/entries.html", "entries-list", context)


def _entries_context(
    request: HttpRequest, rec: TraceRecord, page: EntryPage, section: str | None
) -> dict[str, object]:
    """Return what turns/entries.html renders: a window of a section's entries, or of the
    omitted ones (``section`` None), in the element the turn page loads it into."""
    target = "omitted" if section is None else f"section-{section}"
    pagination = by_offset(page.offset, page.limit, page.total)
    return {"rec": without_plan(rec), "section": section, "omitted": section is None,
            "rows": with_blocks(get_store(), page.entries), "target": target,
            "pager": pager(request, pagination, f"#{target}", url=request.path)}  # fmt: skip


@require_GET
@gc_paused
def turn_messages(request: HttpRequest, call_id: str) -> HttpResponse:
    """One page of the request read as chat: parameters, system, tools, then messages."""
    rec = _record(call_id)
    client = client_version(request)
    chat = read_request(request_bytes_of(rec, client))
    page = by_offset(
        offset_from(request), limit_from(request), len(chat.messages), noun="messages "
    )
    keep = {"version": "client"} if client else {}
    context = {
        "rec": without_plan(rec),
        "chat": replace(chat, messages=()),  # the page's messages only (see gc_paused)
        "page_messages": chat.messages[page.cursor : page.cursor + page.limit],
        "pager": pager(request, page, "#request-view", url=request.path, keep=keep),
        "client": client,
    }
    return render_page(request, "turns/messages.html", "messages-list", context)


@require_GET
@gc_paused
def turn_json(request: HttpRequest, call_id: str) -> HttpResponse:
    """The request pretty-printed as JSON (keys in stored order), or as text if not JSON."""
    rec = _record(call_id)
    client = client_version(request)
    raw = request_bytes_of(rec, client)
    note = ""
    try:
        pretty = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError is a ValueError
        pretty = raw.decode("utf-8", "replace")
    except RecursionError:  # stored bytes are untrusted: deep nesting must not be a 500
        pretty, note = (
            raw.decode("utf-8", "replace"),
            "The JSON is nested too deeply to pretty-print; here it is as text.",
        )
    context = {"rec": without_plan(rec), "pretty": pretty, "size": len(raw), "note": note,
               "client": client}  # fmt: skip
    return render_page(request, "turns/json.html", "request-json", context)


def _raw(data: bytes, filename: str, download: bool) -> HttpResponse:
    response = HttpResponse(data, content_type="text/plain; charset=utf-8")
    disposition = "attachment" if download else "inline"
    response["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    return response


@require_GET
def turn_request_raw(request: HttpRequest, call_id: str) -> HttpResponse:
    """The exact request bytes that were sent (their SHA-256 is the prompt hash), or with
    ``?version=client`` the agent's own bytes of a call the proxy paged."""
    rec = _record(call_id)
    client = client_version(request)
    name = f"{rec.call_id}-{'client-' if client else ''}request.json"
    return _raw(request_bytes_of(rec, client), name, "download" in request.GET)


@require_GET
def turn_response_raw(request: HttpRequest, call_id: str) -> HttpResponse:
    """The exact response bytes that came back."""
    rec = _record(call_id)
    body = get_traces().response_bytes(rec.call_id)
    if body is None:
        raise Http404(f"Turn {rec.turn} of {rec.session} got no response body.")
    return _raw(body, f"{rec.call_id}-response.json", "download" in request.GET)


@require_POST
@operator_required
@gc_paused
def turn_flag(request: HttpRequest, call_id: str) -> HttpResponse:
    """Flag the turn as failing with a note (or clear the flag); answer with the flag form."""
    rec = _record(call_id)
    note = request.POST.get("note", "").strip()
    action = request.POST.get("action", "flag")
    error = ""
    if action not in ("flag", "unflag"):
        error = f"Unknown action {action!r}: use flag or unflag."
    elif len(note) > MAX_NOTE_CHARS:
        error = f"The note is {len(note)} characters; keep it under {MAX_NOTE_CHARS}."
    elif action == "flag":
        rec = get_traces().flag(rec.call_id, note)
    else:
        rec = get_traces().unflag(rec.call_id)
    context = turn_context(rec.call_id) | {"error": error, "note": note if error else ""}
    if error:
        return render_page(request, "turns/detail.html", "flag-form", context, status=422)
    if not is_fragment(request):
        return redirect("turn", call_id=rec.call_id)
    return render_page(request, "turns/detail.html", "flag-form", context)
