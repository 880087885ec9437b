"""``llm386 copy``: a whole store, traces included, LMDB -> PostgreSQL -> LMDB, verified by hash."""

from __future__ import annotations

import json

from runtime import open_store
from runtime.agent.core import create_demo_conversations
from runtime.cli import main
from runtime.storage.copy import digest
from runtime.storage.tracestore import KvTraceStore


def _copy(capsys, src: str, dst: str) -> tuple[int, dict, str]:
    code = main(["--json", "copy", src, dst])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def test_a_store_goes_to_postgresql_and_back_byte_for_byte(tmp_path, pg_url, capsys) -> None:
    src = open_store(tmp_path / "src")
    create_demo_conversations(src, KvTraceStore(src))
    hashes = sorted(r.prompt_hash for r in KvTraceStore(src).list(limit=1000))
    before = digest(src.kv)
    src.close()

    code, there, err = _copy(capsys, str(tmp_path / "src"), pg_url)
    assert code == 0, err
    assert there["verify_problems"] == 0 and there["keys"] == sum(d.keys for d in before)
    assert "password" not in json.dumps(there)

    code, back, err = _copy(capsys, pg_url, str(tmp_path / "back"))
    assert code == 0, err
    returned = open_store(tmp_path / "back")
    assert digest(returned.kv) == before  # every table, every byte, the same as where it began
    traces = KvTraceStore(returned)
    assert sorted(r.prompt_hash for r in traces.list(limit=1000)) == hashes
    first = traces.list(limit=1)[0]
    assert traces.request_bytes(first.prompt_hash) is not None


def test_copy_refuses_a_destination_that_holds_a_store(tmp_path, capsys) -> None:
    open_store(tmp_path / "a").close()
    open_store(tmp_path / "b").close()
    code, _, err = _copy(capsys, str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 2 and "already holds data" in err and "Traceback" not in err


def test_copy_from_something_that_is_not_a_store_says_so(tmp_path, capsys) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    code, _, err = _copy(capsys, str(tmp_path / "junk"), str(tmp_path / "dst"))
    assert code == 2 and "llm386: error:" in err and "Traceback" not in err


def test_a_copy_reports_its_progress_on_stderr(tmp_path, pg_url, capsys, monkeypatch) -> None:
    src = open_store(tmp_path / "src")
    create_demo_conversations(src, KvTraceStore(src))
    keys = sum(d.keys for d in digest(src.kv))
    src.close()
    monkeypatch.setenv("LLM386_PROGRESS", "lines")  # what a log or CI sees (a bar on a terminal)
    code, report, err = _copy(capsys, str(tmp_path / "src"), pg_url)
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("copy ")]
    assert lines and "***" not in err
    assert f"{keys:,}" in lines[-1] and "keys" in lines[-1]  # the last line states the total
    assert report["keys"] == keys  # and stdout stays the command's JSON
