"""Replay and re-page over real HTTP to the loopback Messages API, on real LMDB."""

from __future__ import annotations

import json

import pytest

from runtime.agent.core import Agent
from runtime.blocks import BlockKind
from runtime.errors import NotFound, ReplayMismatch
from runtime.inspect.textdiff import LineOp
from runtime.providers import OfflineModel
from runtime.providers.pricing import get_price, input_cost
from runtime.providers.usage import Usage
from runtime.replay.repage import repage
from runtime.replay.resend import (
    NotReplayable,
    derived_kind,
    diff_outputs,
    output_text,
    replay,
    replays_of,
)
from runtime.storage.tracechunks import pack_bytes
from runtime.tracing.records import Provider, TraceOrigin, TraceStatus, prompt_hash
from tests.fakes.anthropic_server import (
    RawReply,
    SlowReply,
    error_reply,
    text_reply,
)

KEY = "sk-ant-test-replay-0123456789"
SESSION = "replayed"


pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def api_key() -> str:
    return KEY


@pytest.fixture
def original(agent_turn):
    """A turn the sample agent made over HTTP: a tool call, then the final answer."""
    return agent_turn(SESSION)


def _frozen(traces, call_id):
    """Everything recorded about a record, to check it never changes."""
    record = traces.get(call_id)
    return (
        record.to_json(),
        traces.request_bytes(record.prompt_hash),
        traces.response_bytes(call_id),
    )


def test_replay_sends_exactly_the_stored_bytes_and_records_a_child(
    stores, original, model_server, make_adapter
):
    _, traces = stores
    before = _frozen(traces, original.call_id)
    stored = traces.request_bytes(original.prompt_hash)
    model_server.enqueue(text_reply("6 * 7 = 42 (replayed)", usage=(120, 11, 100, 0)))
    result = replay(traces, original.call_id[:16], make_adapter())
    received = model_server.requests[-1].body
    assert received == stored == model_server.requests[1].body  # the original call's bytes
    assert result.bytes_matched is True and result.sent_sha256 == original.prompt_hash
    new = result.record
    assert (new.session, new.turn, new.parent_call_id) == (SESSION, original.turn, original.call_id)
    assert new.origin is TraceOrigin.REPLAY and new.status is TraceStatus.OK
    assert new.prompt_hash == original.prompt_hash and new.replay_complete
    assert new.usage == Usage(120, 11, 100, 0) and result.usage == new.usage
    assert result.original_text == "6 * 7 is 42." and result.new_text == "6 * 7 = 42 (replayed)"
    assert [line.op for line in result.output_diff.lines] == [LineOp.REMOVED, LineOp.ADDED]
    assert result.output_diff.lines[0].spans  # the changed characters are marked
    assert result.input_cost_usd == pytest.approx((120 + 100 * 0.1) * 3.00 / 1e6)
    assert _frozen(traces, original.call_id) == before
    assert [r.call_id for r in replays_of(traces, original.call_id)] == [new.call_id]
    assert derived_kind(new) == "replay" and derived_kind(original) == "live"


def _tamper(traces, digest: str, data: bytes | None) -> None:
    # Under the trace store's back, straight into its table (either backend).
    key = bytes.fromhex(digest)
    if data is None:
        traces.kv.write(lambda t: t.delete("trace_requests", key))
    else:
        traces.kv.write(lambda t: t.put("trace_requests", key, pack_bytes(data)))


@pytest.mark.parametrize("damage", ["changed", "truncated", "deleted"])
def test_a_damaged_stored_request_is_refused_and_nothing_is_sent_or_recorded(
    damage, stores, original, model_server, make_adapter
):
    _, traces = stores
    stored = traces.request_bytes(original.prompt_hash)
    data = {"changed": stored.replace(b"6 * 7", b"6 * 8"), "truncated": stored[:-1],
            "deleted": None}[damage]  # fmt: skip
    _tamper(traces, original.prompt_hash, data)
    sent, recorded = model_server.request_count, traces.count(session=SESSION)
    with pytest.raises(ReplayMismatch) as refused:
        replay(traces, original.call_id, make_adapter())
    assert "nothing was sent" in str(refused.value).lower()
    assert "llm386 verify" in str(refused.value)
    assert model_server.request_count == sent
    assert traces.count(session=SESSION) == recorded
    if data is None:  # a missing request shows on every read; damaged bytes where they are read
        assert not traces.get(original.call_id).replay_complete
    else:
        assert "request-damaged" in {p.code for p in traces.verify().problems}


ERROR_PATHS = {
    "401": ([error_reply(401)], {}, "authentication_error", 401, "set ANTHROPIC_API_KEY", 1),
    "500": ([error_reply(500)] * 3, {"max_retries": 2}, "api_error", 500, "try again later", 3),
    "timeout": ([SlowReply(5.0)], {"timeout": 0.3, "max_retries": 0}, "timeout", None,
                "raise timeout_seconds or retry", 1),
    "malformed": ([RawReply(200, b"<html>bad gateway</html>")], {}, "malformed-response", 200,
                  "retry", 1),
    "missing key": ([], {"api_key": None}, "missing-key", None, "set ANTHROPIC_API_KEY", 0),
    "deeply nested": ([RawReply(200, b'{"type":"message","content":[' + b"[" * 100_000
                       + b"]" * 100_000 + b"]}")], {}, "malformed-response", 200,
                      "nested deeper than 64 levels", 1),
    "huge integer": ([RawReply(200, b'{"type":"message","content":[],"usage":{"input_tokens":'
                      + b"9" * 5000 + b"}}")], {}, "malformed-response", 200, "5,000 digits", 1),
    "infinite usage": ([RawReply(200, b'{"type":"message","content":[],"usage":'
                        b'{"input_tokens":1e999}}')], {}, "malformed-response", 200,
                       "too large for a number", 1),
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(ERROR_PATHS))
def test_each_failed_replay_is_recorded_with_advice_and_the_original_is_unchanged(
    path, stores, original, model_server, make_adapter
):
    replies, options, kind, status, advice, attempts = ERROR_PATHS[path]
    _, traces = stores
    before, stored = _frozen(traces, original.call_id), traces.request_bytes(original.prompt_hash)
    sent = model_server.request_count
    model_server.enqueue(*replies)
    result = replay(traces, original.call_id, make_adapter(**options))
    new = traces.get(result.record.call_id)
    assert new.status is TraceStatus.ERROR and new.parent_call_id == original.call_id
    assert (new.error.type, new.error.status) == (kind, status)
    assert advice in new.error.message and KEY not in new.error.message
    assert len(new.attempts) == attempts and new.response is None and new.usage is None
    assert new.prompt_hash == original.prompt_hash and new.replay_complete
    assert [r.body for r in model_server.requests[sent:]] == [stored] * attempts
    assert result.bytes_matched is (True if attempts else None)
    assert not result.ok and result.new_text == ""
    assert _frozen(traces, original.call_id) == before
    assert traces.count(session=SESSION, status="error") == 1


def test_a_rate_limit_then_success_records_both_attempts(
    stores, original, model_server, make_adapter
):
    _, traces = stores
    model_server.enqueue(error_reply(429, retry_after=0.01), text_reply("6 * 7 is 42."))
    result = replay(traces, original.call_id, make_adapter())
    attempts = result.record.attempts
    assert [(a.status, a.error_type) for a in attempts] == [(429, "rate_limit_error"), (200, None)]
    assert attempts[0].wait_ms == pytest.approx(10.0)
    assert result.ok and result.output_diff.identical and result.bytes_matched


def test_an_offline_turn_replays_to_the_identical_response(stores):
    store, traces = stores
    reply = Agent(store, traces, OfflineModel(), session=SESSION).say("What is 12 * 12?")
    result = replay(traces, reply.call_ids[0], OfflineModel())
    assert result.response_identical and result.output_diff.identical
    assert result.record.provider is Provider.OFFLINE and result.input_cost_usd is None
    assert result.new_text.endswith('[tool_use calculator] {"expression":"12*12"}')


def test_an_imported_openai_turn_is_refused_with_the_repage_to_run(
    stores, imported, model_server, make_adapter
):
    _, traces = stores
    with pytest.raises(NotReplayable) as refused:
        replay(traces, imported.call_id, make_adapter())
    assert f"llm386 repage {imported.call_id} --model claude-" in str(refused.value)
    assert f"llm386 replay {imported.call_id} --openai" in str(refused.value)
    assert model_server.request_count == 0


def test_every_record_the_agent_made_repages_to_the_recorded_hash(stores):
    store, traces = stores
    agent = Agent(store, traces, OfflineModel(), session=SESSION)
    for message in ("Hello there", "What is 3 * 14?", "Profile of user u-1003 please", "Bye"):
        agent.say(message)
    records = traces.list(session=SESSION, limit=None)
    assert len(records) == 6
    for record in records:
        result = repage(store, traces, record.call_id)
        assert result.hash_matches and result.packed.body == traces.request_bytes(
            record.prompt_hash
        )
        assert result.same_profile and result.first_divergent_byte is None


def test_a_repage_after_a_block_was_deleted_reports_where_the_request_differs(stores, original):
    store, traces = stores
    said = next(e for e in store.entries(SESSION) if e.kind is BlockKind.ASSISTANT_MESSAGE)
    store.delete_block(said.id)
    result = repage(store, traces, original.call_id)
    assert not result.hash_matches and result.first_divergent_byte is not None
    assert "deleted or changed since" in result.explanation


def test_a_repage_of_a_purged_session_says_what_is_missing(stores, original):
    store, traces = stores
    store.purge_session(SESSION)
    with pytest.raises(NotFound, match="no longer holds what that turn saw"):
        repage(store, traces, original.call_id)


def test_an_imported_turn_repages_for_claude_and_the_new_record_replays(
    stores, imported, model_server, make_adapter
):
    store, traces = stores
    same = repage(store, traces, imported.call_id)
    assert not same.hash_matches and "differ by design" in same.explanation
    moved = repage(store, traces, imported.call_id, profile="claude-sonnet-4-6", record=True)
    new = moved.record
    assert new is not None and derived_kind(new) == "repage" and new.replay_complete
    assert (new.parent_call_id, new.turn, new.provider) == (
        imported.call_id, imported.turn, Provider.ANTHROPIC,
    )  # fmt: skip
    assert json.loads(traces.request_bytes(new.prompt_hash))["model"] == "claude-sonnet-4-6"
    assert repage(store, traces, new.call_id).hash_matches  # re-paged records re-page too
    model_server.enqueue(text_reply("Your reservation is booked."))
    result = replay(traces, new.call_id, make_adapter())
    assert model_server.requests[-1].body == moved.packed.body and result.bytes_matched
    assert result.compared_with.call_id == imported.call_id
    assert result.original_text == output_text(imported)
    assert [r.call_id for r in replays_of(traces, imported.call_id)] == [new.call_id]
    assert [r.call_id for r in replays_of(traces, new.call_id)] == [result.record.call_id]


def test_output_diff_keeps_every_line_once():
    diff = diff_outputs("same\nold line\nend", "same\nnew line\nend\nextra")
    ops = [(line.op, line.text) for line in diff.lines]
    assert ops == [(LineOp.SAME, "same"), (LineOp.REMOVED, "old line"),
                   (LineOp.ADDED, "new line"), (LineOp.SAME, "end"), (LineOp.ADDED, "extra")]  # fmt: skip
    assert (diff.added, diff.removed, diff.identical) == (2, 1, False)
    assert diff_outputs("a", "a").identical


def test_input_cost_adds_cache_reads_and_writes_at_their_multipliers():
    price = get_price("claude-haiku-4-5")
    cost = input_cost(Usage(1_000_000, 5, 1_000_000, 1_000_000), price)
    assert cost == pytest.approx(1.00 + 0.10 + 1.25)
    assert input_cost(None, price) is None


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def cli(stores, run):
    """Run the CLI on the ``stores`` store (both live at tmp_path/store)."""
    return run


def test_cli_replay_prints_the_new_id_the_byte_check_and_the_response(
    cli, stores, original, model_server, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model_server.base_url)
    model_server.enqueue(text_reply("42, again."))
    code, out, _ = cli("replay", original.call_id)
    (child,) = replays_of(stores[1], original.call_id)
    assert code == 0 and f"as {child.call_id}" in out
    assert "sent bytes matched the recorded hash: yes" in out and "  42, again." in out
    model_server.enqueue(text_reply("42."))
    code, out, _ = cli("replay", original.call_id, "--json")
    data = json.loads(out)
    assert code == 0 and data["bytes_matched"] is True and data["new_text"] == "42."


def test_cli_replay_failure_exits_2_naming_the_recorded_trace(
    cli, stores, original, model_server, monkeypatch
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model_server.base_url)
    model_server.enqueue(error_reply(401))
    code, out, err = cli("replay", original.call_id)
    (child,) = replays_of(stores[1], original.call_id)
    assert code == 2 and f"recorded as trace {child.call_id}" in err
    assert "error authentication_error (HTTP 401)" in out and KEY not in out + err


def test_cli_repage_matches_then_records_for_another_model(cli, stores, original):
    code, out, _ = cli("repage", original.call_id)
    assert code == 0 and "prompt hash: matches the recorded one" in out
    code, out, _ = cli("repage", original.call_id, "--model", "claude-haiku-4-5", "--record",
                       "--json")  # fmt: skip
    data = json.loads(out)
    assert code == 0 and not data["hash_matches"] and data["profile"] == "claude-haiku-4-5"
    assert derived_kind(stores[1].get(data["recorded_call_id"])) == "repage"
    code, out, _ = cli("replay", data["recorded_call_id"], "--offline")
    assert code == 0 and "offline model llm386-offline" in out


def test_cli_repage_that_cannot_rebuild_the_request_exits_2(cli, stores, original):
    store, _ = stores
    said = next(e for e in store.entries(SESSION) if e.kind is BlockKind.ASSISTANT_MESSAGE)
    store.delete_block(said.id)
    code, out, err = cli("repage", original.call_id)
    assert code == 2 and "did not rebuild the recorded request" in err
    assert "prompt hash: differs" in out


def test_prompt_hash_of_the_sent_bytes_is_the_record_key(stores, original, model_server):
    _, traces = stores
    assert prompt_hash(model_server.requests[1].body) == original.prompt_hash
