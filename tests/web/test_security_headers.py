"""Security headers on every response, and pages that hold under the CSP (no inline code)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class InlineCodeFinder(HTMLParser):
    """Collect what a strict CSP would block: inline scripts, style attributes, on* handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.htmx_config: str | None = None
        self._in_script_without_src = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self._in_script_without_src = True
        if tag == "style":
            self.problems.append("<style> element")
        for name, _ in attrs:
            if name == "style" or name.startswith("on") or name.startswith("hx-on"):
                self.problems.append(f"{name}= on <{tag}>")
        if tag == "meta" and names.get("name") == "htmx-config":
            self.htmx_config = names.get("content")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script_without_src = False

    def handle_data(self, data: str) -> None:
        if self._in_script_without_src and data.strip():
            self.problems.append("inline <script>")


def _inline_code(html: bytes) -> InlineCodeFinder:
    finder = InlineCodeFinder()
    finder.feed(html.decode())
    return finder


@pytest.mark.parametrize("path", ["/sessions/", "/sessions/s1/", "/no-such-page/"])
def test_pages_send_the_security_headers(logged_in: Client, put_session: Any, path: str) -> None:
    put_session("s1", ["hello", "hi"])
    response = logged_in.get(path)
    assert response["Content-Security-Policy"] == EXPECTED_CSP
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"


def test_login_page_sends_the_csp_too(client: Client) -> None:
    assert client.get("/login/")["Content-Security-Policy"] == EXPECTED_CSP


def test_pages_hold_no_inline_script_or_style(logged_in: Client, put_session: Any) -> None:
    ids = put_session("s1", ["hello", "hi"])
    for path in ("/sessions/", "/sessions/s1/", f"/blocks/{ids[0]}/", "/no-such-page/"):
        finder = _inline_code(logged_in.get(path).content)
        assert finder.problems == [], path


def test_htmx_is_configured_to_run_under_the_csp(logged_in: Client) -> None:
    finder = _inline_code(logged_in.get("/sessions/").content)
    assert finder.htmx_config is not None
    config = json.loads(finder.htmx_config)
    assert config["includeIndicatorStyles"] is False
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
    assert {"code": "422", "swap": True} in config["responseHandling"]


def test_pages_load_htmx_and_app_js_from_own_origin(logged_in: Client) -> None:
    html = logged_in.get("/sessions/").content.decode()
    sources = re.findall(r'<script src="([^"]+)"', html)
    assert any(src.endswith("django_htmx/htmx-2.min.js") for src in sources)
    assert any(src.endswith("llm386web/js/app.js") for src in sources)
    assert all(src.startswith("/static/") for src in sources)
