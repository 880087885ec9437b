"""The Anthropic adapter never lets the API key, whole or cut short, or base URL credentials
reach an error message, an attempt, a repr or a stored trace."""

from __future__ import annotations

import traceback

import pytest

from runtime import open_store
from runtime.agent.core import Agent
from runtime.blocks import canonical_json
from runtime.errors import ModelCallFailed
from runtime.storage.lmdb.traces import LmdbTraceStore
from tests.fakes.anthropic_server import DropConnection, RawReply, error_reply

# Shaped like a real key: a shared public head, then the secret part.
KEY = "sk-ant-api03-S3CR3T" + "x7Kq2vLm9PzR4tWb8NcYd1HgFj6" * 3 + "-AA"
PASSWORD = "gw-pass-Hunter2-0xDEADBEEF"
REQUEST = canonical_json(
    {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
)
ECHO = "Authorization: Bearer "


pytestmark = pytest.mark.usefixtures("no_anthropic_env")


@pytest.fixture
def api_key() -> str:
    return KEY


def leaks(text: str, secret: str) -> bool:
    """Whether ``text`` holds any run of 8+ characters from any part of ``secret``."""
    return any(secret[i : i + 8] in text for i in range(len(secret) - 7))


def seen_in(error: ModelCallFailed) -> list[str]:
    texts = [str(error), repr(error), repr(error.attempts), *traceback.format_exception(error)]
    return texts + [attempt.message for attempt in error.attempts]


def echoing_body(offset: int, secret: str = KEY) -> bytes:
    """A non-JSON gateway page that echoes the key's header so the key starts at ``offset``."""
    return ("." * (offset - len(ECHO)) + ECHO + secret + " (rejected)").encode()


# The key whole before the 200-character cut, straddling it, starting right at it, and after it.
@pytest.mark.parametrize("offset", [30, 150, 170, 190, 199, 200, 260])
def test_a_key_echoed_in_a_non_json_error_body_never_reaches_the_failure(
    offset, make_adapter, model_server
):
    model_server.enqueue(RawReply(401, echoing_body(offset), content_type="text/plain"))
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter().send(REQUEST, expected_sha256=None)
    assert failure.value.status == 401 and failure.value.error_type == "http-401"
    assert [text for text in seen_in(failure.value) if leaks(text, KEY)] == []
    if offset < 200 - 9:  # the mask itself fits before the cut
        assert "[api key]" in failure.value.attempts[0].message


@pytest.mark.parametrize("kept", [8, 20, 40, len(KEY) - 1])
def test_a_key_cut_short_by_the_server_is_masked_too(kept, make_adapter, model_server):
    model_server.enqueue(
        RawReply(500, echoing_body(40, KEY[:kept]), content_type="text/plain"),
        error_reply(400, f"bad header: {KEY[:kept]}… and more"),
        RawReply(200, f'{{"echo": "{KEY[:kept]}'.encode()),  # malformed: quoted in the error
    )
    adapter = make_adapter(max_retries=0)
    failures = []
    for _ in range(3):
        with pytest.raises(ModelCallFailed) as failure:
            adapter.send(REQUEST, expected_sha256=None)
        failures.append(failure.value)
    assert [f.error_type for f in failures] == [
        "http-500",
        "invalid_request_error",
        "malformed-response",
    ]
    assert [text for error in failures for text in seen_in(error) if leaks(text, KEY)] == []


def test_a_failed_call_stores_no_part_of_the_key_in_its_trace(tmp_path, make_adapter, model_server):
    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)
    model_server.enqueue(RawReply(401, echoing_body(170), content_type="text/plain"))
    reply = Agent(store, traces, make_adapter(), session="leaky").say("hello")
    assert reply.error is not None and reply.error.status == 401
    record = traces.get(reply.call_ids[-1])
    assert record.error is not None and record.attempts[0].status == 401
    stored = [record.to_json(), repr(record), str(reply.error), repr(reply.to_json())]
    assert [text for text in stored if leaks(text, KEY)] == []


def test_base_url_credentials_never_appear_in_messages_or_reprs(make_adapter, model_server):
    host = model_server.base_url.split("://", 1)[1]
    base_url = f"http://gateway:{PASSWORD}@{host}"
    model_server.enqueue(
        DropConnection(),
        RawReply(502, f"upstream {base_url} said no; auth {PASSWORD[:12]}".encode()),
    )
    adapter = make_adapter(base_url=base_url, max_retries=0)
    failures = []
    for _ in range(2):
        with pytest.raises(ModelCallFailed) as failure:
            adapter.send(REQUEST, expected_sha256=None)
        failures.append(failure.value)
    assert [f.error_type for f in failures] == ["connection", "http-502"]
    assert "[credentials]@" in str(failures[0])  # the message still says where it tried
    seen = [repr(adapter), adapter.base_url] + [t for f in failures for t in seen_in(f)]
    assert [text for text in seen if leaks(text, PASSWORD) or "gateway:" in text] == []


def _error_body(error: object) -> bytes:
    return canonical_json({"type": "error", "error": error})


# What a server may put where: the key in the type, in a nested message, its tail, a middle part.
ERROR_BODIES = {
    "type": {"type": f"invalid_key {KEY}", "message": "no"},
    "type tail": {"type": f"key_…{KEY[-12:]}", "message": "no"},
    "message tail": {"type": "authentication_error", "message": f"key …{KEY[-9:]} refused"},
    "message middle": {"type": "authentication_error", "message": f"saw {KEY[20:31]}"},
    "nested message": {"type": "authentication_error", "message": {"detail": [KEY, KEY[-10:]]}},
}


@pytest.mark.parametrize("where", sorted(ERROR_BODIES))
def test_no_part_of_the_key_in_any_field_of_an_error_reaches_the_failure_or_the_trace(
    where, tmp_path, make_adapter, model_server
):
    store = open_store(tmp_path / "store")
    traces = LmdbTraceStore(store)
    model_server.enqueue(RawReply(401, _error_body(ERROR_BODIES[where])))
    with pytest.raises(ModelCallFailed) as failure:
        make_adapter().send(REQUEST, expected_sha256=None)
    texts = [*seen_in(failure.value), failure.value.error_type]
    texts += [attempt.error_type or "" for attempt in failure.value.attempts]
    model_server.enqueue(RawReply(401, _error_body(ERROR_BODIES[where])))
    reply = Agent(store, traces, make_adapter(), session="leaky").say("hello")
    record = traces.get(reply.call_ids[-1])
    texts += [canonical_json(record.to_json()).decode(), repr(record), repr(reply.to_json())]
    assert failure.value.status == 401 and "[api key]" in str(failure.value)
    assert [text for text in texts if leaks(text, KEY)] == []
