"""The demo data shows every feature: a turn with omitted blocks and their reasons, a failing turn
in the middle of a session listed in triage, a replay and an experiment in the audit list,
proxy-captured turns, and loading it twice adds nothing.

The loaders run for real on the app's store (agent, pager, capture proxy, replay, experiment,
all against the offline model); the tau-bench import is left out here (it is tested by
test_demo_command.py), so each test loads in about a second.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from llm386web import store_access
from llm386web.management.commands.llm386_demo import DEMO_LOADERS, load_demo_data, load_tau_bench
from llm386web.models import Action
from runtime import BlockStore
from runtime.demo.budget import BUDGET_CONVERSATIONS
from runtime.demo.captured import CAPTURED
from runtime.demo.derived import demo_experiments, demo_replays
from runtime.tracing.records import TraceOrigin, TraceRecord, TraceStatus, TraceStore

pytestmark = pytest.mark.django_db

LOADERS = [loader for loader in DEMO_LOADERS if loader is not load_tau_bench]
BUDGET_SESSION = BUDGET_CONVERSATIONS[0][0]


@pytest.fixture
def demo(store: BlockStore, user: Any) -> list[str]:
    """Load the demo (all but tau-bench) into the app's store; return the progress lines."""
    lines: list[str] = []
    load_demo_data(store, out=lines.append, loaders=LOADERS)
    return lines


def _records(traces: TraceStore, session: str) -> list[TraceRecord]:
    return [traces.get(cid) for _, cid in sorted(traces.turns(session))]


def test_the_budget_session_omits_blocks_and_the_turn_page_says_why(
    logged_in: Client, demo: list[str], traces: TraceStore
) -> None:
    live = [r for r in _records(traces, BUDGET_SESSION) if r.origin is TraceOrigin.LIVE]
    omitting = [r for r in live if r.plan.get("omitted")]
    assert omitting and len(omitting) < len(live)  # early turns fit, later ones do not
    rec = omitting[-1]
    reasons = {o["reason"] for o in rec.plan["omitted"]}
    page = logged_in.get(f"/traces/{rec.call_id}/").content.decode()
    assert f'Omitted candidates <span class="count">{len(rec.plan["omitted"])}</span>' in page
    listed = logged_in.get(f"/traces/{rec.call_id}/omitted/").content.decode()
    shown = set(re.findall(r'<span class="reason">([^<]+)</span>', listed))
    assert reasons <= shown and shown


def test_a_failing_turn_in_the_middle_of_a_captured_session_is_in_triage(
    logged_in: Client, demo: list[str], traces: TraceStore
) -> None:
    session = next(c.session for c in CAPTURED if c.fail_at is not None)
    records = _records(traces, session)
    failed = [r for r in records if r.status is TraceStatus.ERROR]
    assert len(failed) == 1 and failed[0] is not records[-1]
    assert records[-1].status is TraceStatus.OK  # the session went on after it
    html = logged_in.get("/triage/?kind=errored").content.decode()
    assert f'href="/traces/{failed[0].call_id}/"' in html
    assert "overloaded_error" in html


def test_proxy_captured_turns_of_both_formats_are_in_the_store(
    logged_in: Client, demo: list[str], store: BlockStore, traces: TraceStore
) -> None:
    providers = set()
    for c in CAPTURED:
        records = _records(traces, c.session)
        assert records and all(r.origin is TraceOrigin.CAPTURE for r in records)
        assert store.session_info(c.session).meta["source"] == "proxy"
        providers |= {r.provider for r in records}
    assert len(providers) == 2  # Anthropic Messages and OpenAI Chat Completions
    html = logged_in.get("/sessions/?source=proxy").content.decode()
    assert all(c.session in html for c in CAPTURED)


def test_the_replay_shows_on_its_turn_and_in_the_audit_list(
    logged_in: Client, demo: list[str], traces: TraceStore
) -> None:
    (replayed,) = demo_replays(traces)
    assert replayed.origin is TraceOrigin.REPLAY
    page = logged_in.get(f"/traces/{replayed.parent_call_id}/").content.decode()
    assert 'data-replay-bytes="identical"' in page
    action = Action.objects.get(kind=Action.REPLAY)
    assert (action.call_id, action.result_call_id) == (replayed.parent_call_id, replayed.call_id)
    assert action.username == "admin" and action.outcome.startswith("bytes identical")
    audit = logged_in.get("/audit/").content.decode()
    assert replayed.parent_call_id[:12] in audit


def test_the_experiment_is_listed_on_the_experiments_page(
    logged_in: Client, demo: list[str], traces: TraceStore
) -> None:
    (row,) = demo_experiments(traces)
    assert traces.get(row.child).parent_call_id == row.parent
    html = logged_in.get("/experiments/").content.decode()
    assert row.description in html and row.child[:12] in html
    assert Action.objects.filter(kind=Action.EXPERIMENT, result_call_id=row.child).count() == 1


def test_loading_the_demo_twice_adds_nothing(
    store: BlockStore, demo: list[str], traces: TraceStore
) -> None:
    before = (store.session_count(), traces.count(), Action.objects.count())
    again: list[str] = []
    store_access.reset_stores()
    load_demo_data(store_access.get_store(), out=again.append, loaders=LOADERS)
    traces = store_access.get_traces()
    assert (store_access.get_store().session_count(), traces.count(),
            Action.objects.count()) == before  # fmt: skip
    assert all("already" in line for line in again[: len(LOADERS)])
    assert len(demo) == len(again) and before[2] == 2  # one replay, one experiment
