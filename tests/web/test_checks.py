"""System checks report misconfiguration at start-up with an id and a hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core import checks

from llm386web import store_access


def _llm386_ids() -> list[str]:
    return [m.id for m in checks.run_checks(tags=["llm386"]) if m.id]


@pytest.fixture(autouse=True)
def _fresh_stores() -> Any:
    store_access.reset_stores()
    yield
    store_access.reset_stores()


def test_a_healthy_setup_passes_every_check(web_home: Path) -> None:
    assert _llm386_ids() == []


def test_a_store_path_that_is_a_file_is_error_e001(web_home: Path, settings: Any) -> None:
    bad = web_home / "file"
    bad.write_text("x")
    settings.LLM386 = {**settings.LLM386, "STORE_PATH": str(bad)}
    [message] = checks.run_checks(tags=["llm386"])
    assert message.id == "llm386.E001"
    assert "is a file, not a store folder" in message.msg
    assert "LLM386_STORE" in message.hint


def test_a_home_that_is_not_a_folder_is_error_e002(web_home: Path, settings: Any) -> None:
    home_file = web_home / "home-file"
    home_file.write_text("x")
    settings.LLM386 = {**settings.LLM386, "HOME": str(home_file)}
    assert _llm386_ids() == ["llm386.E002"]


def test_unknown_settings_keys_are_error_e003(web_home: Path, settings: Any) -> None:
    settings.LLM386 = {**settings.LLM386, "STORE_PATHH": "/tmp/x"}
    [message] = [m for m in checks.run_checks(tags=["llm386"]) if m.id == "llm386.E003"]
    assert "STORE_PATHH" in message.msg
    assert "STORE_PATH" in message.hint


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("OTLP_WORKERS", "2", "must be a whole number, not '2'"),
        ("OTLP_WORKERS", -1, "must be at least 0 and at most 64, not -1"),
        ("PAGE_SIZE", 0, "must be at least 1"),
        ("REPLAY_TIMEOUT_S", 0, "must be above 0"),
        ("REPLAY_TIMEOUT_S", float("nan"), "must be above 0"),
        ("OTLP_MAX_BODY_BYTES", 10**30, "at most"),
        ("PAGE_SIZE", 10**400, "not a whole number of 1329 bits"),
        pytest.param("PAGE_SIZE", "huge", "not a whole number of 16610 bits", id="5000-digits"),
        ("REPLAY_TIMEOUT_S", float("inf"), "at most 86400, not inf"),
        ("LOGIN_LOCKOUT_S", True, "must be a number of seconds, not True"),
    ],
)
def test_a_numeric_setting_of_the_wrong_type_or_range_is_error_e006(
    web_home: Path, settings: Any, key: str, value: Any, says: str
) -> None:
    if value == "huge":
        value = 10**5000  # more digits than Python prints
    settings.LLM386 = {**settings.LLM386, key: value}
    [message] = checks.run_checks(tags=["llm386"])
    assert message.id == "llm386.E006"
    assert message.msg.startswith(f"LLM386[{key!r}]") and says in message.msg


def test_optional_timeouts_may_be_none(web_home: Path, settings: Any) -> None:
    settings.LLM386 = {**settings.LLM386, "ANTHROPIC_TIMEOUT_S": None, "OPENAI_TIMEOUT_S": 2.5}
    assert _llm386_ids() == []


def test_a_missing_config_file_is_error_e004(web_home: Path, settings: Any) -> None:
    settings.LLM386 = {**settings.LLM386, "CONFIG_PATH": str(web_home / "missing.toml")}
    assert _llm386_ids() == ["llm386.E004"]


def test_a_wrong_config_file_is_error_e005_and_unknown_keys_w001(
    web_home: Path, settings: Any, monkeypatch: Any
) -> None:
    bad = web_home / "llm386.toml"
    bad.write_text('[anthropic]\nbase_url = "ftp://nowhere"\n')
    monkeypatch.setenv("LLM386_CONFIG", str(bad))  # found the way the CLI finds it
    [message] = [m for m in checks.run_checks(tags=["llm386"]) if m.id.startswith("llm386.")]
    assert message.id == "llm386.E005" and "anthropic.base_url" in message.msg
    bad.write_text('[anthropic]\nbase_urll = "http://127.0.0.1:1"\n')
    assert _llm386_ids() == ["llm386.W001"]


def test_llm386_config_naming_a_missing_file_is_e004_not_ignored(
    web_home: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("LLM386_CONFIG", str(web_home / "nope.toml"))
    assert _llm386_ids() == ["llm386.E004"]
