"""Machines for the two-machines tests: a web app process with its own home and user database,
and an agent process, both on one shared store (a PostgreSQL URL)."""

from __future__ import annotations

import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "two-machines-pw-1"
CLI = "import sys; from runtime.cli import main; sys.exit(main(sys.argv[1:]))"


def _env(home: Path, store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM386_", "DJANGO_"))}
    return {**env, "LLM386_HOME": str(home), "LLM386_STORE": store, "LLM386_PROGRESS": "off"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Machine:
    """One web app process with its own home (user database) on the shared store."""

    def __init__(self, home: Path, store: str, user: str) -> None:
        home.mkdir()
        self.env, self.port, self.user = _env(home, store), _free_port(), user
        manage = [sys.executable, "manage.py"]
        for args, stdin in ((["migrate", "-v", "0"], ""),
                            (["llm386_user", "add", user, "--role", "operator",
                              "--password-stdin"], PASSWORD + "\n")):  # fmt: skip
            subprocess.run([*manage, *args], cwd=ROOT, env=self.env, input=stdin, text=True,
                           check=True, capture_output=True, timeout=300)  # fmt: skip
        self.proc = subprocess.Popen(
            [*manage, "runserver", "--noreload", f"127.0.0.1:{self.port}"], cwd=ROOT,
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}"
        cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        self.http = urllib.request.build_opener(cookies)

    def get(self, path: str, data: dict[str, str] | None = None) -> tuple[str, str]:
        """Return (final URL, body) of a GET, or of a form POST with ``data``."""
        body = None if data is None else urllib.parse.urlencode(data).encode()
        request = urllib.request.Request(self.base + path, data=body,
                                         headers={"Referer": self.base + path})  # fmt: skip
        with self.http.open(request, timeout=60) as response:
            return response.geturl(), response.read().decode()

    def log_in(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                _, page = self.get("/login/")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.3)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        where, body = self.get("/login/", {"username": self.user, "password": PASSWORD,
                                           "csrfmiddlewaretoken": token.group(1)})  # fmt: skip
        assert "/login/" not in where, body[:500]  # logged in: redirected away from the form

    def sessions(self) -> str:
        where, page = self.get("/sessions/")
        assert where.endswith("/sessions/"), where
        return page

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture
def machines(tmp_path: Path, pg_url: str) -> Iterator[tuple[Machine, Machine]]:
    subprocess.run([sys.executable, "-c", CLI, "migrate"], cwd=ROOT,
                   env=_env(tmp_path, pg_url), check=True, capture_output=True)  # fmt: skip
    pair = (Machine(tmp_path / "alice", pg_url, "alice"), Machine(tmp_path / "bob", pg_url, "bob"))
    try:
        yield pair
    finally:
        for machine in pair:
            machine.stop()


def run_agent(home: Path, store: str, session: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CLI, "chat", "--offline", "--session", session], input=message + "\n",
        cwd=ROOT, env=_env(home, store), text=True, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
