"""The llm386 trace commands, as a user types them."""

from __future__ import annotations

import hashlib
import json

import pytest

from runtime import NewBlock, open_store
from runtime.cli import main
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.tracing.records import Provider, TraceRecord, new_call_id, prompt_hash
from runtime.transfer.failing import diverging_call
from runtime.transfer.importer import DEMO_DIR

SESSIONS = json.loads((DEMO_DIR / "sessions.json").read_bytes())


@pytest.fixture
def files(tmp_path):
    """Two tau-bench sessions (one failing) as JSON Lines with tools.json beside them."""
    picked = [s for s in SESSIONS if s["task_id"] == 0][:1] + [
        s for s in SESSIONS if s["reward"] == 1
    ][:1]
    (tmp_path / "runs.jsonl").write_text("\n".join(json.dumps(s) for s in picked))
    (tmp_path / "tools.json").write_bytes((DEMO_DIR / "tools.json").read_bytes())
    return tmp_path


def make_record(store, request: bytes, session: str = "s", turn: int = 1) -> TraceRecord:
    """A trace record of one offline call in ``session`` that sent ``request``."""
    store.put(session, NewBlock("user-message", f"turn {turn}"))
    cid = new_call_id()
    return TraceRecord(cid, session, turn, int(cid[:13]), Provider.OFFLINE, "offline",
                       prompt_hash(request), len(request), upto_seq=1)  # fmt: skip


def _ids(run, *args) -> list[str]:
    return [r["call_id"] for r in json.loads(run("traces", "--json", *args)[1])]


def test_import_list_show_diff_and_flag(run, files):
    code, out, _ = run("import", str(files / "runs.jsonl"), "--prefix", "tau")
    assert code == 0 and "imported 2 sessions" in out and "1 failing" in out
    assert "0 turns recorded" in run("import", str(files / "runs.jsonl"), "--prefix", "tau")[1]
    session = "tau-task000-trial0"
    ids = _ids(run, "--session", session, "--oldest-first", "--limit", "100")
    assert len(ids) == sum(m["role"] == "assistant" for m in SESSIONS[0]["traj"])
    code, out, _ = run("trace", ids[0][:18])
    assert code == 0 and "turn 1" in out and "replay-complete" in out and "o200k_base" in out
    code, out, _ = run("diff", ids[3], ids[4])
    assert code == 0 and "blocks: +" in out and "cache: automatic-prefix" in out and "\n+ " in out
    assert "no cache breakpoint" in out and "bytes up to -" not in out  # OpenAI: no markers
    data = json.loads(run("diff", ids[3], ids[4], "--json")[1])
    assert data["a"] == ids[3] and data["text"]["added"] > 0
    # The failing run's flag is on the turn whose tool call first departs from the expected
    # actions (runtime.transfer.failing), else on its last turn.
    traj = SESSIONS[0]["traj"]
    found = diverging_call(traj, SESSIONS[0]["info"])
    replies = [i for i, m in enumerate(traj) if m["role"] == "assistant"]
    wrong = ids[replies.index(found[0])] if found else ids[-1]
    assert _ids(run, "--status", "flagged") == [wrong]
    assert "flagged as failing: wrong fare" in run("flag", ids[0], "--note", "wrong fare")[1]
    assert set(_ids(run, "--status", "flagged")) == {ids[0], wrong}
    assert "unflagged" in run("flag", ids[0], "--clear")[1]
    assert _ids(run, "--status", "ok", "--limit", "1000") and not _ids(run, "--status", "error")


def test_trace_request_prints_the_exact_stored_bytes(tmp_path, files, capsysbinary):
    store = str(tmp_path / "store")
    main(["--store", store, "import", str(files / "runs.jsonl")])
    capsysbinary.readouterr()
    main(["--store", store, "--json", "traces", "--limit", "1"])
    record = json.loads(capsysbinary.readouterr().out)[0]
    assert main(["--store", store, "trace", record["call_id"], "--request"]) == 0
    out = capsysbinary.readouterr().out
    assert hashlib.sha256(out).hexdigest() == record["prompt_hash"]  # no newline added
    assert not out.endswith(b"\n")


def test_trace_response_prints_the_stored_response_bytes_unchanged(tmp_path, capsysbinary):
    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)
    request, response = b'{"messages":[]}', b'{"id":"msg_1","content":[]}'  # no final newline
    record = make_record(store, request)
    traces.record(record, request, response)
    call = record.call_id
    assert main(["--store", str(store.path), "trace", call, "--response"]) == 0
    assert capsysbinary.readouterr().out == response
    assert main(["--store", str(store.path), "trace", call, "--request"]) == 0
    assert hashlib.sha256(capsysbinary.readouterr().out).hexdigest() == record.prompt_hash
    assert main(["--store", str(store.path), "--json", "trace", call, "--response"]) == 0
    data = json.loads(capsysbinary.readouterr().out)
    assert data["sha256"] == hashlib.sha256(response).hexdigest() and data["size"] == len(response)


def test_trace_response_that_was_never_stored_is_an_error_not_output(tmp_path, capsysbinary):
    store = open_store(tmp_path / "store")
    request = b'{"messages":[]}'
    record = make_record(store, request)
    LmdbTraceStore(store).record(record, request)
    assert main(["--store", str(store.path), "trace", record.call_id, "--response"]) == 2
    captured = capsysbinary.readouterr()
    assert captured.out == b"" and b"no response was stored" in captured.err


def test_export_and_import_session_round_trip(run, files, tmp_path):
    run("import", str(files / "runs.jsonl"), "--prefix", "tau")
    target = tmp_path / "out.jsonl"
    code, out, _ = run("export", "tau-task000-trial0", str(target))
    assert code == 0 and "sha256" in out
    code, _, err = run("import-session", str(target))
    assert code == 2 and "already exists" in err
    code, out, _ = run("import-session", str(target), "--as", "copy")
    assert code == 0 and "verified and imported copy" in out
    assert len(_ids(run, "--session", "copy", "--limit", "100")) == len(
        _ids(run, "--session", "tau-task000-trial0", "--limit", "100")
    )


def test_errors_are_one_line_with_what_to_do(run, files, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[{"traj": [{"role": "user"}]}]')
    code, _, err = run("import", str(bad))
    assert code == 2 and err.startswith("llm386: error: bad.json line 1: session item 0, message 0")
    run("import", str(files / "runs.jsonl"))
    code, _, err = run("trace", "0000000000000")
    assert code == 2 and "no trace with id" in err
    code, _, err = run("diff", "zz", "yy")
    assert code == 2 and "is not a call id" in err
    code, _, err = run("traces", "--hash", "abc")
    assert code == 2 and "too short: give at least 8 hex characters" in err
    code, _, err = run("traces", "--hash", "xyz12345")
    assert code == 2 and "is not a prompt hash" in err


# Two requests whose prompt hashes share their first 8 hex characters (351ff2e6).
TWINS = (b'{"messages":[],"n":26350}', b'{"messages":[],"n":57230}')


def test_traces_hash_takes_a_unique_prefix_and_lists_an_ambiguous_ones_candidates(tmp_path, run):
    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)
    records = [make_record(store, r, turn=n) for n, r in enumerate(TWINS, start=1)]
    for record, request in zip(records, TWINS, strict=True):
        traces.record(record, request)
    first, second = sorted(r.prompt_hash for r in records)
    wanted = next(r for r in records if r.prompt_hash == second)
    code, out, _ = run("traces", "--hash", second[:12])  # as the listing shows it
    assert code == 0 and wanted.call_id in out and out.count("\n") == 2  # header and one row
    code, out, err = run("traces", "--hash", first[:8])
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"matches 2 hashes: {first[:12]}, {second[:12]}; give more characters" in err
