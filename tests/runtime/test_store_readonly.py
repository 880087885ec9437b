"""A store that cannot be written is opened read-only: reading commands work, writing ones say so.

Tests run as root, where chmod stops no write, so the refusals are made real ones: a read-only
bind mount in a private mount namespace (``unshare -m``: the mount is seen by that one
subprocess only and vanishes with it), and the CLI run as root without the capabilities that
override file permissions (``setpriv --bounding-set``) on a store whose modes were taken away.
Either is skipped where the machine does not allow it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.transfer.importer import DEMO_DIR

REPO = Path(__file__).resolve().parents[2]
CLI = "import sys; from runtime.cli import main; sys.exit(main(sys.argv[1:]))"
READING = (("session", "tau-0"), ("traces",), ("verify",))
WRITING = (("put", "--session", "tau-0", "--kind", "fact", "new"), ("purge", "tau-0"))


@pytest.fixture
def store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    """A store with one imported tau-bench session (trace tables too), and that session's name."""
    session = json.loads((DEMO_DIR / "sessions.json").read_bytes())[0]
    (tmp_path / "runs.jsonl").write_text(json.dumps(session))
    (tmp_path / "tools.json").write_bytes((DEMO_DIR / "tools.json").read_bytes())
    path = tmp_path / "store"
    assert (
        main(["--store", str(path), "import", str(tmp_path / "runs.jsonl"), "--prefix", "x"]) == 0
    )
    capsys.readouterr()
    assert main(["--store", str(path), "--json", "sessions"]) == 0
    name = json.loads(capsys.readouterr().out)[0]["session"]
    return path, str(name)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}


def _script(store: Path, session: str, commands: tuple[tuple[str, ...], ...]) -> str:
    lines = []
    for command in commands:
        args = " ".join(f"'{a}'" for a in command).replace("tau-0", session)
        lines.append(f"{sys.executable} -c '{CLI}' --store '{store}' {args}; echo \"rc=$?\"")
    return "\n".join(lines)


def _results(output: str) -> list[int]:
    return [int(line[3:]) for line in output.splitlines() if line.startswith("rc=")]


def _in_read_only_mount(store: Path, script: str) -> subprocess.CompletedProcess[str]:
    folder = store.parent
    mount = f"mount --bind '{folder}' '{folder}' && mount -o remount,bind,ro '{folder}'"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"{mount} && ! touch '{folder}/probe' 2>/dev/null"],
        capture_output=True,
    )
    if shutil.which("unshare") is None or probe.returncode != 0:
        pytest.skip("cannot make a read-only mount here (needs unshare and CAP_SYS_ADMIN)")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", f"{mount} && {script}"],
        capture_output=True, text=True, env=_env(), cwd=REPO,
    )  # fmt: skip


def test_reading_commands_work_on_a_read_only_mount(store: tuple[Path, str]) -> None:
    store_path, session = store
    done = _in_read_only_mount(store_path, _script(store_path, session, READING))
    assert _results(done.stdout) == [0] * len(READING), done.stderr
    assert session in done.stdout and "Traceback" not in done.stderr


def test_writing_commands_on_a_read_only_mount_say_the_store_is_read_only(
    store: tuple[Path, str],
) -> None:
    store_path, session = store
    done = _in_read_only_mount(store_path, _script(store_path, session, WRITING))
    assert _results(done.stdout) == [2] * len(WRITING)
    errors = done.stderr.splitlines()
    assert len(errors) == len(WRITING) and "Traceback" not in done.stderr
    assert all("is read-only" in line for line in errors), errors


def _without_root_powers(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as root without the capabilities that override file permissions."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop the permission-override capabilities")
    drop = "--bounding-set=-dac_override,-dac_read_search,-fowner"
    done = subprocess.run(["setpriv", drop, "sh", "-c", script], capture_output=True, text=True,
                          env=_env(), cwd=REPO)  # fmt: skip
    if "setpriv:" in done.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
    return done


def _chmod(store: Path, *, folder: int, data: int, lock: int) -> None:
    (store / "data.mdb").chmod(data)
    (store / "lock.mdb").chmod(lock)
    store.chmod(folder)


def test_a_store_nobody_may_write_is_read_without_its_lock_file(store: tuple[Path, str]) -> None:
    store_path, session = store
    _chmod(store_path, folder=0o555, data=0o444, lock=0o444)
    done = _without_root_powers(_script(store_path, session, READING + WRITING[:1]))
    assert _results(done.stdout) == [0] * len(READING) + [2], done.stderr
    assert "is read-only" in done.stderr and "Traceback" not in done.stderr


def test_a_store_with_a_writable_lock_file_is_read_with_the_lock(store: tuple[Path, str]) -> None:
    store_path, session = store
    _chmod(store_path, folder=0o555, data=0o444, lock=0o644)
    done = _without_root_powers(_script(store_path, session, READING + WRITING[:1]))
    assert _results(done.stdout) == [0] * len(READING) + [2], done.stderr


def test_a_store_someone_may_write_is_not_read_without_a_lock(store: tuple[Path, str]) -> None:
    # data.mdb is writable by its owner, who could be writing it: reading without a reader
    # slot in lock.mdb could see pages the writer reuses, so the open is refused saying why.
    store_path, session = store
    _chmod(store_path, folder=0o555, data=0o644, lock=0o444)
    done = _without_root_powers(_script(store_path, session, READING[:1]))
    assert _results(done.stdout) == [2]
    assert "lock file lock.mdb is not writable for you" in done.stderr
