"""A captured turn is badged "captured" and replays its captured bytes with the hash checked."""

from __future__ import annotations

from runtime.providers.anthropic.adapter import AnthropicAdapter
from runtime.replay.fidelity import Fidelity, replay_capability
from runtime.replay.resend import replay
from tests.proxy.conftest import API_KEY, Stack


def test_a_captured_anthropic_turn_replays_byte_for_byte(stack: Stack) -> None:
    stack.anthropic(max_retries=0).messages.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    [record] = stack.records()
    capability = replay_capability(record)
    assert capability.fidelity is Fidelity.CAPTURED and capability.can_replay
    assert "exactly what the agent sent" in capability.title
    adapter = AnthropicAdapter(api_key=API_KEY, base_url=stack.anthropic_up.base_url, max_retries=0)
    result = replay(stack.traces, record.call_id, adapter)
    adapter.close()
    assert result.bytes_matched is True and result.ok
    captured, replayed = stack.anthropic_up.requests
    assert replayed.body == captured.body == stack.sent.bodies[0]


def test_a_captured_openai_turn_is_captured_but_offers_a_repage(stack: Stack) -> None:
    stack.openai(max_retries=0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    [record] = stack.records()
    capability = replay_capability(record)
    assert capability.fidelity is Fidelity.CAPTURED
    assert not capability.can_replay and capability.can_repage
    assert "cannot send OpenAI requests yet" in capability.title
