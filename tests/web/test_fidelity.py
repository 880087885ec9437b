"""The fidelity badge and replay come from one function: no badge promises a refused replay."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from runtime.blocks import canonical_json
from runtime.errors import ModelRetired, ReplayMismatch
from runtime.providers import OfflineModel
from runtime.replay.fidelity import Fidelity, replay_capability
from runtime.replay.resend import NotReplayable, replay
from runtime.tracing.records import Provider, TraceOrigin, TraceRecord, new_call_id, prompt_hash

pytestmark = pytest.mark.django_db

ANTHROPIC_REQUEST = canonical_json({"max_tokens": 64, "model": "claude-haiku-4-5",
                                    "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
OPENAI_REQUEST = canonical_json(
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
)
RETIRED_REQUEST = canonical_json({"max_tokens": 64, "model": "claude-sonnet-4-5",
                                  "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
# (provider, model, origin, request) a store can hold: live calls (one to a retired model),
# offline calls and imports.
KINDS = [
    (Provider.ANTHROPIC, "claude-haiku-4-5", TraceOrigin.LIVE, ANTHROPIC_REQUEST),
    (Provider.ANTHROPIC, "claude-sonnet-4-5", TraceOrigin.LIVE, RETIRED_REQUEST),
    (Provider.OFFLINE, "llm386-offline", TraceOrigin.LIVE, ANTHROPIC_REQUEST),
    (Provider.OPENAI, "gpt-4o", TraceOrigin.IMPORT, OPENAI_REQUEST),
]
EXPECTED = {  # (model, bytes intact) -> fidelity
    ("claude-haiku-4-5", True): Fidelity.REPLAY_COMPLETE,
    ("claude-sonnet-4-5", True): Fidelity.MODEL_RETIRED,
    ("llm386-offline", True): Fidelity.REPLAY_COMPLETE,
    ("gpt-4o", True): Fidelity.REBUILT,
    ("claude-haiku-4-5", False): Fidelity.NOT_REPLAYABLE,
    ("claude-sonnet-4-5", False): Fidelity.NOT_REPLAYABLE,
    ("llm386-offline", False): Fidelity.NOT_REPLAYABLE,
    ("gpt-4o", False): Fidelity.NOT_REPLAYABLE,
}


def _put(
    traces: Any, provider: Provider, model: str, origin: TraceOrigin, request: bytes, intact: bool
) -> str:
    call_id = new_call_id()
    record = TraceRecord(
        call_id=call_id, session=f"s-{provider.value}-{intact}", turn=1,
        started_at=int(call_id[:13]), provider=provider, origin=origin, model=model,
        prompt_hash=prompt_hash(request), request_size=len(request),
    )  # fmt: skip
    traces.record(record, request)
    if not intact:  # the stored request is gone (damaged bytes are verify's to find)
        key = bytes.fromhex(record.prompt_hash)
        traces.kv.write(lambda t: t.delete("trace_requests", key))
    return call_id


@pytest.mark.parametrize("intact", [True, False])
@pytest.mark.parametrize(("provider", "model", "origin", "request_bytes"), KINDS)
def test_badge_and_replay_agree_for_every_provider_and_state(
    logged_in: Client, traces: Any, provider: Provider, model: str, origin: TraceOrigin,
    request_bytes: bytes, intact: bool,
) -> None:  # fmt: skip
    call_id = _put(traces, provider, model, origin, request_bytes, intact)
    capability = replay_capability(traces.get(call_id))
    assert capability.fidelity is EXPECTED[(model, intact)]
    page = html.unescape(logged_in.get(f"/traces/{call_id}/").content.decode())
    assert (
        f'data-fidelity="{capability.fidelity.value}" title="{capability.title}">{capability.label}<'
        in page
    )
    assert ("replay-complete" in page) == capability.can_replay  # no other promise on the page
    assert ("Replay with the offline model" in page) == (not capability.can_repage)
    assert ("Re-page and record" in page) == capability.can_repage
    try:
        replay(traces, call_id, OfflineModel())
    except (NotReplayable, ReplayMismatch, ModelRetired):
        replayed = False
    else:
        replayed = True
    assert replayed == capability.can_replay


def test_a_rebuilt_import_says_what_replay_can_and_cannot_do(
    logged_in: Client, traces: Any
) -> None:
    call_id = _put(traces, Provider.OPENAI, "gpt-4o", TraceOrigin.IMPORT, OPENAI_REQUEST, True)
    page = logged_in.get(f"/traces/{call_id}/").content.decode()
    assert ">rebuilt<" in page and ">replay-complete<" not in page
    assert "replay cannot send it" in page and "Re-page it for an Anthropic model" in page
