"""Session tags: `llm386 tag`, `llm386 import --tag`, and how the sessions list reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime import NewBlock, open_store
from runtime.errors import InvalidInput
from runtime.inspect.sessionfilter import MetaTerm, has_meta, meta_items, provider_of
from runtime.tags import check_tag, tags_of
from runtime.transfer.importer import DEMO_DIR


def test_tag_adds_removes_and_keeps_tags_sorted_once(run: Any, tmp_path: Path) -> None:
    open_store(tmp_path / "store", create=True).put("s1", NewBlock("user-message", "hi"))
    assert run("tag", "s1", "urgent", "billing", "urgent")[1] == "s1: billing, urgent\n"
    code, out, _ = run("--json", "tag", "s1", "nightly", "--remove", "urgent")
    assert code == 0 and json.loads(out) == {"session": "s1", "tags": ["billing", "nightly"]}
    meta = open_store(tmp_path / "store").session_info("s1").meta
    assert meta["tags"] == ["billing", "nightly"]


def test_tag_refuses_a_bad_tag_or_an_unknown_session(run: Any, tmp_path: Path) -> None:
    open_store(tmp_path / "store", create=True).put("s1", NewBlock("user-message", "hi"))
    code, _, err = run("tag", "s1", "two words")
    assert code == 2 and "tag 'two words' is not valid" in err
    code, _, err = run("tag", "nope", "x")
    assert code == 2 and "no session 'nope'" in err
    assert "tags" not in open_store(tmp_path / "store").session_info("s1").meta


def test_import_tags_each_new_session(run: Any, tmp_path: Path) -> None:
    runs = json.loads((DEMO_DIR / "sessions.json").read_bytes())[:2]
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    (tmp_path / "tools.json").write_bytes((DEMO_DIR / "tools.json").read_bytes())
    code, _, err = run("import", str(tmp_path / "runs.json"), "--tag", "tau", "--tag", "demo")
    assert code == 0, err
    store = open_store(tmp_path / "store")
    assert [tags_of(info.meta) for info in store.sessions(0, 10)] == [("demo", "tau")] * 2
    assert run("import", str(tmp_path / "runs.json"), "--tag", "bad tag")[0] == 2


@pytest.mark.parametrize("tag", ["", "-lead", "a b", "x" * 65, "<b>"])
def test_check_tag_refuses(tag: str) -> None:
    with pytest.raises(InvalidInput, match="is not valid"):
        check_tag(tag)


def test_tags_of_reads_only_a_list_of_strings() -> None:
    assert tags_of({"tags": ["b", "a", "b", 3]}) == ("a", "b")
    assert tags_of({"tags": "a"}) == () and tags_of({}) == ()


def test_meta_terms_match_keys_and_scalar_values() -> None:
    items = meta_items({"task_id": 12, "captured": True, "info": {"x": 1}, "name": "n"})
    assert has_meta(items, [MetaTerm.parse("task_id=12"), MetaTerm.parse("info")])
    assert has_meta(items, [MetaTerm.parse("captured=true"), MetaTerm.parse("name=n")])
    assert not has_meta(items, [MetaTerm.parse('info={"x": 1}')])  # objects: the key only
    assert not has_meta(items, [MetaTerm.parse("missing")])


def test_provider_comes_from_meta_then_the_catalog() -> None:
    assert provider_of({"provider": "offline"}, "gpt-4o") == "offline"
    assert provider_of({}, "gpt-4o") == "openai"
    assert provider_of({}, "claude-haiku-4-5-20251001") == "anthropic"
    assert provider_of({}, "my-local-model") == ""
