"""Shared pytest fixtures. Helpers append fixtures here; keep each one small and documented."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_server import AnthropicServer


@pytest.fixture
def model_server() -> Iterator[AnthropicServer]:
    """A running fake Anthropic Messages API on 127.0.0.1 that records every request."""
    with AnthropicServer(max_lifetime=60.0) as server:
        yield server


@pytest.fixture
def no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Anthropic key, base URL or token from the developer's environment reaches a test."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def stores(tmp_path):
    """A fresh LMDB block store in tmp_path and its trace store."""
    from runtime import open_store
    from runtime.storage.lmdb.traces import LmdbTraceStore

    store = open_store(tmp_path / "store")
    return store, LmdbTraceStore(store)


# The backends the contract suite (tests/runtime/test_store_contract.py) runs on. A backend
# other than "lmdb" names a fixture ``<backend>_url`` that yields the URL of a fresh, empty
# database for one test.
STORE_BACKENDS = ["lmdb"]


@pytest.fixture(params=STORE_BACKENDS)
def backend_store(request, tmp_path):
    """A fresh block store on each backend of STORE_BACKENDS, opened through open_store."""
    from runtime.storage import open_store

    if request.param == "lmdb":
        target = tmp_path / "store"
    else:
        target = request.getfixturevalue(f"{request.param}_url")
    store = open_store(target)
    yield store
    store.close()


@pytest.fixture
def store(tmp_path):
    """A fresh LMDB block store in tmp_path, opened through open_store (the session index on)."""
    from runtime import open_store

    s = open_store(tmp_path / "store")
    yield s
    s.close()
