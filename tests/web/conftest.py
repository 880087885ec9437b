"""Fixtures for the web tests: a real store the app is pointed at, LMDB in tmp_path, and for the
modules in BOTH_BACKENDS also a fresh PostgreSQL database (each of their tests runs on both)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from llm386web import store_access
from runtime import BlockStore, EdgeKind, NewBlock
from runtime.blocks import BlockKind
from runtime.tracing.records import TraceRecord, TraceStore

from .tracefactory import Session, write_session

HOSTILE_BODIES = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click me</a>',
)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness buys nothing in tests; login still checks a real hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    # The cache holds failed log-in counts: one test's failures must not lock out the next.
    cache.clear()
    yield
    cache.clear()


#: The web tests that run on PostgreSQL too: the pages a team reads every day. The other modules
#: test the app around the store (log-in, headers, settings, replay jobs) and run on LMDB only,
#: keeping `make test` well inside its time budget.
BOTH_BACKENDS = frozenset(
    {"test_sessions", "test_turns", "test_blocks", "test_compare", "test_pagination",
     "test_paging_pages", "test_escaping", "test_otel", "test_content_views", "test_dashboard",
     "test_experiments_web", "test_picker", "test_playground_web", "test_replay",
     "test_replay_progress", "test_fidelity", "test_saved_views", "test_session_export",
     "test_session_filters", "test_session_previews", "test_triage", "test_roles",
     "test_proxy_paging_page"}
)  # fmt: skip


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "store_backend" in metafunc.fixturenames and module in BOTH_BACKENDS:
        metafunc.parametrize("store_backend", ["lmdb", "postgresql"])


@pytest.fixture
def store_backend() -> str:
    """Which engine the app's store is on (both, for the modules in BOTH_BACKENDS)."""
    return "lmdb"


@pytest.fixture
def web_home(settings: Any, tmp_path: Path, store_backend: str, request: Any) -> Path:
    """Point the app at a fresh LLM386 home and store under tmp_path (or a fresh database)."""
    home = tmp_path / "home"
    home.mkdir()
    where = request.getfixturevalue("pg_url") if store_backend == "postgresql" else home / "store"
    settings.LLM386 = {"HOME": str(home), "STORE_PATH": str(where)}
    return home


@pytest.fixture
def store(web_home: Path) -> Iterator[BlockStore]:
    """The store the app serves, opened through the app's own store_access."""
    store_access.reset_stores()
    yield store_access.get_store()
    store_access.reset_stores()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("tester", password="correct horse battery")


@pytest.fixture
def viewer(client: Client, django_user_model: Any, store: BlockStore) -> Client:
    """A client logged in as "vera", who has the viewer role."""
    from llm386web.roles import VIEWER, set_role

    user = django_user_model.objects.create_user("vera", password="correct horse battery")
    set_role(user, VIEWER)
    client.force_login(user)
    return client


@pytest.fixture
def logged_in(client: Client, user: Any, store: BlockStore) -> Client:
    client.force_login(user)
    return client


def _put_session(store: BlockStore, session: str, bodies: list[str], **meta: Any) -> list[str]:
    """Put a conversation of user/assistant turns; return the block ids in order."""
    kinds = (BlockKind.USER_MESSAGE, BlockKind.ASSISTANT_MESSAGE)
    blocks = [
        NewBlock(kinds[i % 2], body, created_at=1_700_000_000_000 + i)
        for i, body in enumerate(bodies)
    ]
    ids = [entry.id for entry in store.put_many(session, blocks)]
    for child, parent in zip(ids[1:], ids, strict=False):
        store.add_edge(child, EdgeKind.PARENT, parent)
    if meta:
        store.set_session_meta(session, **meta)
    return ids


@pytest.fixture
def put_session(store: BlockStore) -> Callable[..., list[str]]:
    """Return put(session, bodies, **meta) -> block ids, writing to the app's store."""
    return lambda session, bodies, **meta: _put_session(store, session, bodies, **meta)


@pytest.fixture
def hostile(store: BlockStore) -> list[str]:
    """A session whose block bodies and meta carry script-injection attempts."""
    return _put_session(
        store, "hostile-1", list(HOSTILE_BODIES), model="<script>alert(2)</script>", reward=0
    )


@pytest.fixture
def traces(store: BlockStore) -> TraceStore:
    """The trace store the app serves (same LMDB environment as ``store``)."""
    return store_access.get_traces()


@pytest.fixture
def traced(store: BlockStore, traces: TraceStore) -> Callable[..., Session]:
    """Return write(name, bodies, **options) -> Session: blocks plus one traced turn per reply."""
    return lambda name, bodies, **options: write_session(store, traces, name, bodies, **options)


@pytest.fixture
def imported_demo(store: BlockStore, traces: TraceStore) -> list[TraceRecord]:
    """Import the shipped demo (OpenAI-format tau-bench runs, prefix "tau"); return the
    records of its first session, tau-task000-trial0, oldest first."""
    from runtime.transfer.importer import DEMO_DIR, ImportOptions, import_file

    import_file(store, traces, DEMO_DIR / "sessions.json", tools_path=DEMO_DIR / "tools.json",
                options=ImportOptions(prefix="tau"))  # fmt: skip
    return traces.list(session="tau-task000-trial0", limit=None, newest_first=False)


ANTHROPIC_KEY = "sk-ant-web-experiments-CANARY-5c1e"


@pytest.fixture
def anthropic_api(settings: Any, web_home: Path, model_server: Any, monkeypatch: Any) -> Any:
    """The app's Anthropic client on the loopback server, with a key in the environment."""
    settings.LLM386 = {**settings.LLM386, "ANTHROPIC_BASE_URL": model_server.base_url,
                       "ANTHROPIC_TIMEOUT_S": 5.0}  # fmt: skip
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    return model_server


@pytest.fixture
def tool_turn(
    store: BlockStore, traces: TraceStore, anthropic_api: Any, make_adapter: Any
) -> TraceRecord:
    """A turn an agent made over HTTP: the answer after a calculator call (a tool pair inside)."""
    from runtime.agent.core import Agent
    from tests.fakes.anthropic_server import text_reply, tool_use_reply

    anthropic_api.enqueue(
        tool_use_reply("toolu_1", "calculator", {"expression": "6*7"}, text="Let me compute."),
        text_reply("6 * 7 is 42.", usage=(120, 9, 0, 0)),
    )
    reply = Agent(store, traces, make_adapter(), session="web-exp").say("What is 6 * 7?")
    return traces.get(reply.call_ids[-1])


OPENAI_KEY = "sk-openai-connect-CANARY-8d41e0"


@pytest.fixture
def openai_api(settings: Any, web_home: Path, monkeypatch: Any) -> Iterator[Any]:
    """The app's OpenAI client on a loopback Chat Completions server, with a key set."""
    from tests.fakes.openai_server import OpenAIServer

    with OpenAIServer() as server:
        settings.LLM386 = {**settings.LLM386, "OPENAI_BASE_URL": server.base_url + "/v1",
                           "OPENAI_TIMEOUT_S": 5.0}  # fmt: skip
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        yield server
