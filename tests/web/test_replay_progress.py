"""A web replay to a silent server is bounded, shows its progress, and can be cancelled."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from llm386web import replayjobs
from tests.fakes.anthropic_server import AnthropicServer, SlowReply

from .tracefactory import conversation

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
STALL = SlowReply(60)  # longer than any test waits: the server stays silent


@pytest.fixture
def api(settings: Any, web_home: Path, model_server: AnthropicServer, monkeypatch: Any) -> Any:
    settings.LLM386 = {**settings.LLM386, "ANTHROPIC_BASE_URL": model_server.base_url,
                       "ANTHROPIC_TIMEOUT_S": 30.0, "REPLAY_SHOW_PROGRESS_AFTER_S": 0.0}  # fmt: skip
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-not-a-real-key")
    return model_server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _replays(traces: Any, call_id: str) -> list[Any]:
    return [r for r in traces.list(session="run", limit=None) if r.parent_call_id == call_id]


def _job_id(html: str) -> str:
    found = re.search(r'data-job="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _release(api: AnthropicServer, job_id: str) -> replayjobs.ReplayJob:
    """Stop the stalled server so the abandoned HTTP call returns, and wait for its record."""
    job = replayjobs.get(job_id)
    assert job is not None
    api.stop()
    assert job.done.wait(60), "the replay worker never finished"
    return job


def _start_stalled_replay(
    logged_in: Client, traced: Any, api: AnthropicServer
) -> tuple[str, str, str]:
    """Start, over htmx, a replay of a one-turn session the model never answers; return the
    replayed call id, the job id and the waiting fragment."""
    s = traced("run", conversation(1))
    api.enqueue(STALL, STALL, STALL)
    response = logged_in.post(
        f"/traces/{s.call_ids[0]}/replay", {"target": "anthropic"}, headers=HX
    )
    assert response.status_code == 200
    page = response.content.decode()
    return s.call_ids[0], _job_id(page), page


def test_a_stalled_replay_shows_progress_and_a_cancel_button(
    logged_in: Client, traced: Any, traces: Any, api: AnthropicServer
) -> None:
    _, job_id, page = _start_stalled_replay(logged_in, traced, api)
    assert page.lstrip().startswith('<section id="replay"')
    assert "Waiting for the model…" in page and "gives up after 60 s" in page
    assert f'hx-get="/replays/{job_id}/"' in page and 'hx-trigger="every 1s"' in page
    assert f'hx-post="/replays/{job_id}/cancel"' in page and ">Cancel</button>" in page
    polled = logged_in.get(f"/replays/{job_id}/", headers=HX).content.decode()
    assert "Waiting for the model…" in polled and _job_id(polled) == job_id
    _release(api, job_id)


def test_cancel_ends_the_wait_and_the_call_is_recorded_as_cancelled(
    logged_in: Client, traced: Any, traces: Any, api: AnthropicServer
) -> None:
    call_id, job_id = _start_stalled_replay(logged_in, traced, api)[:2]
    cancelled = logged_in.post(f"/replays/{job_id}/cancel", headers=HX)
    html = cancelled.content.decode()
    assert cancelled.status_code == 200
    assert "The replay was cancelled from the web page." in html
    assert "replay-waiting" not in html
    job = _release(api, job_id)
    assert job.result is not None and job.result.errored
    [record] = _replays(traces, call_id)
    assert record.error is not None and record.error.type == "cancelled"
    assert "cancelled from the web page" in record.error.message
    done = logged_in.get(f"/replays/{job_id}/", headers=HX).content.decode()
    assert "replay-waiting" not in done and record.call_id in done


def test_a_replay_past_its_timeout_is_given_up(
    logged_in: Client, traced: Any, traces: Any, api: AnthropicServer, monkeypatch: Any
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(replayjobs, "clock", clock)
    call_id, job_id = _start_stalled_replay(logged_in, traced, api)[:2]
    clock.now += 61
    html = logged_in.get(f"/replays/{job_id}/", headers=HX).content.decode()
    assert "gave up waiting for the model after 60 s" in html
    assert "replay-waiting" not in html
    _release(api, job_id)
    [record] = _replays(traces, call_id)
    assert record.error is not None and record.error.type == "cancelled"


def test_the_replay_timeout_bounds_every_attempt_and_retry_together(
    logged_in: Client, traced: Any, traces: Any, api: AnthropicServer, settings: Any
) -> None:
    # Three silent replies: without the total bound, each attempt would wait its own 30 s.
    settings.LLM386 = {**settings.LLM386, "REPLAY_TIMEOUT_S": 0.5}
    s = traced("run", conversation(1))
    api.enqueue(STALL, STALL, STALL)
    response = logged_in.post(f"/traces/{s.call_ids[0]}/replay", {"target": "anthropic"})
    assert response.status_code == 200  # without htmx the page waits for the outcome
    [record] = _replays(traces, s.call_ids[0])
    assert record.error is not None and record.error.type == "timeout"
    assert len(record.attempts) == 1
    assert api.request_count == 1


def test_an_unknown_replay_job_is_a_404(logged_in: Client) -> None:
    response = logged_in.get("/replays/no-such-job/")
    assert response.status_code == 404
    assert b"There is no replay no-such-job" in response.content
