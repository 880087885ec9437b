"""Saved views: save a list's query under a name, open it, rename and delete it; per user."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.test import Client

from llm386web.models import SavedView

from .tracefactory import session_links

pytestmark = pytest.mark.django_db


def _save(client: Client, name: str, query: str, page: str = "sessions") -> Any:
    return client.post("/views/save", {"page": page, "name": name, "query": query})


def _bar_links(page: bytes) -> list[tuple[str, str]]:
    bar = page.decode().split('class="saved-view-links"')[1].split("</nav>")[0]
    return [
        (html.unescape(u), n) for u, n in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', bar)
    ]


def test_save_the_current_query_and_open_it_from_the_list(
    logged_in: Client, put_session: Any
) -> None:
    put_session("keep", ["hi"], model="m1")
    put_session("drop", ["hi"], model="m2")
    page = logged_in.get("/sessions/?model=m1&offset=0&sort=session&dir=asc").content.decode()
    # The form posts what is on screen, sorted and without the position.
    assert 'name="query" value="dir=asc&amp;model=m1&amp;sort=session"' in page
    response = _save(logged_in, "only m1", "model=m1&offset=50&sort=session&dir=asc")
    assert response.status_code == 302
    assert response["Location"] == "/sessions/?dir=asc&model=m1&sort=session"
    listed = logged_in.get(response["Location"])
    assert session_links(listed.content) == ["keep"]
    assert "Saved the view" in listed.content.decode()
    assert ("/sessions/?dir=asc&model=m1&sort=session", "only m1") in _bar_links(listed.content)


def test_saving_a_name_again_replaces_its_query(logged_in: Client) -> None:
    _save(logged_in, "mine", "model=a")
    _save(logged_in, "mine", "model=b")
    assert list(SavedView.objects.values_list("name", "query")) == [("mine", "model=b")]


def test_triage_views_are_saved_and_listed_on_the_triage_page_only(logged_in: Client) -> None:
    assert _save(logged_in, "errors", "kind=errored", page="triage").status_code == 302
    assert ("/triage/?kind=errored", "errors") in _bar_links(logged_in.get("/triage/").content)
    assert b"saved-view-links" not in logged_in.get("/sessions/").content


def test_one_user_never_sees_or_changes_anothers_views(
    logged_in: Client, client: Client, django_user_model: Any
) -> None:
    _save(logged_in, "alice's", "model=secret-model")
    view = SavedView.objects.get()
    other = Client()
    other.force_login(django_user_model.objects.create_user("bob", password="x" * 12))
    assert b"secret-model" not in other.get("/sessions/").content
    assert b"secret-model" not in other.get("/views/").content
    assert other.post(f"/views/{view.pk}/rename", {"name": "taken"}).status_code == 404
    assert other.post(f"/views/{view.pk}/delete").status_code == 404
    assert SavedView.objects.get().name == "alice's"
    _save(other, "alice's", "model=bobs")  # the same name is free for another user
    assert SavedView.objects.count() == 2


def test_rename_and_delete(logged_in: Client) -> None:
    _save(logged_in, "old name", "model=a")
    _save(logged_in, "other", "model=b")
    pk = SavedView.objects.get(name="old name").pk
    response = logged_in.post(f"/views/{pk}/rename", {"name": "  new   name "})
    assert response.status_code == 302 and response["Location"] == "/views/"
    assert SavedView.objects.get(pk=pk).name == "new name"
    taken = logged_in.post(f"/views/{pk}/rename", {"name": "other"})
    assert taken.status_code == 400
    assert "already have a sessions view named" in html.unescape(taken.content.decode())
    assert logged_in.post(f"/views/{pk}/delete").status_code == 302
    assert list(SavedView.objects.values_list("name", flat=True)) == ["other"]
    assert logged_in.post(f"/views/{pk}/delete").status_code == 404


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"page": "sessions", "name": "", "query": ""}, "a view's name is 1 to 100 characters"),
        ({"page": "sessions", "name": "x" * 101, "query": ""}, "1 to 100 characters"),
        ({"page": "admin", "name": "x", "query": ""}, "page='admin' is not one of"),
        ({"page": "sessions", "name": "x", "query": "since=nope"}, "cannot be saved: since='nope'"),
        ({"page": "triage", "name": "x", "query": "kind=bogus"}, "kind='bogus' is not one of"),
        ({"page": "sessions", "name": "x", "query": "q=" + "a" * 2000}, "over 2000 characters"),
    ],
)
def test_bad_saves_are_a_400_that_says_why(logged_in: Client, data: Any, says: str) -> None:
    response = logged_in.post("/views/save", data)
    assert response.status_code == 400
    assert says in html.unescape(response.content.decode())
    assert not SavedView.objects.exists()


def test_posts_need_the_csrf_token(user: Any, store: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert _save(client, "x", "model=a").status_code == 403
    page = client.get("/sessions/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    data = {"page": "sessions", "name": "x", "query": "", "csrfmiddlewaretoken": token}
    assert client.post("/views/save", data).status_code == 302
    assert SavedView.objects.count() == 1


def test_a_viewer_can_save_views(viewer: Client) -> None:
    assert _save(viewer, "mine", "status=error").status_code == 302
    assert ("/sessions/?status=error", "mine") in _bar_links(viewer.get("/sessions/").content)


def test_saved_view_names_are_escaped(logged_in: Client) -> None:
    _save(logged_in, "<script>alert(1)</script>", "q=%3Cimg+src%3Dx%3E")
    for url in ("/sessions/", "/views/"):
        page = logged_in.get(url).content
        assert b"<script>alert(1)</script>" not in page and b"<img src=x>" not in page
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in page
