"""Every page needs a login; login and logout work; every POST needs a CSRF token."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path", ["/", "/sessions/", "/sessions/s1/", "/blocks/abcd/", "/search/?q=x"]
)
def test_pages_redirect_anonymous_users_to_login(client: Client, store: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_unknown_urls_give_anonymous_users_a_bare_404(client: Client) -> None:
    # LoginRequiredMiddleware acts on resolved views only; the 404 page shows no navigation.
    response = client.get("/nope/")
    assert response.status_code == 404
    assert b"Log out" not in response.content
    assert b'role="search"' not in response.content


def test_login_page_renders_for_anonymous_users(client: Client) -> None:
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content
    assert b"csrfmiddlewaretoken" in response.content


def test_login_with_the_right_password_lands_on_sessions(
    client: Client, user: Any, store: Any
) -> None:
    response = client.post(
        "/login/", {"username": "tester", "password": "correct horse battery"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/sessions/"
    assert b"Sessions" in response.content


def test_login_with_a_wrong_password_says_so(client: Client, user: Any) -> None:
    response = client.post("/login/", {"username": "tester", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_login_post_without_csrf_token_is_refused(user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "tester", "password": "correct horse battery"})
    assert response.status_code == 403
    assert b"security token was missing or stale" in response.content


def test_logout_post_without_csrf_token_is_refused(user: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/logout/")
    assert response.status_code == 403


def test_logout_ends_the_session(logged_in: Client) -> None:
    assert logged_in.get("/sessions/").status_code == 200
    response = logged_in.post("/logout/")
    assert response.status_code == 302
    assert logged_in.get("/sessions/").status_code == 302


def test_logout_by_get_is_not_allowed(logged_in: Client) -> None:
    assert logged_in.get("/logout/").status_code == 405
