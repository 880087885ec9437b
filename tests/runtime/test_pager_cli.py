"""``llm386 page`` and ``llm386 pack``, as a user types them."""

from __future__ import annotations

import hashlib
import json

import pytest


@pytest.fixture
def session(run):
    run("put", "--session", "s", "--kind", "system", "You are a gate agent.")
    run("put", "--session", "s", "--kind", "user-message", "My flight leaves from gate B12.")
    run("put", "--session", "s", "--kind", "assistant-message", "Noted: gate B12.")
    return run


ARGS = ("--session", "s", "--model", "claude-sonnet-4-6", "--task", "Which gate?")


def test_page_lists_every_decision_with_its_reason_and_the_prompt_hash(session):
    code, out, _ = session("page", *ARGS)
    assert code == 0
    assert "selected (3)" in out and "standing" in out and "gate B12" in out
    assert "prompt hash " in out and "(estimate)" in out


def test_page_json_is_the_plan_and_the_packed_figures(session):
    _, out, _ = session("page", *ARGS, "--json")
    data = json.loads(out)
    assert {s["reason"] for s in data["plan"]["selected"]} <= {"standing", "relevance", "recency"}
    assert data["plan"]["tokens"] <= data["plan"]["budget"]
    assert len(data["packed"]["prompt_hash"]) == 64


def test_pack_prints_the_sectioned_prompt_and_its_hash(session):
    code, out, _ = session("pack", *ARGS)
    assert code == 0
    assert out.startswith("## System\n\nsystem: You are a gate agent.\n\n## Task\n\nWhich gate?")
    assert "prompt hash " in out and "text sha256 " in out


def test_pack_chat_prints_the_exact_request_bytes_whose_hash_goes_to_stderr(session, tmp_path):
    code, out, err = session("pack", *ARGS, "--chat", "--out", str(tmp_path / "req.json"))
    body = (tmp_path / "req.json").read_bytes()
    assert code == 0 and out == body.decode()  # byte for byte: no newline added
    assert err.strip() == f"prompt hash {hashlib.sha256(body).hexdigest()}"
    assert json.loads(body)["messages"][-1]["content"][-1]["text"] == "Which gate?"


def test_page_as_of_an_earlier_entry_sees_only_what_existed(session):
    _, out, _ = session("page", *ARGS, "--upto", "2", "--json")
    seqs = [s["seq"] for s in json.loads(out)["plan"]["selected"]]
    assert seqs == [0, 1]


def test_an_unknown_session_or_model_is_one_line_on_stderr(session):
    code, _, err = session("page", "--session", "nope", "--model", "claude-sonnet-4-6")
    assert code == 2 and err.startswith("llm386: error: no session 'nope'")
    code, _, err = session("page", "--session", "s", "--model", "gpt-9000")
    assert code == 2 and "unknown model" in err
