"""Shared pytest fixtures. Helpers append fixtures here; keep each one small and documented."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.storage.kv import Engine
from tests.fakes.anthropic_server import AnthropicServer
from tests.pg_server import pg_server, pg_url  # noqa: F401 - the real PostgreSQL server fixtures


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


@pytest.fixture(params=["lmdb", "postgresql"])
def kv_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A fresh, empty key-value engine of each backend: LMDB in tmp_path, PostgreSQL (pg_url)."""
    if request.param == "lmdb":
        from runtime.storage.lmdb.engine import LmdbEngine

        engine: Engine = LmdbEngine(tmp_path / "kv")
    else:
        from runtime.storage.postgres.engine import PostgresEngine

        engine = PostgresEngine(request.getfixturevalue("pg_url"))
    yield engine
    engine.close()
