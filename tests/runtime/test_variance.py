"""Variance: the same bytes N times to a loopback API that answers differently from call to call."""

from __future__ import annotations

import io

import pytest

from runtime.agent.core import Agent
from runtime.errors import InvalidInput, ReplayMismatch
from runtime.progress import Progress
from runtime.providers import OfflineModel
from runtime.replay.experimentlog import ExperimentLog
from runtime.replay.variance import (
    MAX_SAMPLES,
    Output,
    check_samples,
    cluster_outputs,
    estimate_samples,
    sample,
    similarity,
)
from tests.fakes.anthropic_server import error_reply, text_reply, tool_use_reply

pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def failing(stores, model_server, make_adapter):
    """A recorded turn that refused to answer, flagged as failing."""
    store, traces = stores
    model_server.enqueue(text_reply("Sorry, I cannot do arithmetic.", usage=(1000, 6, 0, 0)))
    reply = Agent(store, traces, make_adapter(), session="flaky").say("What is 6 * 7?")
    return traces.flag(reply.call_ids[-1], "wrong product")


def test_samples_are_grouped_exact_then_by_tool_call_then_by_text(
    stores, failing, model_server, make_adapter
):
    store, traces = stores
    model_server.vary(
        tool_use_reply("toolu_a", "calculator", {"expression": "6*7"}, text="Let me check."),
        tool_use_reply("toolu_b", "calculator", {"expression": "6*7"}, text="Computing."),
        text_reply("The answer is 42."),
        text_reply("The answer is 42!"),
        text_reply("Sorry, I cannot do arithmetic."),
    )
    lines = io.StringIO()
    progress = Progress("sampling", 10, stream=lines, mode="lines")
    result = sample(store, traces, failing.call_id, make_adapter(), 10, who="ana",
                    concurrency=3, progress=progress)  # fmt: skip
    assert model_server.request_count == 11 and len(result.records) == 10
    assert {r.body for r in model_server.requests[1:]} == {model_server.requests[0].body}
    sizes = [(c.size, c.how) for c in result.clusters]
    assert sizes == [(4, "tool call"), (4, "text"), (2, "exact")]
    assert result.clusters[2].text == "Sorry, I cannot do arithmetic."
    assert result.original_cluster == 2 and result.verdict == "flaky"
    assert result.explanation() == "2 of 10 samples did what the turn did (the failing behaviour)"
    assert "10" in lines.getvalue()
    rows = ExperimentLog(traces).children(failing.call_id)
    assert len(rows) == 10 and {r.group for r in rows} == {result.records[0].call_id}
    assert all(r.kind == "none" for r in rows)


def test_a_behaviour_most_samples_repeat_is_not_flaky(stores, failing, model_server, make_adapter):
    store, traces = stores
    model_server.vary(text_reply("Sorry, I cannot do arithmetic."),
                      text_reply("Sorry, I can not do arithmetic."), text_reply("It is 42."))  # fmt: skip
    result = sample(store, traces, failing.call_id, make_adapter(), 6, who="ana")
    assert result.verdict == "reproduces" and result.clusters[0].size == 4


def test_model_errors_in_a_batch_are_recorded_and_grouped_as_their_own_behaviour(
    stores, failing, model_server, make_adapter
):
    store, traces = stores
    before = traces.count(session="flaky")
    model_server.vary(text_reply("ok"), error_reply(400, "bad request"))
    result = sample(store, traces, failing.call_id, make_adapter(max_retries=0), 4, who="ana")
    assert traces.count(session="flaky") == before + 4
    assert sorted((c.text, c.size) for c in result.clusters) == [
        ("[error invalid_request_error]", 2),
        ("ok", 2),
    ]


class RefusingAfter:
    """A client that refuses the bytes (ReplayMismatch, as a client does for damaged bytes)
    from its ``n``-th call on, so a batch stops half-way."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n, self.calls = inner, n, 0
        self.provider = inner.provider

    def send(self, request_bytes, *, expected_sha256):
        self.calls += 1
        if self.calls >= self.n:
            raise ReplayMismatch("refused: the bytes changed on the way")
        return self.inner.send(request_bytes, expected_sha256=expected_sha256)

    def close(self) -> None:
        self.inner.close()


def test_a_batch_that_stops_half_way_records_nothing(stores, failing, model_server, make_adapter):
    store, traces = stores
    before = traces.count(session="flaky")
    with pytest.raises(ReplayMismatch):
        sample(store, traces, failing.call_id, RefusingAfter(make_adapter(), 3), 5, who="ana",
               concurrency=1)  # fmt: skip
    assert model_server.request_count == 3  # two samples were answered...
    assert traces.count(session="flaky") == before  # ...and neither was recorded
    assert ExperimentLog(traces).children(failing.call_id) == []


def test_grouping_is_deterministic_and_by_text_distance():
    outs = [Output("c1", "Paris is the capital.", ()), Output("c2", "Paris is the capital!", ()),
            Output("c3", "I do not know.", ())]  # fmt: skip
    assert cluster_outputs(outs) == cluster_outputs(list(reversed(outs)))
    assert [c.size for c in cluster_outputs(outs)] == [2, 1]
    assert similarity("abc", "abc") == 1.0 and similarity("abc", "xyz") == 0.0


def test_the_number_of_samples_is_bounded_and_the_estimate_is_priced(stores, failing, make_adapter):
    with pytest.raises(InvalidInput, match=f"1 to {MAX_SAMPLES}"):
        check_samples(MAX_SAMPLES + 1)
    estimate = estimate_samples(failing, make_adapter(), 10)
    assert estimate.input_tokens_each == 1000
    assert estimate.output_tokens_each == 6  # the recorded answer's reported length
    assert estimate.cost_usd == pytest.approx(10 * (1000 * 3.00 + 6 * 15.00) / 1e6)
    assert "10 sends of 1,000 input tokens each (answers of about 6 tokens" in estimate.text()
    assert estimate_samples(failing, OfflineModel(), 3).cost_usd is None
