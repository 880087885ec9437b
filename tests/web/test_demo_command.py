"""`manage.py llm386_demo`: a local user whose printed login works, created once."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from llm386web import store_access

pytestmark = pytest.mark.django_db


def _run(
    monkeypatch: pytest.MonkeyPatch, password: str | None = None, *, data: bool = False
) -> str:
    if password is None:
        monkeypatch.delenv("LLM386_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("LLM386_PASSWORD", password)
    out = io.StringIO()
    call_command("llm386_demo", *(() if data else ("--no-data",)), stdout=out)
    store_access.reset_stores()
    return out.getvalue()


def _printed_password(output: str) -> str:
    line = next(x for x in output.splitlines() if x.strip().startswith("Password:"))
    return line.split()[1]


def test_first_run_creates_admin_with_a_generated_password_kept_0600(
    web_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _run(monkeypatch)
    password = _printed_password(output)
    assert "http://127.0.0.1:8000" in output
    assert "Username:  admin" in output
    assert authenticate(username="admin", password=password) is not None
    kept = web_home / "admin_password"
    assert kept.read_text().strip() == password
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600


def test_second_run_keeps_the_same_login(web_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _printed_password(_run(monkeypatch))
    second = _printed_password(_run(monkeypatch))
    assert first == second
    assert authenticate(username="admin", password=second) is not None


def test_password_from_the_environment_wins(
    web_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(monkeypatch)
    output = _run(monkeypatch, password="chosen-by-me-123")
    assert _printed_password(output) == "chosen-by-me-123"
    assert authenticate(username="admin", password="chosen-by-me-123") is not None


def test_a_password_changed_by_hand_is_kept_and_flagged(
    web_home: Path, monkeypatch: pytest.MonkeyPatch, django_user_model: Any
) -> None:
    _run(monkeypatch)
    admin = django_user_model.objects.get(username="admin")
    admin.set_password("my-own-password-1")
    admin.save()
    output = _run(monkeypatch)
    assert "was changed after it was generated" in output
    assert authenticate(username="admin", password="my-own-password-1") is not None


def test_demo_loads_tau_bench_and_the_sample_agent_once(
    web_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _run(monkeypatch, data=True)
    assert "tau-bench airline: 120 session(s) and 1698 turn(s) imported" in first
    assert "sample agent: 3 demo conversation(s) created with the offline model" in first
    assert "budget pressure: 1 sample-agent session(s)" in first
    assert "capture proxy: 2 session(s) recorded through the proxy" in first
    assert "Anthropic Messages and OpenAI Chat Completions; 1 scripted 529" in first
    store = store_access.get_store()
    traces = store_access.get_traces()
    sessions, calls = store.session_count(), traces.count()
    assert store.kv.read(lambda t: t.count("dash_calls")) == calls  # the dashboard is ready
    store_access.reset_stores()
    second = _run(monkeypatch, data=True)
    assert "all 120 sessions already loaded" in second
    assert "all 3 demo conversations already loaded" in second
    assert "replay and experiment: already made." in second
    store = store_access.get_store()
    traces = store_access.get_traces()
    assert (store.session_count(), traces.count()) == (sessions, calls) == (126, calls)
    assert calls > 1698  # the sample agent's turns are traced too, once
    assert traces.count(flagged=True) == 84  # one turn of each failed run is flagged
    store_access.reset_stores()


def test_without_data_the_store_stays_empty(
    web_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _run(monkeypatch)
    assert "tau-bench" not in output
    assert store_access.get_store().session_count() == 0
    store_access.reset_stores()
