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
# offline calls, imports and captures by the proxy.
KINDS = [
    (Provider.ANTHROPIC, "claude-haiku-4-5", TraceOrigin.LIVE, ANTHROPIC_REQUEST),
    (Provider.ANTHROPIC, "claude-sonnet-4-5", TraceOrigin.LIVE, RETIRED_REQUEST),
    (Provider.OFFLINE, "llm386-offline", TraceOrigin.LIVE, ANTHROPIC_REQUEST),
    (Provider.OPENAI, "gpt-4o", TraceOrigin.IMPORT, OPENAI_REQUEST),
    (Provider.ANTHROPIC, "claude-haiku-4-5", TraceOrigin.CAPTURE, ANTHROPIC_REQUEST),
    (Provider.OPENAI, "gpt-4o", TraceOrigin.CAPTURE, OPENAI_REQUEST),
]
EXPECTED = {  # (model, origin) -> fidelity of intact bytes (damaged ones are not replayable)
    ("claude-haiku-4-5", TraceOrigin.LIVE): Fidelity.REPLAY_COMPLETE,
    ("claude-sonnet-4-5", TraceOrigin.LIVE): Fidelity.MODEL_RETIRED,
    ("llm386-offline", TraceOrigin.LIVE): Fidelity.REPLAY_COMPLETE,
    ("gpt-4o", TraceOrigin.IMPORT): Fidelity.REBUILT,
    ("claude-haiku-4-5", TraceOrigin.CAPTURE): Fidelity.CAPTURED,
    ("gpt-4o", TraceOrigin.CAPTURE): Fidelity.CAPTURED,
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
    assert capability.fidelity is (EXPECTED[(model, origin)] if intact else Fidelity.NOT_REPLAYABLE)
    page = html.unescape(logged_in.get(f"/traces/{call_id}/").content.decode())
    assert (
        f'data-fidelity="{capability.fidelity.value}" title="{capability.title}">{capability.label}<'
        in page
    )
    assert f"{capability.promise}." in page  # what replay promises, said beside the form
    assert ("Replay with " in page) == capability.can_replay
    assert ("Re-page and record" in page) == capability.can_repage
    # Only clients of the record's request format are offered.
    messages_format = provider is not Provider.OPENAI
    assert ("Replay with the offline model" in page) == (capability.can_replay and messages_format)
    assert ("Replay with the OpenAI API" in page) == (capability.can_replay and not messages_format)
    try:
        replay(traces, call_id, OfflineModel())
    except (NotReplayable, ReplayMismatch, ModelRetired):
        replayed = False
    else:
        replayed = True
    assert replayed == (capability.can_replay and messages_format)


def test_a_rebuilt_import_says_what_replay_can_and_cannot_do(
    logged_in: Client, traces: Any
) -> None:
    call_id = _put(traces, Provider.OPENAI, "gpt-4o", TraceOrigin.IMPORT, OPENAI_REQUEST, True)
    page = logged_in.get(f"/traces/{call_id}/").content.decode()
    assert ">rebuilt<" in page and ">replay-complete<" not in page
    assert "not the bytes the agent sent" in page
    assert "Re-page it to rebuild it from the session&#x27;s blocks" in page
    assert "not proven to be what the agent sent" in page  # the promise beside the form
    assert "Replay with the OpenAI API" in page and "Re-page and record" in page


def test_an_openai_record_is_never_replayed_to_a_messages_client(traces: Any) -> None:
    call_id = _put(traces, Provider.OPENAI, "gpt-4o", TraceOrigin.CAPTURE, OPENAI_REQUEST, True)
    with pytest.raises(NotReplayable, match="--openai"):
        replay(traces, call_id, OfflineModel())
    assert len(traces.list(limit=None)) == 1  # nothing was sent or recorded
