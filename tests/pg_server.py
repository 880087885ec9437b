"""A real PostgreSQL server for the tests: initdb into a temporary folder, pg_ctl start, stop at exit.

No mocks and no stand-in: the tests of the PostgreSQL engine talk to Debian's PostgreSQL
(``/usr/lib/postgresql/15/bin``, or ``LLM386_PG_BIN``). The server listens on a unix socket in
its folder and on a free port of 127.0.0.1 (where password logins are checked, so the tests of
wrong passwords are real). ``pg_url`` gives each test a fresh, empty database.

PostgreSQL refuses to run as root; as root (CI here) the server binaries run as ``nobody`` through
``setpriv``, in a folder that user owns. With the binaries missing the fixtures skip, unless
``LLM386_REQUIRE_PG=1`` (``make test`` and CI set it), where they fail saying how to install them.

The server is stopped when the session ends, and by ``atexit`` if the session dies first; a
server left by a session that was killed outright is stopped by the next session.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

PG_BIN = Path(os.environ.get("LLM386_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "llm386"
#: A role that logs in over TCP with this password (the tests of wrong passwords use it).
PASSWORD_ROLE = "llm386_pw"
PASSWORD = "pw-s3cret-do-not-leak"
_PREFIX = "llm386-pg-"
# Durability is not under test here: a test server that skips fsync starts and writes fast.
FAST = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


def missing_binaries() -> str | None:
    """Say what is missing to run a server, or None when everything is there."""
    absent = [name for name in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / name).exists()]
    if not absent:
        return None
    return (
        f"PostgreSQL server binaries not found in {PG_BIN} ({', '.join(absent)}): install them "
        "with `apt-get install postgresql-15` (`make postgresql` does), or point LLM386_PG_BIN "
        "at a folder that holds initdb, pg_ctl and postgres"
    )


def _unprivileged() -> list[str]:
    """Return the command prefix that runs the server binaries as ``nobody`` when we are root."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    return [
        "setpriv",
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
        "--",
    ]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temporary folder, run by an unprivileged user when we are root."""

    def __init__(self, *, fast: bool = True) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=_PREFIX))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._settings = FAST if fast else ()
        self._names = itertools.count(1)
        self._prefix = _unprivileged()
        if self._prefix:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        (self.root / "owner.pid").write_text(str(os.getpid()))

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._prefix, *args], capture_output=True, text=True, check=False, cwd=self.root
        )

    def _check(self, what: str, done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{what} failed ({done.returncode}): {done.stderr}{done.stdout}{log}"
            )

    def start(self) -> PgServer:
        """Create the cluster and start it; return self."""
        if not self.data.exists():
            self._init()
        for _ in range(3):  # another process may take the free port before the server binds it
            self.port = _free_port()
            options = ["-k", str(self.root), "-p", str(self.port), "-h", "127.0.0.1"]
            options += self._settings
            started = self._run(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                "-t", "60", "-o", " ".join(options), "start",
            )  # fmt: skip
            if started.returncode == 0:
                atexit.register(self.stop, "immediate")
                return self
        self._check("pg_ctl start", started)
        return self

    def _init(self) -> None:
        done = self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-E", "UTF8",
            "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        )  # fmt: skip
        self._check("initdb", done)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: without a clean shutdown) if it runs."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", *, user: str = SUPERUSER) -> str:
        """Return a URL over the unix socket (no password needed)."""
        return f"postgresql://{user}@/{database}?host={quote(str(self.root), safe='')}&port={self.port}"

    def tcp_url(self, database: str, *, user: str = PASSWORD_ROLE, password: str = PASSWORD) -> str:
        """Return a URL over TCP to 127.0.0.1 with a password."""
        return f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement as the superuser, outside a transaction."""
        import psycopg  # tests may use the driver; the product reaches it through the engine

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement.encode())

    def create_database(self) -> str:
        """Create a fresh empty database (owned by the password role too); return its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextmanager
    def outage(self, url: str) -> Iterator[None]:
        """While the block runs, the database of ``url`` takes no new connection and the ones it
        had are ended: what a client sees of a server that is down."""
        name = urlsplit(url).path.lstrip("/")
        self.sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        self.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        try:
            yield
        finally:
            self.sql(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")


def stop_abandoned_servers() -> None:
    """Stop and delete servers left by test sessions that were killed before their atexit ran."""
    for root in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        owner = root / "owner.pid"
        try:
            os.kill(int(owner.read_text()), 0)
            continue  # its session still runs
        except (OSError, ValueError):
            pass
        server = PgServer.__new__(PgServer)
        server.root, server.data = root, root / "data"
        server._prefix = _unprivileged()
        server.remove()


def _unavailable(request: pytest.FixtureRequest) -> None:
    reason = missing_binaries()
    if reason is None:
        return
    if os.environ.get("LLM386_REQUIRE_PG") == "1":
        pytest.fail(f"{reason} (LLM386_REQUIRE_PG=1 asks for the PostgreSQL tests to run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server(request: pytest.FixtureRequest) -> Iterator[PgServer]:
    """A running PostgreSQL server for the whole session (skip or fail without the binaries)."""
    _unavailable(request)
    stop_abandoned_servers()
    server = PgServer().start()
    server.sql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL (over the unix socket) of a fresh empty database, dropped after the test."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)
