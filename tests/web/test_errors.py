"""One place renders every error: 400, 403, 404 with what was not found, 500, and 503 store."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.test import Client
from django.urls import path

from llm386web import store_access, urls
from llm386web.views import errors

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/sessions/no-such-session/", b"no session &#x27;no-such-session&#x27;"),
        ("/blocks/" + "ab" * 32 + "/", b"no block abababababab"),
        ("/blocks/not-hex/", b"expected 4-64 hex characters"),
        ("/sessions/-bad/", b"is not valid"),
        ("/no/such/page/", b"There is no page at /no/such/page/."),
    ],
    ids=["unknown session", "unknown block", "malformed block id", "malformed session id",
         "unknown url"],
)  # fmt: skip
def test_a_missing_or_malformed_thing_gives_a_404_page_saying_what(
    logged_in: Client, url: str, message: bytes
) -> None:
    response = logged_in.get(url)
    assert response.status_code == 404
    assert message in response.content
    assert b"<html" in response.content


def test_htmx_404_is_a_fragment_with_the_message(logged_in: Client) -> None:
    response = logged_in.get("/sessions/nobody/", headers={"HX-Request": "true"})
    assert response.status_code == 404
    assert b"<html" not in response.content
    assert b"data-error-message" in response.content
    assert b"no session &#x27;nobody&#x27;" in response.content


@pytest.mark.parametrize("query", ["offset=-1", "offset=x", "limit=0", "limit=100000"])
def test_bad_paging_parameters_give_400_saying_which(logged_in: Client, query: str) -> None:
    response = logged_in.get(f"/sessions/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0].encode() in response.content
    assert b"is not a whole number" in response.content


@pytest.fixture
def serve_store_at(client: Client, user: Any, settings: Any) -> Any:
    """Return serve(path): point the app at ``path`` as its store (opened afresh on the next
    request) and log ``client`` in."""

    def serve(path: Path) -> None:
        settings.LLM386 = {**settings.LLM386, "STORE_PATH": str(path)}
        store_access.reset_stores()
        client.force_login(user)

    return serve


@pytest.fixture
def serve_file_at(web_home: Path, serve_store_at: Any) -> Any:
    """Return serve(name, text): write a file in ``web_home`` and point the app at it."""

    def serve(name: str, text: str) -> Path:
        path = web_home / name
        path.write_text(text)
        serve_store_at(path)
        return path

    return serve


def test_a_store_path_that_is_a_file_gives_503_saying_why(
    client: Client, serve_file_at: Any
) -> None:
    not_a_store = serve_file_at("notes.txt", "my notes")
    response = client.get("/sessions/")
    assert response.status_code == 503
    assert b"The store is unavailable" in response.content
    assert b"is a file, not a store folder" in response.content
    assert b"LLM386_STORE" in response.content
    assert not_a_store.read_text() == "my notes"


def test_a_folder_of_other_files_is_refused_not_overwritten(
    client: Client, web_home: Path, serve_store_at: Any
) -> None:
    folder = web_home / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"\xff\xd8")
    serve_store_at(folder)
    response = client.get("/sessions/no-matter/")
    assert response.status_code == 503
    assert b"other files in it but no store" in response.content
    assert sorted(p.name for p in folder.iterdir()) == ["cat.jpg"]


def test_the_store_is_retried_after_the_path_is_fixed(client: Client, serve_file_at: Any) -> None:
    target = serve_file_at("later", "in the way")
    assert client.get("/sessions/").status_code == 503
    target.unlink()
    assert client.get("/sessions/").status_code == 200
    store_access.reset_stores()


def _boom(request: Any) -> Any:
    raise RuntimeError("secret internal detail")


def test_a_bug_gives_the_500_page_without_details(logged_in: Client, settings: Any) -> None:
    boom_urls = ModuleType("boom_urls")  # a module object: the URL resolver cache hashes it
    boom_urls.urlpatterns = [*urls.urlpatterns, path("boom/", _boom)]  # type: ignore[attr-defined]
    boom_urls.handler500 = errors.server_error  # type: ignore[attr-defined]
    settings.ROOT_URLCONF = boom_urls
    logged_in.raise_request_exception = False
    response = logged_in.get("/boom/")
    assert response.status_code == 500
    assert b"Something went wrong" in response.content
    assert b"secret internal detail" not in response.content


def test_a_store_url_that_cannot_be_opened_gives_503_without_its_password(
    client: Client, user: Any, settings: Any
) -> None:
    settings.LLM386 = {**settings.LLM386, "STORE_PATH": "mysql://ann:hunter2@db.example/llm"}
    store_access.reset_stores()
    client.force_login(user)
    response = client.get("/sessions/")
    assert response.status_code == 503
    assert b"is not a store scheme" in response.content
    assert b"ann:***@db.example" in response.content and b"hunter2" not in response.content
    store_access.reset_stores()
