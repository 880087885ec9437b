"""Opening a store by path or URL (runtime.storage.open_store), as the CLI and web app do."""

from __future__ import annotations

import sys

import pytest

from runtime import NewBlock
from runtime.cli import main
from runtime.errors import StoreError
from runtime.indexes.snapshot import index_for
from runtime.storage import open_store
from runtime.storage.lmdb.store import LmdbStore
from runtime.storage.open import is_store_url, safe_location


def test_a_path_a_string_and_lmdb_or_file_urls_open_the_same_lmdb_store(tmp_path):
    folder = tmp_path / "store"
    open_store(folder).put("s", NewBlock("fact", "here"))
    for target in (str(folder), f"lmdb://{folder}", f"file://{folder}", f"lmdb:{folder}"):
        store = open_store(target)
        assert isinstance(store, LmdbStore) and store.session_count() == 1


def test_a_path_with_a_colon_stays_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_store_url("team:store")
    store = open_store("team:store")
    assert (tmp_path / "team:store" / "data.mdb").is_file() and store.session_count() == 0


def test_every_writer_it_opens_has_the_session_index_attached(tmp_path):
    store = open_store(tmp_path / "store")
    assert store._feeds == [index_for(store)]
    bare = LmdbStore(tmp_path / "bare")  # constructed directly: no index until asked
    assert bare._feeds == []


def test_an_unknown_scheme_is_refused_without_showing_the_password(tmp_path):
    with pytest.raises(StoreError, match="mysql: is not a store scheme") as caught:
        open_store("mysql://ann:hunter2@db.example:3306/llm")
    assert "hunter2" not in str(caught.value) and "ann:***@db.example:3306" in str(caught.value)
    with pytest.raises(StoreError, match="local folder"):
        open_store("lmdb://elsewhere/store")


def test_postgresql_without_its_backend_says_it_is_not_installed(monkeypatch):
    # What an installation without runtime.storage.postgres sees (the module cannot be found).
    monkeypatch.setitem(sys.modules, "runtime.storage.postgres.engine", None)
    with pytest.raises(StoreError, match="PostgreSQL backend is not installed") as caught:
        open_store("postgresql://ann:hunter2@db.example/llm")
    assert "hunter2" not in str(caught.value)


def test_safe_location_hides_only_the_password():
    assert safe_location("postgresql://ann:pw@h:5432/db") == "postgresql://ann:***@h:5432/db"
    assert safe_location("postgres://h/db") == "postgres://h/db"
    assert safe_location("/srv/store") == "/srv/store"


def test_the_cli_takes_a_store_url(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "cli"
    assert main(["--store", f"lmdb://{folder}", "init"]) == 0
    assert str(folder) in capsys.readouterr().out
    monkeypatch.setenv("LLM386_STORE", f"lmdb://{folder}")
    assert main(["sessions"]) == 0
    assert (folder / "data.mdb").is_file()
