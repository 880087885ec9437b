"""Browser fixtures: Debian's Chromium driven by Playwright against a live server and a temp store.

Playwright never downloads a browser here; `make pytest` installs /usr/bin/chromium. Screenshots
go to test-artifacts/browser/ (gitignored) so a journey can be looked at after the run.

Django refuses ORM calls from a thread running an event loop, and Playwright's sync API runs
one, so every database write (the user) happens in fixtures set up before Chromium starts.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Dialog, Page, sync_playwright

from llm386web import store_access
from runtime import BlockStore

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
USERNAME = "admin"
PASSWORD = "browser-journey-password"


@dataclass
class Browser:
    """A Chromium page plus everything it reported that a test may assert on."""

    page: Page
    base_url: str
    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        """Save a screenshot (of the whole page, or of the viewport for a very long page) under
        test-artifacts/browser/ and return its path."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def login(self) -> None:
        self.page.goto("/login/")
        self.page.fill("input[name=username]", USERNAME)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url("**/sessions/")


@pytest.fixture
def browser_store(settings: Any, tmp_path: Path) -> Iterator[BlockStore]:
    """A fresh store under tmp_path that the live server serves."""
    settings.LLM386 = {"HOME": str(tmp_path), "STORE_PATH": str(tmp_path / "store")}
    store_access.reset_stores()
    yield store_access.get_store()
    store_access.reset_stores()


@pytest.fixture
def browser_user(django_user_model: Any, transactional_db: None) -> Any:
    return django_user_model.objects.create_user(USERNAME, password=PASSWORD)


def _record(browser: Browser, page: Page) -> None:
    def on_dialog(dialog: Dialog) -> None:
        browser.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            browser.console.append(message.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: browser.page_errors.append(str(exc)))


def _warm_up(base_url: str) -> None:
    """Answer one request before Chromium starts: the first one imports the URLconf and the
    SDKs behind it, which takes seconds on a loaded machine and would eat a page's timeout."""
    with urllib.request.urlopen(f"{base_url}/login/", timeout=120) as response:
        response.read()


@pytest.fixture
def browser(live_server: Any, browser_user: Any, browser_store: BlockStore) -> Iterator[Browser]:
    """A logged-out Chromium page pointed at the live server."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package)")
    _warm_up(live_server.url)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = chromium.new_context(
            base_url=live_server.url, viewport={"width": 1280, "height": 860}
        )
        page = context.new_page()
        page.set_default_timeout(10_000)
        session = Browser(page, live_server.url)
        _record(session, page)
        yield session
        context.close()
        chromium.close()
