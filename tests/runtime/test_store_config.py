"""``[store] url`` in llm386.toml: a postgresql:// URL selects PostgreSQL, a path stays LMDB, and
$LLM386_STORE wins over the file for the CLI, the web app's settings and the benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.config import configured_store, load_config
from runtime.errors import ConfigError


def _toml(folder: Path, text: str) -> Path:
    path = folder / "llm386.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_store_url_in_the_file_is_the_store(tmp_path) -> None:
    _toml(tmp_path, '[store]\nurl = "postgresql://alice@db.example/llm386"\n')
    assert configured_store({}, tmp_path) == "postgresql://alice@db.example/llm386"


def test_the_environment_wins_over_the_file(tmp_path) -> None:
    _toml(tmp_path, '[store]\nurl = "postgresql://alice@db.example/llm386"\n')
    assert configured_store({"LLM386_STORE": "/srv/store"}, tmp_path) == "/srv/store"


def test_a_relative_path_as_url_is_an_lmdb_folder_next_to_the_file(tmp_path) -> None:
    config = load_config(_toml(tmp_path, '[store]\nurl = "data/store"\n'))
    assert config.store.url == str(tmp_path / "data" / "store")


def test_no_file_and_no_variable_leave_the_default_to_the_caller(tmp_path) -> None:
    assert configured_store({}, tmp_path) is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[store]\nurl = "x"\npath = "y"\n', "store.url and store.path are both set"),
        ('[store]\nurl = "  "\n', "expected a non-empty string"),
        ("[store]\nurl = 5\n", "store.url is 5; expected a string"),
    ],
)
def test_a_wrong_store_url_names_the_key(tmp_path, text, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(_toml(tmp_path, text))


def test_the_cli_opens_the_folder_the_file_names(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("LLM386_STORE", raising=False)
    monkeypatch.delenv("LLM386_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    _toml(tmp_path, '[store]\nurl = "team/store"\n')
    assert main(["init"]) == 0
    assert (tmp_path / "team" / "store" / "data.mdb").exists()


def test_the_cli_opens_the_database_the_file_names(tmp_path, pg_url, monkeypatch, capsys) -> None:
    monkeypatch.delenv("LLM386_STORE", raising=False)
    monkeypatch.delenv("LLM386_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    _toml(tmp_path, f'[store]\nurl = "{pg_url}"\n')
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["--json", "sessions"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert not (tmp_path / "var").exists()  # nothing went to the default LMDB folder
