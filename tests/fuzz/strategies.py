"""Hypothesis strategies for hostile outside data: valid documents with hostile parts.

Each document starts from a valid one (so the fuzzer reaches the deep checks, not only the
first parse) and then has values replaced, keys added or deleted, and sometimes its bytes cut
or corrupted. Hostile values are written as raw JSON text, because Python's own encoder cannot
write most of them: nesting 100,000 deep, 5,000-digit integers, NaN, 1e999, lone surrogates.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from runtime.blocks import BlockKind, content_hash
from runtime.errors import Llm386Error
from runtime.tracing.records import prompt_hash


@dataclass(frozen=True)
class Raw:
    """JSON text written as is."""

    text: str


def dump(value: Any) -> str:
    """Write ``value`` as JSON, ``Raw`` parts as they are (trees here are shallow)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


def _deep(n: int, kind: str) -> Raw:
    if kind == "array":
        return Raw("[" * n + "]" * n)
    if kind == "object":
        return Raw('{"a":' * n + "1" + "}" * n)
    return Raw('[{"content":' * n + '"x"' + "}]" * n)


deep = st.builds(
    _deep,
    st.sampled_from([65, 1_001, 5_000, 100_000]),
    st.sampled_from(["array", "object", "mixed"]),
)
huge_int = st.builds(
    lambda n, sign: Raw(sign + "9" * n), st.sampled_from([20, 400, 1_001, 4_301, 6_000]),
    st.sampled_from(["", "-"]),
)  # fmt: skip
not_finite = st.sampled_from(
    [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e999"), Raw("-1e400"),
     Raw("1" * 400 + ".5")]
)  # fmt: skip
surrogate = st.sampled_from(
    [Raw('"\\ud800"'), Raw('"ok \\udfff"'), Raw('"\\ud83d x"'), Raw('"\\udc00\\ud800"')]
)
plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
# Plain values (wrong types, odd strings) most often: hostile text is cheap to refuse early.
hostile = st.one_of(plain, plain, plain, deep, huge_int, not_finite, surrogate)
KEYS = st.sampled_from(
    ["role", "content", "tool_calls", "tool_call_id", "id", "function", "name", "arguments",
     "traj", "messages", "session", "task_id", "trial", "reward", "info", "model", "type",
     "text", "input", "usage", "input_tokens", "stop_reason", "seq", "block", "priority",
     "created_at", "provenance", "parents", "labels", "record", "request", "response", "flag",
     "sha256", "size", "base64", "kind", "body", "from", "to", "counts", "meta", "turn",
     "started_at", "call_id", "prompt_hash", "status", "upto_seq", "attempts", "error"]
) | st.text(max_size=6)  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """Return ``value`` with one place changed: replaced, deleted, added to, or descended into."""
    action = draw(st.sampled_from(["descend", "descend", "replace", "delete", "add"]))
    if action == "replace" or not isinstance(value, dict | list) or not value or depth > 8:
        return draw(hostile)
    if isinstance(value, dict):
        out = dict(value)
        key = draw(st.sampled_from(list(value)))
        if action == "delete":
            del out[key]
        elif action == "add":
            out[draw(KEYS)] = draw(hostile)
        else:
            out[key] = draw(mutated(value[key], depth + 1))
        return out
    items = list(value)
    index = draw(st.integers(0, len(items) - 1))
    if action == "delete":
        del items[index]
    elif action == "add":
        items.insert(index, draw(hostile))
    else:
        items[index] = draw(mutated(items[index], depth + 1))
    return items


@st.composite
def mutations(draw: st.DrawFn, value: Any) -> Any:
    """Return ``value`` with one to three places changed."""
    for _ in range(draw(st.integers(1, 3))):
        value = draw(mutated(value))
    return value


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """Return ``data`` mostly as it is, sometimes cut, with bytes inserted or overwritten."""
    action = draw(st.sampled_from(["keep"] * 6 + ["cut", "insert", "overwrite"]))
    if action == "keep" or not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if action == "cut":
        return data[:at]
    junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\n", b"[", b'"']))
    if action == "insert":
        return data[:at] + junk + data[at:]
    return data[:at] + junk + data[at + len(junk) :]


def message(role: str, content: str | None, **extra: Any) -> dict[str, Any]:
    return {"role": role, "content": content, **extra}


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def base_sessions(tag: str) -> list[dict[str, Any]]:
    """Two valid tau-bench-shaped sessions; ``tag`` keeps their ids apart from other files."""
    first = [
        message("system", "You are an airline agent."),
        message("user", "Change my flight, please."),
        message("assistant", None, tool_calls=[_call("c1", "get_user", '{"user_id": "u1"}')]),
        message("tool", '{"name": "Ann", "flights": [1, 2.5, null]}', tool_call_id="c1"),
        message("assistant", "Done: flight 2 is yours."),
    ]
    second = [message("user", "hi ✈"), message("assistant", "Hello!")]
    return [
        {"task_id": 1, "trial": 0, "reward": 1.0, "info": {"tag": tag}, "traj": first},
        {"session": f"{tag}-second", "reward": 0, "messages": second, "model": "gpt-4o"},
    ]


@st.composite
def transcript_files(draw: st.DrawFn, tag: str) -> bytes:
    """A transcript file (JSON array or JSON Lines) of hostile variants of the base sessions."""
    sessions = draw(mutations(base_sessions(tag)))
    if draw(st.booleans()) and isinstance(sessions, list):
        text = "\n".join(dump(item) for item in sessions) + "\n"
    else:
        text = dump(sessions)
    return draw(damaged(text.encode("utf-8", "surrogatepass")))


def base_response() -> dict[str, Any]:
    """A valid Messages API reply with text and a tool call."""
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "hi"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, {"b": 2}]}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 0},
    }  # fmt: skip


@st.composite
def response_bodies(draw: st.DrawFn) -> bytes:
    return draw(damaged(dump(draw(mutations(base_response()))).encode("utf-8", "surrogatepass")))


def _fix_hashes(item: Any) -> Any:
    """Make a mutated export line's own hashes right again, so checks past them are reached."""
    if not isinstance(item, dict):
        return item
    item = copy.deepcopy(item)  # drawn values are shared: never change them in place
    if item.get("type") == "block" and isinstance(item.get("body"), str):
        with contextlib.suppress(Llm386Error, UnicodeEncodeError, TypeError):
            item["id"] = content_hash(BlockKind.parse(item.get("kind", "")), item["body"])
    request = item.get("request")
    if (
        item.get("type") == "trace"
        and isinstance(request, dict)
        and isinstance(request.get("text"), str)
    ):
        try:
            data = request["text"].encode()
        except UnicodeEncodeError:
            return item
        request["sha256"] = prompt_hash(data)
        if isinstance(item.get("record"), dict):
            item["record"]["prompt_hash"] = prompt_hash(data)
            item["record"]["request_size"] = len(data)
    return item


@st.composite
def export_files(draw: st.DrawFn, lines: list[bytes]) -> bytes:
    """A session export with one or two lines made hostile, its footer digest usually redone."""
    items = [json.loads(line) for line in lines[:-1]]  # mutated as values, never re-parsed
    changed = set()
    for _ in range(draw(st.integers(1, 2))):
        n = draw(st.integers(0, len(items) - 1))
        items[n] = draw(mutations(items[n]))
        if draw(st.booleans()):
            items[n] = _fix_hashes(items[n])
        changed.add(n)
    out = [
        dump(item).encode("utf-8", "surrogatepass") + b"\n" if n in changed else lines[n]
        for n, item in enumerate(items)
    ]
    body = b"".join(out)
    if draw(st.integers(0, 9)) > 0:
        footer = {"type": "footer", "sha256": hashlib.sha256(body).hexdigest()}
        out.append(dump(footer).encode() + b"\n")
    else:
        out.append(lines[-1])
    return draw(damaged(b"".join(out)))


# -- llm386.toml ------------------------------------------------------------------------------

TOML_SECTIONS = ["budgets", "retrievers.recency", "retrievers.bm25", "retrievers.embedding",
                 "retrievers.pinned", "store", "anthropic", 'models."claude-haiku-4-5"',
                 "models.mine", "extras"]  # fmt: skip
TOML_KEYS = ["state", "plan", "recent", "retrieved", "tools", "weight", "mode", "half_life",
             "k1", "b", "dimensions", "path", "max_block_bytes", "timeout_seconds", "max_retries",
             "base_url", "max_context_tokens", "reserved_output_tokens", "provider", "tokenizer",
             "api_key", "x"]  # fmt: skip
toml_value = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(lambda f: {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(f), repr(f))),
    st.sampled_from(["true", "false", '"half-life"', "'linear'", '"http://127.0.0.1:1"', '""',
                     '"\\ud800"', '"\\u0000"', "1979-05-27T07:32:00Z", "0x7fffffff", "1_000",
                     "9" * 5000, "[" * 5000 + "]" * 5000, "{a = " * 400 + "1" + "}" * 400,
                     "[1, [2, [3]]]", "{x = 1}", '"""\n[[[[\n"""']),
    st.text(max_size=12).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
)  # fmt: skip


@st.composite
def toml_files(draw: st.DrawFn) -> bytes:
    """An llm386.toml of known (and unknown) sections and keys with hostile values."""
    lines = []
    for section in draw(st.lists(st.sampled_from(TOML_SECTIONS), max_size=4)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(TOML_KEYS), max_size=4, unique=True)):
            lines.append(f"{key} = {draw(toml_value)}")
    if draw(st.integers(0, 9)) == 0:
        lines.append(draw(st.text(max_size=30)))  # a line of anything
    return draw(damaged("\n".join(lines).encode("utf-8", "surrogatepass")))
