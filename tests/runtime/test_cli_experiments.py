"""`llm386 replay ID` with one change, or --samples N, through the CLI (offline model, real LMDB)."""

from __future__ import annotations

import json

import pytest

from runtime.agent.core import Agent
from runtime.providers import OfflineModel
from runtime.storage import open_store
from runtime.storage.lmdb.traces import LmdbTraceStore

pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def turn(tmp_path):
    """The sample agent's second call of a tool turn, made with the offline model."""
    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)
    reply = Agent(store, traces, OfflineModel(), session="cli").say("What is 6 * 7?")
    store.close()
    return reply.call_ids[-1]


def test_plain_replay_keeps_its_behaviour(run, turn):
    code, out, _ = run("replay", turn, "--offline")
    assert code == 0 and "sent bytes matched the recorded hash: yes" in out


def test_an_edit_from_a_file_is_sent_and_reported(run, turn, tmp_path):
    (tmp_path / "q.txt").write_text("What is 6 * 8?", encoding="utf-8")
    code, out, _ = run("replay", turn, "--offline", "--edit", "messages[0].content[0]=q.txt",
                       "--who", "ana")  # fmt: skip
    assert code == 0, out
    assert f"experiment on {turn}: edit messages[0].content[0]" in out
    assert "only the change differs (proved); cache prefix kept" in out


def test_drop_set_and_model_each_make_a_child(run, turn):
    for args in (["--drop", "messages[1].content[1]"], ["--set", "temperature=0"],
                 ["--model", "claude-haiku-4-5"]):  # fmt: skip
        code, out, err = run("--json", "replay", turn, "--offline", *args)
        assert code == 0, err
        data = json.loads(out)
        assert data["parent_call_id"] == turn and data["byte_diff"]["isolated"] is True
    code, out, _ = run("--json", "replay", turn, "--offline", "--drop", "messages[1].content[1]")
    (note,) = json.loads(out)["notes"]
    assert note.startswith("also dropped messages[2], the result of tool_use toolu_offline_")


def test_two_changes_at_once_are_refused(run, turn):
    code, _, err = run("replay", turn, "--drop", "messages[0].content[0]", "--set", "top_p=1")
    assert code == 2 and "changes exactly one thing" in err and "Traceback" not in err


def test_a_missing_key_falls_back_to_the_offline_model_and_says_so(run, turn):
    code, out, err = run("replay", turn, "--anthropic", "--set", "temperature=0")
    assert code == 0 and "ANTHROPIC_API_KEY is not set: sending to the offline model" in err
    assert "(offline, llm386-offline): ok" in out


def test_samples_need_a_confirmation_and_group_the_answers(run, turn):
    code, _, err = run("replay", turn, "--offline", "--samples", "3")
    assert code == 2 and "add --yes" in err and "3 sends of" in err
    code, out, err = run("replay", turn, "--offline", "--samples", "3", "--yes")
    assert code == 0, err
    assert f"3 samples of {turn}: REPRODUCES" in out and "3/3 [exact]" in out
    code, _, err = run("replay", turn, "--samples", "51", "--yes")
    assert code == 2 and "1 to 50" in err


def test_a_bad_target_says_what_to_name(run, turn):
    code, _, err = run("replay", turn, "--offline", "--drop", "messages[9]")
    assert code == 2 and "has no messages[9]" in err


@pytest.mark.parametrize(
    "args, says",
    [(["--set", "temperature=1e400"], "1e400 is not a number JSON can carry"),
     (["--set", "temperature=NaN"], "NaN is not a number JSON can carry"),
     (["--set", "temperature=" + "[" * 5000 + "]" * 5000], "levels deep cannot be sent"),
     (["--weight", "bm25=Infinity"], "is not a number JSON can carry"),
     (["--budget", "recent=1e400"], "is not a number JSON can carry")],
    ids=["1e400", "NaN", "deep-nesting", "infinite-weight", "infinite-budget"],
)  # fmt: skip
def test_a_value_json_cannot_carry_is_refused_with_what_to_give(run, turn, args, says):
    # json.loads reads NaN, Infinity and 1e400 (as inf): --set then failed as "no canonical
    # JSON ... report it as a bug", a deep value raised RecursionError (a traceback), and an
    # infinite --weight or --budget was taken and re-paged ("nothing changes").
    code, out, err = run("replay", turn, "--offline", *args)
    assert code == 2 and says in err and "Traceback" not in err and "bug" not in err


def test_an_infinite_weight_given_in_code_is_refused():
    from runtime.replay.experiment import _number

    for value in (float("inf"), float("nan")):
        with pytest.raises(Exception, match="is not a weight or budget"):
            _number(value)
