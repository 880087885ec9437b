"""The web app's store setting: $LLM386_STORE, else ``[store] url`` of llm386.toml."""

from __future__ import annotations

from llm386web import conf


def test_the_web_settings_take_the_files_store(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("LLM386_STORE", raising=False)
    config = tmp_path / "llm386.toml"
    config.write_text('[store]\nurl = "postgresql://a@h/db"\n', encoding="utf-8")
    monkeypatch.setenv("LLM386_CONFIG", str(config))
    assert conf.defaults()["STORE_PATH"] == "postgresql://a@h/db"
    monkeypatch.setenv("LLM386_STORE", str(tmp_path / "s"))
    assert conf.defaults()["STORE_PATH"] == str(tmp_path / "s")
