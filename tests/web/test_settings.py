"""Settings plumbing: secrets kept once with mode 0600, LLM386 merged over defaults, loopback."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings

from llm386web.conf import web_config
from llm386web.home import read_or_create_secret
from llm386web.management.commands.runserver import Command as Runserver


def test_a_secret_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "new" / "secret_key"
    first = read_or_create_secret(path)
    assert read_or_create_secret(path) == first
    assert len(first) >= 40
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_different_homes_get_different_secrets(tmp_path: Path) -> None:
    assert read_or_create_secret(tmp_path / "a") != read_or_create_secret(tmp_path / "b")


def test_llm386_settings_merge_over_defaults(settings: Any, tmp_path: Path) -> None:
    settings.LLM386 = {"STORE_PATH": str(tmp_path / "s"), "PAGE_SIZE": 7}
    config = web_config()
    assert (tmp_path / "s").resolve() == config.STORE_PATH
    assert config.PAGE_SIZE == 7
    assert config.MAX_PAGE_SIZE == 500


def test_store_path_follows_llm386_store_env(
    settings: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    settings.LLM386 = {}
    monkeypatch.setenv("LLM386_STORE", str(tmp_path / "elsewhere"))
    assert (tmp_path / "elsewhere").resolve() == web_config().STORE_PATH


def test_defaults_are_safe() -> None:
    assert django_settings.ALLOWED_HOSTS[:2] == ["127.0.0.1", "localhost"]
    assert "django.contrib.auth.middleware.LoginRequiredMiddleware" in django_settings.MIDDLEWARE
    assert Runserver.default_addr == "127.0.0.1"


def test_runserver_serves_static_files_without_debug(settings: Any) -> None:
    from django.contrib.staticfiles.handlers import StaticFilesHandler

    settings.DEBUG = False
    handler = Runserver().get_handler(use_static_handler=True, insecure_serving=False)
    assert isinstance(handler, StaticFilesHandler)


def test_a_store_url_stays_a_url(settings: Any, tmp_path: Path, monkeypatch: Any) -> None:
    settings.LLM386 = {}
    monkeypatch.setenv("LLM386_STORE", "postgresql://ann@db.example:5432/llm386")
    assert web_config().STORE_PATH == "postgresql://ann@db.example:5432/llm386"
    settings.LLM386 = {"STORE_PATH": f"lmdb://{tmp_path}/s"}
    assert f"lmdb://{tmp_path}/s" == web_config().STORE_PATH
