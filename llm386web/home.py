"""The web app's home folder ($LLM386_HOME): where it is, and the secrets kept in it.

Owns: resolving LLM386_HOME (default ``<repo>/var``), and files that hold one generated secret
each (the Django secret key, the local admin password). Such a file is created once with mode
0600 and never rewritten, so restarts keep sessions and logins valid. No Django imports: the
settings module uses this before Django is configured.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent


def home_dir() -> Path:
    """Return $LLM386_HOME, or ``<repo>/var`` when it is unset."""
    raw = os.environ.get("LLM386_HOME") or str(REPO_DIR / "var")
    return Path(raw).expanduser().resolve()


def read_or_create_secret(path: Path, *, nbytes: int = 32) -> str:
    """Return the secret stored at ``path``, generating it (mode 0600) on first use."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    # The home folder holds the secret key, the login database and traces: owner only.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    try:
        # O_EXCL: if another process created it between our read and now, use theirs.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return value


def _read_secret(path: Path) -> str:
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise OSError(f"{path} is empty; delete it so a new secret is generated")
    return value
