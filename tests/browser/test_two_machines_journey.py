"""Two people on two machines, one PostgreSQL store, in real Chromium: Alice keeps a session open
while an agent on a third machine adds a turn to it; the turn appears on her page without a reload,
and Bob, on his own web app, finds the same session and opens the same turn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import Page, expect, sync_playwright

from tests.browser.conftest import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.machines import PASSWORD, Machine, run_agent

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def chromium() -> Iterator[Chromium]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (Debian's chromium package)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                     headless=True)  # fmt: skip
        yield browser
        browser.close()


def _log_in(chromium: Chromium, machine: Machine) -> Page:
    """A page of its own (its own cookies) logged in to ``machine``'s web app."""
    machine.log_in()  # waits until the server answers
    page = chromium.new_context(base_url=machine.base).new_page()
    page.set_default_timeout(20_000)
    page.goto("/login/")
    page.fill("input[name=username]", machine.user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/sessions/")
    return page


def test_a_turn_written_on_one_machine_appears_live_on_another(
    machines: tuple[Machine, Machine], chromium: Chromium, tmp_path: Path, pg_url: str
) -> None:
    alice_app, bob_app = machines
    carol = tmp_path / "carol"
    carol.mkdir()
    run_agent(carol, pg_url, "carol-laptop", "What is 1234 * 56?")

    alice = _log_in(chromium, alice_app)
    alice.goto("/sessions/")
    alice.get_by_role("link", name="carol-laptop").first.click()
    alice.wait_for_url("**/sessions/carol-laptop/**")
    turns = alice.locator("#turns-table tbody tr")
    expect(turns.first).to_be_visible()
    before = turns.count()

    run_agent(carol, pg_url, "carol-laptop", "And divided by 8?")  # the same session, later
    expect(turns.nth(before)).to_be_visible(timeout=30_000)  # the page polls: no reload
    after = turns.count()

    bob = _log_in(chromium, bob_app)
    bob.goto("/sessions/")
    expect(bob.get_by_role("link", name="carol-laptop").first).to_be_visible()
    bob.goto(urlsplit(alice.url).path)  # the same page, on Bob's own web app
    expect(bob.locator("#turns-table tbody tr")).to_have_count(after)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    bob.screenshot(path=str(ARTIFACTS / "two-machines-bob.png"), full_page=True)
