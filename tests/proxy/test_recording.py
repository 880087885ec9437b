"""What recording promises: no credential anywhere, nothing lost silently, and --fail-closed."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import pytest

from runtime import open_store
from runtime.cli import main as cli_main
from runtime.proxy import Family, ProxySettings, ProxyThread, Recorder
from runtime.proxy.turns import TurnWriter
from runtime.storage.lmdb.traces import LmdbTraceStore
from runtime.transfer.exchange import export_session
from tests.fakes.anthropic_server import AnthropicServer, RawReply, error_reply, stream_reply
from tests.proxy.conftest import API_KEY, Stack, start_stack

MESSAGES = [{"role": "user", "content": "hello"}]


def test_an_api_key_appears_nowhere_in_the_store_logs_or_cli_output(
    stack: Stack,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    stack.anthropic_up.enqueue(error_reply(401), stream_reply("streamed"))
    client = stack.anthropic(max_retries=0, default_headers={"cookie": f"s={API_KEY}",
                                                             "x-custom-token": API_KEY})  # fmt: skip
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=MESSAGES)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=8, messages=MESSAGES) as s:
        s.get_final_message()
    stack.openai(max_retries=0).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    list(stack.openai(max_retries=0).responses.create(model="gpt-4o", input="hi", stream=True))
    records = stack.records()
    assert len(records) == 4
    assert all(r.carries_api_key(API_KEY) for r in stack.anthropic_up.requests)  # forwarded
    assert all(r.header("authorization") == f"Bearer {API_KEY}" for r in stack.openai_up.requests)
    for n, r in enumerate(records):
        export_session(stack.store, stack.traces, r.session, tmp_path / f"export{n}.jsonl")
    exported = [p.read_bytes() for p in sorted(tmp_path.glob("export*.jsonl"))]
    assert len(exported) == 4
    store_dir = Path(stack.store.path)
    cli_main(["--store", str(store_dir), "traces", "--json"])
    for r in records:
        cli_main(["--store", str(store_dir), "show", r.call_id, "--json"])
    out = capsys.readouterr()
    key = API_KEY.encode()
    for path in store_dir.iterdir():
        assert key not in path.read_bytes(), path.name
    assert API_KEY not in caplog.text and API_KEY not in out.out + out.err
    assert all(key not in data for data in exported)
    headers = records[0].config["proxy"]["request_headers"]
    assert not any(
        name in ("authorization", "x-api-key", "cookie", "x-custom-token") for name, _ in headers
    )


@pytest.fixture
def readonly_stack(tmp_path: Path) -> Iterator[tuple[ProxyThread, Recorder, AnthropicServer]]:
    path = tmp_path / "store"
    writable = open_store(path)
    TurnWriter(writable, LmdbTraceStore(writable))  # creates every table the writer uses
    writable.close()
    store = open_store(path, readonly=True)  # a store that refuses every write
    recorder = Recorder(store, LmdbTraceStore(store)).start()
    with AnthropicServer() as up:
        settings = ProxySettings(
            port=0, upstreams={Family.ANTHROPIC: up.base_url, Family.OPENAI: up.base_url}
        )
        with ProxyThread(settings, recorder) as proxy:
            yield proxy, recorder, up
    recorder.close()


def _post(url: str) -> httpx2.Response:
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 8, "messages": MESSAGES})
    return httpx2.post(url + "/v1/messages", content=body, headers={"x-api-key": API_KEY})


def test_a_failing_store_keeps_forwarding_marks_responses_and_counts_lost_records(
    readonly_stack: tuple[ProxyThread, Recorder, AnthropicServer], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, recorder, up = readonly_stack
    first = _post(proxy.base_url)
    assert first.status_code == 200
    assert recorder.flush(10)
    second = _post(proxy.base_url)
    assert second.status_code == 200 and second.headers["x-llm386-recorded"] == "false"
    assert second.content == json.dumps(json.loads(second.content), separators=(",", ":")).encode()
    assert recorder.flush(10)
    status = httpx2.get(proxy.base_url + "/llm386/status").json()
    assert status["up"] is True and status["calls"] == 2 and status["recorded"] == 0
    assert status["lost"] == 2 and status["recording"] is False and status["queue"] == 0
    assert "LOST the record" in caplog.text and API_KEY not in caplog.text
    assert up.request_count == 2


def test_fail_closed_refuses_in_the_providers_format_while_recording_fails(
    readonly_stack: tuple[ProxyThread, Recorder, AnthropicServer],
) -> None:
    proxy, recorder, up = readonly_stack
    proxy.server.settings = ProxySettings(**{**proxy.server.settings.__dict__, "fail_closed": True})
    assert _post(proxy.base_url).status_code == 200  # the store has not failed yet
    assert recorder.flush(10)
    refused = _post(proxy.base_url)
    assert refused.status_code == 503 and up.request_count == 1
    assert refused.json()["error"]["type"] == "overloaded_error"
    assert httpx2.get(proxy.base_url + "/llm386/status").json()["refused"] == 1


def test_the_writer_loads_its_tokenizers_before_the_first_call(tmp_path: Path) -> None:
    # In a fresh interpreter: nothing else has loaded a tokenizer there.
    code = (
        "import sys; from runtime import open_store; from runtime.proxy import Recorder;"
        "from runtime.storage.lmdb.traces import LmdbTraceStore; from runtime import tokenizers;"
        "s = open_store(sys.argv[1]); r = Recorder(s, LmdbTraceStore(s));"
        "assert not tokenizers._cache; r.start(); assert r.wait_ready(60);"
        "print(sorted(tokenizers._cache), sorted(s.tokenizers)); r.close()"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).parents[2])  # fmt: skip
    loaded, wanted = out.stdout.strip().split("] [")
    assert loaded.strip("[]") == wanted.strip("[]") and "cl100k_base" in loaded


_SURROGATE = (
    b'{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":"user","content":"\\ud800"}]}'
)
_TOOL_INPUT_1E400 = (
    b'{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":"assistant","content":'
    b'[{"type":"tool_use","id":"t1","name":"calc","input":{"x":1e400}}]}]}'
)
_DEEP = (
    b'{"model":"claude-sonnet-4-6","max_tokens":8,"metadata":'
    + b"[" * 5000
    + b"]" * 5000
    + b',"messages":[{"role":"user","content":"hi"}]}'
)


@pytest.mark.parametrize("body", [_SURROGATE, _TOOL_INPUT_1E400, _DEEP],
                         ids=["lone-surrogate", "1e400-in-a-tool-input", "deep-nesting"])  # fmt: skip
def test_valid_json_with_no_blocks_to_read_is_recorded_and_fail_closed_keeps_serving(
    tmp_path: Path, body: bytes
) -> None:
    # Well-formed JSON whose conversation has no canonical blocks (a lone surrogate escape, a
    # number no float holds, nesting deeper than Python parses) was a write the store refused:
    # the record was lost, recording went down, and a --fail-closed proxy refused every later
    # call with 503, for good, since no write could then bring recording back.
    for stack in start_stack(tmp_path / "store", fail_closed=True):
        first = httpx2.post(stack.url + "/v1/messages", content=body,
                            headers={"x-api-key": API_KEY})  # fmt: skip
        assert first.status_code == 200
        assert stack.recorder.flush(10)
        assert _post(stack.url).status_code == 200  # not refused: recording is up
        records = stack.records()
        assert len(records) == 2 and stack.recorder.lost == 0
        assert body in [stack.traces.request_bytes(r.prompt_hash) for r in records]  # as sent


def _message_reply(**changes: object) -> bytes:
    message = {"id": "msg_odd", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
               "content": [{"type": "text", "text": "TEXT"}], "stop_reason": "end_turn",
               "usage": {"input_tokens": "IN", "output_tokens": 1}, **changes}  # fmt: skip
    return json.dumps(message).encode()


_ODD_REPLIES = {
    "a-count-that-is-not-a-number": _message_reply().replace(b'"IN"', b'"many"'),
    "a-count-of-1e400": _message_reply().replace(b'"IN"', b"1e400"),
    "a-count-no-64-bit-integer-holds": _message_reply().replace(b'"IN"', b"9" * 40),
    "a-stop-reason-that-is-an-object": _message_reply(stop_reason={"why": 1}),
    "a-lone-surrogate-in-the-text": _message_reply().replace(b'"TEXT"', b'"\\ud800"'),
    "deep-nesting": b'{"content":' + b"[" * 5000 + b"]" * 5000 + b"}",
}


@pytest.mark.parametrize("body", list(_ODD_REPLIES.values()), ids=list(_ODD_REPLIES))
def test_an_upstream_reply_of_an_odd_shape_is_recorded_and_fail_closed_keeps_serving(
    tmp_path: Path, body: bytes
) -> None:
    # Reading a reply raised (int("many"), int(inf), RecursionError) or gave a record the store
    # refuses (a count over 64 bits, a stop reason that is not a string, a message with no
    # canonical JSON): the record was lost and a --fail-closed proxy refused every later call.
    for stack in start_stack(tmp_path / "store", fail_closed=True):
        stack.anthropic_up.enqueue(RawReply(200, body))
        assert _post(stack.url).content == body  # the client gets the bytes as they came
        assert stack.recorder.flush(10)
        assert _post(stack.url).status_code == 200  # not refused: recording is up
        records = stack.records()
        assert len(records) == 2 and stack.recorder.lost == 0
        assert body in [stack.traces.response_bytes(r.call_id) for r in records]


def test_a_recorded_lone_surrogate_diffs_and_prints_escaped(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # The cache comparison encoded each unit as strict UTF-8 and the CLI printed the text diff
    # as it was: both raised UnicodeEncodeError, a traceback instead of the diff.
    assert _post(stack.url).status_code == 200
    reply = httpx2.post(stack.url + "/v1/messages", content=_SURROGATE,
                        headers={"x-api-key": API_KEY})  # fmt: skip
    assert reply.status_code == 200
    a, b = stack.records()
    store = ["--store", str(stack.store.path)]
    assert cli_main([*store, "diff", a.call_id, b.call_id]) == 0
    assert "+ \\ud800" in capsys.readouterr().out
    assert cli_main([*store, "--json", "diff", a.call_id, b.call_id]) == 0
    assert json.loads(capsys.readouterr().out)["cache"]["verdict"] == "no-breakpoint"
