"""Roles: a viewer reads every page but is refused (403, saying why) on every view that replays,
re-pages, flags or spends; operators' replays and re-pages land in the audit list with who,
when, outcome and cost; `manage.py llm386_user` adds accounts with a role."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from llm386web.models import Action
from llm386web.roles import OPERATOR, VIEWER, role_of
from runtime.agent.core import create_demo_conversations

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


@pytest.fixture
def offline_turn(store: Any, traces: Any) -> str:
    session = create_demo_conversations(store, traces).sessions[0]
    return traces.list(session=session, limit=1, newest_first=False)[0].call_id


def _posts(call_id: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (f"/traces/{call_id}/replay", {"target": "offline"}),
        (f"/traces/{call_id}/repage", {"profile": "claude-sonnet-4-6"}),
        (f"/traces/{call_id}/flag", {"note": "bad", "action": "flag"}),
        ("/replays/some-job/cancel", {}),
        (f"/traces/{call_id}/experiment", {"kind": "set", "target": "temperature", "value": "0"}),
        (f"/traces/{call_id}/playground/send", {"request": "{}"}),
        (f"/traces/{call_id}/samples", {"samples": "2", "confirm": "yes"}),
        ("/otel/tokens/create", {"name": "ci"}),
        ("/otel/tokens/ci/revoke", {}),
        ("/sessions/any/otlp-export", {}),
    ]


def test_a_viewer_is_refused_on_every_acting_view_and_nothing_is_recorded(
    viewer: Client, offline_turn: str, traces: Any
) -> None:
    before = len(traces.list(limit=None))
    for url, data in _posts(offline_turn):
        response = viewer.post(url, data)
        assert response.status_code == 403, url
        assert "is a viewer: it can read every page but cannot replay" in response.content.decode()
    assert len(traces.list(limit=None)) == before
    assert traces.get(offline_turn).flag is None
    assert not Action.objects.exists()


def test_a_viewer_refused_under_htmx_gets_the_reason_as_a_fragment(
    viewer: Client, offline_turn: str
) -> None:
    response = viewer.post(f"/traces/{offline_turn}/replay", {"target": "offline"}, headers=HX)
    html = response.content.decode()
    assert response.status_code == 403
    assert "<html" not in html and "data-error-message" in html
    assert "llm386_user role vera operator" in html


def test_a_viewer_reads_the_turn_page_with_the_buttons_disabled(
    viewer: Client, offline_turn: str
) -> None:
    html = viewer.get(f"/traces/{offline_turn}/").content.decode()
    assert 'data-role="viewer"' in html
    assert 'value="offline" disabled' in html or 'value="offline" class="primary" disabled' in html
    assert 'value="flag" disabled' in html
    assert viewer.get("/sessions/").status_code == 200
    assert viewer.get("/audit/").status_code == 200


def test_an_operator_sees_no_viewer_note(logged_in: Client, offline_turn: str) -> None:
    html = logged_in.get(f"/traces/{offline_turn}/").content.decode()
    assert 'data-role="viewer"' not in html
    assert 'value="flag">' in html


def test_a_replay_lands_in_the_audit_list_with_who_outcome_and_cost(
    logged_in: Client, offline_turn: str, traces: Any
) -> None:
    logged_in.post(f"/traces/{offline_turn}/replay", {"target": "offline"})
    [action] = Action.objects.all()
    replay = [r for r in traces.list(limit=None) if r.parent_call_id == offline_turn]
    assert (action.username, action.kind, action.call_id) == ("tester", "replay", offline_turn)
    assert action.outcome == "bytes identical"
    assert action.result_call_id == replay[0].call_id
    html = logged_in.get("/audit/").content.decode()
    assert '<td class="who">tester</td>' in html and "bytes identical" in html
    assert f'href="/traces/{replay[0].call_id}/"' in html
    assert logged_in.get("/audit/?user=nobody").content.decode().count('data-action="') == 0


def test_a_repage_lands_in_the_audit_list_as_not_sent(
    logged_in: Client, imported_demo: list[Any]
) -> None:
    call_id = imported_demo[0].call_id
    response = logged_in.post(f"/traces/{call_id}/repage", {"profile": "claude-sonnet-4-6"})
    assert response.status_code == 302
    [action] = Action.objects.all()
    assert (action.kind, action.target, action.cost_usd) == ("repage", "claude-sonnet-4-6", 0.0)
    assert action.outcome == "recorded, not sent" and action.call_id == call_id


def test_manage_command_adds_users_with_a_role_and_changes_it(django_user_model: Any) -> None:
    out = io.StringIO()
    call_command("llm386_user", "add", "alice", "--role", "viewer", stdout=out)
    assert "Added alice (viewer)." in out.getvalue() and "Password: " in out.getvalue()
    password = out.getvalue().split("Password: ")[1].split()[0]
    alice = django_user_model.objects.get(username="alice")
    assert alice.check_password(password) and role_of(alice) == VIEWER
    call_command("llm386_user", "role", "alice", "operator", stdout=io.StringIO())
    assert role_of(django_user_model.objects.get(username="alice")) == OPERATOR
    listing = io.StringIO()
    call_command("llm386_user", "list", stdout=listing)
    assert "alice" in listing.getvalue() and "operator" in listing.getvalue()


def test_manage_command_says_what_to_do_on_bad_input(monkeypatch: Any) -> None:
    call_command("llm386_user", "add", "bob", "--role", "operator", stdout=io.StringIO())
    with pytest.raises(CommandError, match="already an account 'bob'"):
        call_command("llm386_user", "add", "bob", "--role", "viewer")
    with pytest.raises(CommandError, match="no account 'carol'"):
        call_command("llm386_user", "role", "carol", "viewer")
    monkeypatch.setattr("sys.stdin", io.StringIO("123\n"))
    with pytest.raises(CommandError, match="password was refused"):
        call_command("llm386_user", "add", "dave", "--role", "viewer", "--password-stdin")


def test_a_role_changed_on_the_same_user_object_is_read_again(user: Any) -> None:
    from llm386web.roles import set_role

    assert role_of(user) == OPERATOR  # asked once: remembered on the object for the request
    set_role(user, VIEWER)
    assert role_of(user) == VIEWER
    set_role(user, OPERATOR)
    assert role_of(user) == OPERATOR
