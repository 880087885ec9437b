"""Static files served by `runserver` carry the same security headers as pages, DEBUG or not."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory

from llm386web.management.commands import runserver

from .test_security_headers import EXPECTED_CSP

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = {
    "Content-Security-Policy": EXPECTED_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@pytest.fixture
def static_handler(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The WSGI handler `llm386web runserver` serves (its store warm-up thread left out)."""
    monkeypatch.setattr(runserver, "warm_up", lambda: None)
    options = {"use_static_handler": True, "insecure_serving": False}
    return runserver.Command().get_handler(**options)


def _get(handler: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    environ = RequestFactory().get(path).environ
    result = handler(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()  # a FileResponse holds the file open until the server closes it
    return seen["status"], seen["headers"], body


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/static/llm386web/css/app.css", "/static/llm386web/js/app.js"])
def test_static_files_carry_the_security_headers(
    static_handler: Any, settings: Any, debug: bool, path: str
) -> None:
    settings.DEBUG = debug
    status, headers, body = _get(static_handler, path)
    assert status == 200 and body
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name


def test_a_missing_static_file_carries_them_too(static_handler: Any, settings: Any) -> None:
    settings.DEBUG = False
    status, headers, _ = _get(static_handler, "/static/llm386web/no-such.css")
    assert status == 404
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name


def test_htmx_itself_is_served_with_nosniff(static_handler: Any, settings: Any) -> None:
    status, headers, _ = _get(static_handler, "/static/django_htmx/htmx-2.min.js")
    assert status == 200
    assert headers["X-Content-Type-Options"] == "nosniff"
