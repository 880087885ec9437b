"""Shared pytest fixtures. Helpers append fixtures here; keep each one small and documented."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from runtime.storage.kv import Engine
from tests.fakes.anthropic_server import AnthropicServer
from tests.machines import machines  # noqa: F401 - two web app processes on one store
from tests.pg_server import pg_server, pg_url  # noqa: F401 - the real PostgreSQL server fixtures

# Property tests judge correctness, never speed: the machines CI runs on are shared and noisy, so
# no example may fail for taking long (a per-test @settings that lists its own health checks adds
# too_slow to them).
settings.register_profile("llm386", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("llm386")

# Every variable through which the developer's Anthropic set-up could reach the SDK.
ANTHROPIC_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_CONFIG_DIR",
)


@pytest.fixture
def model_server() -> Iterator[AnthropicServer]:
    """A running fake Anthropic Messages API on 127.0.0.1 that records every request."""
    with AnthropicServer(max_lifetime=60.0) as server:
        yield server


@pytest.fixture
def no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Anthropic key, base URL, token or header from the developer's environment reaches a test."""
    for name in ANTHROPIC_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api_key() -> str:
    """The key ``make_adapter``'s adapters send; a module checking key handling overrides it."""
    return "sk-ant-test-0123456789"


@pytest.fixture
def make_adapter(model_server: AnthropicServer, api_key: str) -> Iterator[Callable[..., Any]]:
    """Return make(**options) -> an AnthropicAdapter on ``model_server``, closed after the test.

    Retries back off for milliseconds, not seconds; ``options`` override any argument.
    """
    from runtime.providers import AnthropicAdapter

    made: list[AnthropicAdapter] = []

    def make(**kwargs: Any) -> AnthropicAdapter:
        options = {"api_key": api_key, "base_url": model_server.base_url, "timeout": 5.0,
                   "backoff_seconds": 0.001, "max_backoff_seconds": 0.02, **kwargs}  # fmt: skip
        made.append(AnthropicAdapter(**options))
        return made[-1]

    yield make
    for adapter in made:
        adapter.close()


@pytest.fixture
def stores(store):
    """A fresh block store (``store``: LMDB, or each backend in the modules that run on both)
    and its trace store."""
    from runtime import KvTraceStore

    return store, KvTraceStore(store)


@pytest.fixture
def imported(stores, tmp_path):
    """The last turn of one tau-bench GPT-4o session, imported from its OpenAI-format
    transcript as `make run` loads the demo."""
    import json

    from runtime.transfer.importer import DEMO_DIR, ImportOptions, import_file

    store, traces = stores
    sessions = json.loads((DEMO_DIR / "sessions.json").read_bytes())[:1]
    path = str(tmp_path / "runs.json")
    with open(path, "w") as handle:
        json.dump(sessions, handle)
    report = import_file(store, traces, path, tools_path=DEMO_DIR / "tools.json",
                         options=ImportOptions(prefix="tau"))  # fmt: skip
    (session,) = report.sessions
    return traces.get(traces.turns(session)[-1][1])


@pytest.fixture
def agent_turn(stores, model_server, make_adapter) -> Callable[[str], Any]:
    """Return turn(session) -> the record of a turn the sample agent makes over HTTP in
    ``session``: a tool call (calculator 6*7), then the final answer (the second call)."""
    from runtime.agent.core import Agent
    from tests.fakes.anthropic_server import text_reply, tool_use_reply

    def turn(session: str) -> Any:
        store, traces = stores
        model_server.enqueue(
            tool_use_reply("toolu_1", "calculator", {"expression": "6*7"}, text="Let me compute."),
            text_reply("6 * 7 is 42.", usage=(120, 9, 0, 0)),
        )
        reply = Agent(store, traces, make_adapter(), session=session).say("What is 6 * 7?")
        assert reply.text == "6 * 7 is 42." and len(reply.call_ids) == 2
        return traces.get(reply.call_ids[-1])

    return turn


# The backends the contract suite (tests/runtime/test_store_contract.py) runs on. A backend
# other than "lmdb" names a fixture ``<backend>_url`` that yields the URL of a fresh, empty
# database for one test.
STORE_BACKENDS = ["lmdb", "postgresql"]


@pytest.fixture
def postgresql_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, empty PostgreSQL database on the tests' real server."""
    return str(request.getfixturevalue("pg_url"))


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


#: The runtime test modules whose ``store`` (and ``stores``, ``run``, ``imported``) is each
#: backend in turn: every module whose tests take those fixtures (record, replay, re-page,
#: page and pack, agents, experiments, OTLP, indexes). The others test LMDB itself (files,
#: maps, permissions, migrations of LMDB folders), build stores of their own, or need none.
RUNTIME_BOTH_BACKENDS = frozenset(
    {"test_agent", "test_agent_paging", "test_ann", "test_bm25", "test_bounded_reads",
     "test_count_ahead", "test_dashboard", "test_demand", "test_demo_loaders",
     "test_experiment_views", "test_experiments", "test_lifecycle", "test_openai_render",
     "test_otel_export", "test_otel_ingest", "test_otel_rebuild", "test_otel_receiver",
     "test_packer", "test_packer_tool_ids", "test_pager", "test_reducers", "test_reindex",
     "test_replay", "test_retrievers", "test_store", "test_store_readonly", "test_variance"}
)  # fmt: skip


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    path = str(metafunc.module.__file__)
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    if (
        "/tests/runtime/" in path
        and module in RUNTIME_BOTH_BACKENDS
        and "store_backend" in metafunc.fixturenames
    ):
        metafunc.parametrize("store_backend", ["lmdb", "postgresql"])


@pytest.fixture
def store_backend() -> str:
    """Which engine ``store`` is on: LMDB, or both for the modules in RUNTIME_BOTH_BACKENDS."""
    return "lmdb"


@pytest.fixture
def store(tmp_path, store_backend: str, request: pytest.FixtureRequest):
    """A fresh block store opened through open_store (the session index on): an LMDB folder in
    tmp_path, or a fresh PostgreSQL database (``store_backend``)."""
    from runtime import open_store

    where = (
        request.getfixturevalue("pg_url") if store_backend == "postgresql" else tmp_path / "store"
    )
    s = open_store(where)
    yield s
    s.close()


@pytest.fixture
def run(
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    store_backend: str,
    request: pytest.FixtureRequest,
) -> Any:
    """Return run(*args) -> (exit code, stdout, stderr) of ``llm386 --store <tmp store> *args``
    (the ``store`` fixture's: the LMDB folder in tmp_path, or its PostgreSQL database).

    It runs in tmp_path, so no ./llm386.toml of the developer's is read.
    """
    from runtime.cli import main

    monkeypatch.chdir(tmp_path)
    store = str(
        request.getfixturevalue("pg_url") if store_backend == "postgresql" else tmp_path / "store"
    )

    def _run(*args: str) -> tuple[int, str, str]:
        code = main(["--store", store, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


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


@pytest.fixture
def otlp_receiver(tmp_path: Any) -> Iterator[Any]:
    """A real OTLP/HTTP receiver (the capture proxy's port) over a fresh store of its own.

    Yields a namespace: ``url`` (its /v1/traces), ``headers`` (a valid bearer token),
    ``store`` and ``traces``.
    """
    from functools import partial
    from types import SimpleNamespace

    from runtime import open_store
    from runtime.otel import receiver, tokens
    from runtime.proxy import ProxySettings, ProxyThread, Recorder
    from runtime.storage.tracestore import KvTraceStore

    store = open_store(tmp_path / "receiver-store")
    traces = KvTraceStore(store)
    token = tokens.create_token(store.kv, "tests")
    recorder = Recorder(store, traces).start()
    handler = partial(receiver.handle, store=store, traces=traces)
    try:
        with ProxyThread(ProxySettings(port=0), recorder, otlp=handler) as proxy:
            yield SimpleNamespace(url=proxy.base_url + receiver.PATH, store=store, traces=traces,
                                  headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    finally:
        recorder.close()
