"""A PostgreSQL store that is down: the web app answers with its 503 page (the host it tried and
what to check), never a traceback, and never the URL's password."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from django.test import Client

from llm386web import store_access

PASSWORD = "hunter2-secret"


def test_a_database_that_is_down_gives_the_503_page(
    client: Client, user: Any, web_home: Path, settings: Any
) -> None:
    with socket.socket() as sock:  # bound then released: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.LLM386 = {**settings.LLM386,
                       "STORE_PATH": f"postgresql://alice:{PASSWORD}@127.0.0.1:{port}/llm386"}  # fmt: skip
    store_access.reset_stores()
    client.force_login(user)
    for url in ("/sessions/", "/sessions/any/", "/search/?q=x"):
        response = client.get(url)
        assert response.status_code == 503, url
        page = response.content.decode()
        assert "The store is unavailable" in page and f"127.0.0.1:{port}" in page
        assert "pg_isready" in page
        assert PASSWORD not in page and "Traceback" not in page
    store_access.reset_stores()
