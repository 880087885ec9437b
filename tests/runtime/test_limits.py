"""runtime.limits: outside JSON is refused with its place and advice, never with a traceback."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import limits
from runtime.blocks import Provenance, canonical_json
from runtime.cli import main
from runtime.errors import InvalidBlock, InvalidInput, Llm386Error, NotCanonicalJson
from runtime.limits import InputRejected, Limits
from runtime.transfer.transcripts import read_transcripts

HOSTILE = {
    "deep array": ("[" * 1_000_000 + "]" * 1_000_000, "line 1 column 65", "nested deeper than 64"),
    "deep object": ('{"a":' * 5000 + "1" + "}" * 5000, "line 1 column 321", "nested deeper"),
    "huge integer": ('{"a": [1,\n  ' + "9" * 4301 + "]}", "line 2 column 3", "4,301 digits"),
    "NaN": ('{"a":\n NaN}', "line 2 column 2", "NaN is not a JSON number"),
    "Infinity": ("[-Infinity]", "line 1 column 2", "-Infinity is not a JSON number"),
    "overflow": ("[1, 1e999]", "line 1 column 5", "1e999 is too large"),
    "surrogate": ('{"x": ["ok", "\\ud800"]}', "at $.x[1]", "lone surrogate U+D800"),
    "surrogate key": ('{"\\udc00": 1}', "at $ (a key)", "lone surrogate U+DC00"),
    "bad JSON": ('{"a": }', "line 1 column 7", "invalid JSON"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_json_is_refused_naming_the_place(kind: str) -> None:
    text, place, reason = HOSTILE[kind]
    with pytest.raises(InputRejected) as refused:
        limits.loads(text.encode(), "f.json")
    assert f"f.json {place}" in str(refused.value) or f"f.json {place}:" in str(refused.value)
    assert reason in str(refused.value) and str(refused.value).count(";") >= 1


def test_depth_is_checked_without_recursion_whatever_the_recursion_limit() -> None:
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        with pytest.raises(InputRejected, match="nested deeper than 64"):
            limits.loads("[" * 10_000_000)
    finally:
        sys.setrecursionlimit(old)


def test_invalid_utf8_is_refused_with_line_and_column() -> None:
    with pytest.raises(InputRejected, match=r"f.json line 2 column 4: invalid UTF-8"):
        limits.loads(b'[1,\n  "\xff"]', "f.json")


def test_each_limit_can_be_set_lower() -> None:
    small = Limits(max_bytes=100, max_depth=2, max_int_digits=3, max_string_chars=4, max_items=2)
    cases = {"x" * 101: "101 bytes", "[[[1]]]": "deeper than 2", "[1234]": "4 digits",
             '["abcde"]': "5 characters", "[1,2,3]": "3 items"}  # fmt: skip
    for text, reason in cases.items():
        with pytest.raises(InputRejected, match=reason):
            limits.loads(text, "f", small)
    assert limits.loads('[[12], "abcd"]', "f", small) == [[12], "abcd"]


def test_limits_must_be_positive_integers() -> None:
    with pytest.raises(ValueError, match="max_depth"):
        Limits(max_depth=0)


def test_good_json_parses_exactly_as_json_loads_does() -> None:
    text = '{"a": [1, 2.5, -3e2, null, true, "\\u00e9\\ud83d\\ude00"], "b": {"c": ""}}'
    assert limits.loads(text) == json.loads(text)


def test_transcript_with_a_huge_reward_is_refused_not_overflowed() -> None:
    data = json.dumps([{"reward": 10**400, "messages": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(Llm386Error, match='"reward" is too large'):
        read_transcripts(data.encode(), "t.json")


@pytest.mark.parametrize("kind", ["deep array", "huge integer", "NaN", "surrogate"])
def test_cli_import_of_hostile_json_exits_2_with_one_line(kind, tmp_path, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"messages": ' + HOSTILE[kind][0] + "}]", "utf-8", "surrogatepass")
    assert main(["--store", str(tmp_path / "store"), "import", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("llm386: error: bad.json ")


def test_canonical_json_of_what_has_none_is_a_clear_error_and_still_a_value_error() -> None:
    for value in (float("nan"), 10**5000, "\ud800"):
        with pytest.raises(NotCanonicalJson, match="no canonical JSON"):
            canonical_json(value)
    with pytest.raises(ValueError):
        canonical_json(float("inf"))


def test_provenance_of_the_wrong_shape_is_an_error_not_an_assertion() -> None:
    for data in ({"parents": 3}, {"labels": [1]}, {"source": ["x"]}, []):
        with pytest.raises(InvalidBlock, match="provenance"):
            Provenance.from_json(data)


@dataclass(frozen=True)
class _Row:
    count: int
    ratio: float
    name: str | None = None


def test_check_fields_refuses_wrong_types_and_integers_past_64_bits() -> None:
    limits.check_fields(_Row(1, 2, None), "row")
    for row, field in [(_Row("1", 1.0), "count"), (_Row(True, 1.0), "count"),
                       (_Row(2**63, 1.0), "count"), (_Row(1, float("nan")), "ratio"),
                       (_Row(1, 1.0, 3), "name")]:  # type: ignore[arg-type]  # fmt: skip
        with pytest.raises(InvalidInput, match=f"row: {field} is"):
            limits.check_fields(row, "row")


@pytest.mark.parametrize("arguments", ["[" * 5000 + "]" * 5000, '{"x": NaN}', "9" * 5000])
def test_hostile_tool_call_arguments_are_kept_as_written_not_crashed_on(arguments, tmp_path):
    from runtime import open_store
    from runtime.storage.lmdb.traces import LmdbTraceStore
    from runtime.transfer.importer import import_transcripts

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "content": "ok", "tool_call_id": "c1"}]  # fmt: skip
    store = open_store(tmp_path / "store")
    try:
        data = json.dumps([{"session": "s", "messages": messages}]).encode()
        import_transcripts(store, LmdbTraceStore(store), data, name="t.json")
        bodies = [e.block.body for e in store.entries("s") if e.block.kind.value == "tool-call"]
        assert [json.loads(body)["input"] for body in bodies] == [arguments]
    finally:
        store.close()


_SMALL = Limits(max_depth=4, max_items=3, max_int_digits=5, max_string_chars=6)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**7), 10**7) | st.floats()
    | st.text(st.characters(codec=None, min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_VALUES, st.booleans())
def test_the_quick_pass_of_check_value_agrees_with_the_full_walk(value, finite):
    # ``check_value`` skips its path-building walk when the quick pass finds nothing wrong:
    # sound only if the quick pass passes exactly what the walk passes.
    quick = limits._within
    try:
        limits._within = lambda *_: False  # type: ignore[assignment]  # the walk alone
        limits.check_value(value, "v", _SMALL, finite=finite)
        accepted = True
    except InputRejected:
        accepted = False
    finally:
        limits._within = quick
    assert quick(value, _SMALL, finite) == accepted


@dataclass(frozen=True)
class _Nested:
    rows: tuple[_Row, ...]
    best: _Row | None = None
    either: int | str = 0


def test_check_fields_looks_inside_nested_records_tuples_and_unions() -> None:
    limits.check_fields(_Nested((_Row(1, 2.0),), _Row(3, 4.0), "x"), "nested")
    limits.check_fields(_Nested(()), "nested")
    for nested, why in [(_Nested((_Row("1", 1.0),)), "_Row: count is"),
                        (_Nested((_Row(1, 1.0), 2)), "rows is"),  # type: ignore[arg-type]
                        (_Nested((), _Row(1, 1.0, 3)), "_Row: name is"),  # type: ignore[arg-type]
                        (_Nested((), None, 1.5), "either is"),  # type: ignore[arg-type]
                        (_Nested([]), "rows is")]:  # type: ignore[arg-type]  # fmt: skip
        with pytest.raises(InvalidInput, match=why):
            limits.check_fields(nested, "nested")
