"""A 500 under DEBUG=False is logged to stderr with its traceback, and no secret reaches the log."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from django.test import Client
from django.urls import path

from llm386web import urls
from llm386web.logs import ScrubbingFormatter, scrub
from llm386web.views import errors

pytestmark = pytest.mark.django_db

API_KEY = "sk-ant-api03-" + "k3y" * 12
DB_PASSWORD = "db-pass-" + "w0rd" * 4


def _boom(request: Any) -> Any:
    raise RuntimeError(f"the server said: invalid key {API_KEY}; the db said {DB_PASSWORD}")


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """What the app's own django.request handler writes (its stream swapped for a buffer)."""
    ours = [
        h
        for h in logging.getLogger("django.request").handlers
        if isinstance(h, logging.StreamHandler) and isinstance(h.formatter, ScrubbingFormatter)
    ]
    assert ours, "django.request has no handler of its own: 500s would go nowhere"
    buffer = io.StringIO()
    previous = [h.setStream(buffer) for h in ours]
    yield buffer
    for handler, stream in zip(ours, previous, strict=True):
        if stream is not None:
            handler.setStream(stream)


@pytest.fixture
def boom_client(logged_in: Client, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Client:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    settings.DEBUG = False
    # SQLite ignores a password; one set here stands for a server database's.
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", DB_PASSWORD)
    boom_urls = ModuleType("boom_urls")  # a module object: the URL resolver cache hashes it
    boom_urls.urlpatterns = [*urls.urlpatterns, path("boom/", _boom)]  # type: ignore[attr-defined]
    boom_urls.handler500 = errors.server_error  # type: ignore[attr-defined]
    settings.ROOT_URLCONF = boom_urls
    logged_in.raise_request_exception = False
    return logged_in


def test_a_500_without_debug_is_logged_with_its_traceback(
    boom_client: Client, server_log: io.StringIO
) -> None:
    assert boom_client.get("/boom/").status_code == 500
    logged = server_log.getvalue()
    assert "Internal Server Error: /boom/" in logged
    assert "Traceback (most recent call last)" in logged
    assert "RuntimeError: the server said: invalid key" in logged


def test_the_logged_traceback_holds_no_secret(
    boom_client: Client, server_log: io.StringIO, settings: Any
) -> None:
    boom_client.get("/boom/")
    logged = server_log.getvalue()
    assert "RuntimeError" in logged
    assert API_KEY not in logged
    assert API_KEY[:20] not in logged
    assert DB_PASSWORD not in logged


def test_scrub_masks_the_secret_key_and_base_url_credentials(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://gateway-user:gateway-p%40ss@example.test/")
    text = scrub(f"key={settings.SECRET_KEY} url password gateway-p@ss and gateway-p%40ss")
    assert settings.SECRET_KEY not in text
    assert "gateway-p@ss" not in text
    assert "gateway-p%40ss" not in text
    assert text.count("[secret]") == 3
