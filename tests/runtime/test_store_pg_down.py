"""PostgreSQL down or unreachable: every entry point (the CLI, the sample agent's chat, the capture
proxy) fails at once with one line naming the host it tried and a hint, never a traceback and
never the password of the URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hunter2-secret"
CLI = "import sys; from runtime.cli import main; sys.exit(main(sys.argv[1:]))"  # as `llm386`


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then released: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def down_url() -> str:
    return f"postgresql://alice:{PASSWORD}@127.0.0.1:{_closed_port()}/llm386"


def _llm386(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM386_", "PG"))}
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], input=stdin, capture_output=True,
        text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("command", "stdin"),
    [
        (["sessions"], ""),
        (["chat", "--offline"], "hello\n"),
        (["proxy", "--port", "0"], ""),
    ],
    ids=["cli", "agent", "proxy"],
)
def test_a_server_that_is_down_is_one_clear_line(down_url, command, stdin) -> None:
    done = _llm386("--store", down_url, *command, stdin=stdin)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llm386: error:"), done.stderr
    assert "127.0.0.1" in lines[0] and "pg_isready" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert PASSWORD not in done.stderr + done.stdout


def test_the_env_var_names_the_same_unreachable_store(down_url) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM386_", "PG"))}
    done = subprocess.run(
        [sys.executable, "-c", CLI, "sessions"], capture_output=True, text=True,
        cwd=ROOT, env={**env, "LLM386_STORE": down_url}, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "127.0.0.1" in done.stderr and PASSWORD not in done.stderr
