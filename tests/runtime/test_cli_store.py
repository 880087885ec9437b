"""The llm386 store commands, as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from runtime.cli import main


def test_put_show_and_list_a_session(run):
    code, out, _ = run(
        "put", "--session", "s1", "--kind", "fact", "--label", "pinned", "Paris is in France"
    )
    assert code == 0
    block_id = out.split()[0]
    code, out, _ = run("show", block_id[:10])
    assert "Paris is in France" in out and "kind: fact" in out
    code, out, _ = run("session", "s1", "--json")
    data = json.loads(out)
    assert data[0]["provenance"]["labels"] == ["pinned"] and data[0]["seq"] == 0
    code, out, _ = run("sessions")
    assert "s1" in out


def test_show_lists_the_blocks_labels_sessions_and_edges(run):
    put = ("put", "--kind", "fact", "--label", "pinned", "--label", "refunds")
    block = run(*put, "--session", "s1", "Paris is in France")[1].split()[0]
    run("put", "--session", "s2", "--kind", "fact", "--label", "travel", "Paris is in France")
    later = run("put", "--session", "s1", "--kind", "fact", "France is in Europe")[1].split()[0]
    earlier = run("put", "--session", "s1", "--kind", "fact", "Lyon is in France")[1].split()[0]
    run("add-edge", block, "supports", later)
    run("add-edge", earlier, "parent", block)
    code, out, _ = run("show", block[:10])
    assert code == 0
    assert "labels: pinned, refunds, travel" in out
    assert "sessions (2):\n  s1 #0  labels: pinned, refunds\n  s2 #0  labels: travel\n" in out
    assert f"edges (1 out, 1 in):\n  -> supports {later[:12]}\n  <- parent {earlier[:12]}\n" in out
    assert out.rstrip("\n").endswith("\n\nParis is in France")
    data = json.loads(run("show", block, "--json")[1])
    assert data["labels"] == ["pinned", "refunds", "travel"]
    assert [(m["session"], m["seq"], m["labels"]) for m in data["memberships"]] == [
        ("s1", 0, ["pinned", "refunds"]), ("s2", 0, ["travel"])
    ]  # fmt: skip
    assert data["edges_out"] == [{"from": block, "kind": "supports", "to": later}]
    assert data["edges_in"] == [{"from": earlier, "kind": "parent", "to": block}]


def test_edges_delete_purge_verify_repair(run):
    a = run("put", "--session", "s", "--kind", "fact", "a")[1].split()[0]
    b = run("put", "--session", "s", "--kind", "fact", "b")[1].split()[0]
    assert run("add-edge", a, "supports", b)[1].strip() == "edge added"
    assert run("add-edge", a, "supports", b)[1].strip() == "edge already present"
    assert json.loads(run("edges", b, "--json")[1])["in"][0]["from"] == a
    assert run("verify")[0] == 0
    assert run("delete", a)[0] == 0
    assert "1 entries" in run("purge", "s")[1]
    assert "0 fixed" in run("repair")[1]


def test_errors_are_one_line_and_exit_non_zero(run):
    run("put", "--session", "s", "--kind", "fact", "x")
    code, out, err = run("show", "abcdef0123")
    assert code == 2 and out == ""
    assert err.startswith("llm386: error: no block") and err.count("\n") == 1
    code, _, err = run("purge", "nope")
    assert code == 2 and "no session" in err


def test_invalid_utf8_file_is_refused(run, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok \xc3\x28 not utf-8")
    code, _, err = run("put", "--session", "s", "--kind", "document-chunk", "--file", str(bad))
    assert code == 2 and "not valid UTF-8" in err


def test_opening_a_missing_store_says_how_to_create_one(tmp_path, capsys):
    code = main(["--store", str(tmp_path / "none"), "sessions"])
    assert code == 2 and "llm386 init" in capsys.readouterr().err


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("llm386")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True)
    assert "verify" in result.stdout and "purge" in result.stdout


def test_purge_removes_the_sessions_traces_too(run, tmp_path):
    transcript = [
        {
            "task_id": 1,
            "trial": 0,
            "reward": 0.0,
            "info": {},
            "traj": [
                {"role": "system", "content": "You are an airline agent."},
                {"role": "user", "content": "Cancel reservation ZX123"},
                {"role": "assistant", "content": "Done."},
            ],
        }
    ]
    path = tmp_path / "one.json"
    path.write_text(json.dumps(transcript))
    assert run("import", str(path))[0] == 0
    session = json.loads(run("sessions", "--json")[1])[0]["session"]
    assert json.loads(run("traces", "--session", session, "--json")[1])
    assert "1 trace records" in run("purge", session)[1]
    assert json.loads(run("traces", "--session", session, "--json")[1]) == []
    assert run("verify")[0] == 0


def test_sessions_say_when_more_are_left(run):
    for i in range(3):
        run("put", "--session", f"s{i}", "--kind", "fact", f"fact {i}")
    out = run("sessions", "--limit", "2")[1]
    assert "(1-2 of 3 sessions; --offset 2 for more)" in out
    assert "more" not in run("sessions", "--offset", "2")[1]
