"""Replay and re-page a turn from its page (POST with CSRF), answering with the replay section.

Replay re-sends the turn's stored request bytes unchanged (runtime.replay) to the Anthropic API
or the offline model; the result shows whether the bytes sent hash to the recorded prompt
hash, the new output beside the original, and the replay history. A model error is recorded
by the runtime and shown here; a refusal (an OpenAI-format import, damaged bytes, a retired
model) is shown with what to do instead, and a deprecated model's warning beside the result. Re-page rebuilds an imported turn as an Anthropic request, recorded
but not sent, so it can then be replayed.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from llm386web.clients import Target, anthropic_available, model_client
from llm386web.conf import runtime_config
from llm386web.store_access import get_store, get_traces
from runtime.errors import Llm386Error, ModelRetired, ReplayMismatch
from runtime.repage import repage
from runtime.replay import NotReplayable, replay
from runtime.replayview import replay_view

from .common import gc_paused, render_page
from .turns import REPAGE_PROFILES, turn_context


def _target(request: HttpRequest) -> tuple[Target | None, str]:
    raw = request.POST.get("target", "")
    if raw not in tuple(Target):
        return None, f"Choose where to send the request: {', '.join(Target)} (got {raw!r})."
    target = Target(raw)
    if target is Target.ANTHROPIC and not anthropic_available():
        return None, (
            "No Anthropic API key is set on the server (ANTHROPIC_API_KEY), so the request "
            "cannot go to the API. Replay it with the offline model, or restart the server "
            "with the key in its environment."
        )
    return target, ""


@require_POST
@gc_paused
def turn_replay(request: HttpRequest, call_id: str) -> HttpResponse:
    """Replay the turn, then show the outcome in the replay section (422 when refused)."""
    rec = get_traces().get(call_id)
    target, problem = _target(request)
    result, warnings = None, ()
    if target is not None:
        client = model_client(target)
        try:
            replayed = replay(get_traces(), rec.call_id, client)
        except (NotReplayable, ReplayMismatch, ModelRetired) as exc:
            problem = str(exc)
        else:
            result, warnings = replay_view(replayed), replayed.warnings
        finally:
            client.close()
    context = turn_context(rec.call_id) | {
        "replayed": result,
        "replay_problem": problem,
        "replay_warnings": warnings,
    }
    return render_page(
        request, "turns/detail.html", "replay", context, status=422 if problem else 200
    )


@require_POST
def turn_repage(request: HttpRequest, call_id: str) -> HttpResponse:
    """Re-page the turn for an Anthropic model and record it (not sent); go to the new turn."""
    rec = get_traces().get(call_id)
    profile = request.POST.get("profile", "")
    if profile not in REPAGE_PROFILES:
        problem = f"Pick a model to re-page for: {', '.join(REPAGE_PROFILES)} (got {profile!r})."
    else:
        try:
            result = repage(get_store(), get_traces(), rec.call_id, profile=profile,
                            config=runtime_config(), record=True)  # fmt: skip
        except Llm386Error as exc:
            problem = str(exc)
        else:
            assert result.record is not None
            for warning in result.warnings:
                messages.warning(request, warning)
            messages.success(
                request, f"Re-paged for {profile}, recorded, not sent. {result.explanation}"
            )
            return redirect("turn", call_id=result.record.call_id)
    context = turn_context(rec.call_id) | {"replay_problem": problem}
    return render_page(request, "turns/detail.html", "replay", context, status=422)
