"""Failed log-ins are throttled per user name and per address, with a message saying when."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from llm386web import throttle

pytestmark = pytest.mark.django_db

RIGHT = "correct horse battery"


class FakeClock:
    """A clock the test moves by hand: a lockout is waited out without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(throttle, "clock", fake)
    return fake


def _login(client: Client, password: str, username: str = "tester", **extra: Any) -> Any:
    return client.post("/login/", {"username": username, "password": password}, **extra)


def test_thirty_wrong_passwords_lock_out_the_right_one(
    client: Client, user: Any, clock: FakeClock
) -> None:
    for _ in range(30):
        assert _login(client, "wrong").status_code in (200, 429)
    response = _login(client, RIGHT)
    assert response.status_code == 429
    assert b"Too many failed log-ins" in response.content
    assert b"Try again in 30 seconds" in response.content
    assert "_auth_user_id" not in client.session


def test_after_the_window_the_right_password_works_and_resets_the_count(
    client: Client, user: Any, clock: FakeClock
) -> None:
    for _ in range(5):
        assert _login(client, "wrong").status_code == 200
    assert _login(client, RIGHT).status_code == 429
    clock.now += 31
    response = _login(client, RIGHT)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)
    client.logout()
    for _ in range(4):  # the count started again from zero
        assert _login(client, "wrong").status_code == 200
    assert _login(client, RIGHT).status_code == 302


def test_each_failure_after_a_lockout_doubles_it(
    client: Client, user: Any, clock: FakeClock
) -> None:
    for _ in range(5):
        _login(client, "wrong")
    clock.now += 31
    _login(client, "wrong")  # the one check this window allows, wrong again
    response = _login(client, RIGHT)
    assert response.status_code == 429
    assert b"Try again in 60 seconds" in response.content


def test_a_lockout_holds_for_the_user_name_from_another_address(
    client: Client, user: Any, clock: FakeClock
) -> None:
    for i in range(5):
        _login(client, "wrong", REMOTE_ADDR=f"10.0.0.{i}")
    assert _login(client, RIGHT, REMOTE_ADDR="10.0.0.99").status_code == 429
    assert _login(client, RIGHT, username="TESTER", REMOTE_ADDR="10.0.0.98").status_code == 429


def test_a_lockout_holds_for_the_address_across_user_names(
    client: Client, user: Any, django_user_model: Any, clock: FakeClock
) -> None:
    django_user_model.objects.create_user("other", password=RIGHT)
    for i in range(5):
        _login(client, "wrong", username=f"guess{i}")
    response = _login(client, RIGHT, username="other")
    assert response.status_code == 429
    assert b"Try again in" in response.content
