"""Login throttling: failed log-ins counted per user name and per client address.

After ``LOGIN_FAILURES_ALLOWED`` failures a key is locked for ``LOGIN_LOCKOUT_S``; every further
failure (one password check per window) doubles the lockout, up to ``LOGIN_MAX_LOCKOUT_S``.
While either key is locked the password is not checked at all. A successful log-in clears both.

Counts live in Django's default cache (a per-process LocMemCache: ``runserver`` is one process).
Reading and updating a count are two cache calls, so two simultaneous failures may count once;
for a single-user local server that slack is acceptable, and no new dependency is needed.
``clock`` is the module's time source, a seam for tests (a lockout cannot be waited out in them).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.cache import cache

from .conf import web_config

clock: Callable[[], float] = time.time
FORGET_AFTER_S = 24 * 3600  # failures are forgotten a day after the last one
KEY_PREFIX = "llm386:login-failures:"


@dataclass(frozen=True)
class Failures:
    """How often a key failed, and until when (epoch seconds) it is locked."""

    count: int = 0
    locked_until: float = 0.0


def _keys(username: str, address: str) -> tuple[str, str]:
    # Hashed: cache backends restrict key characters; casefolded: 'Tester' is not a new user.
    name = hashlib.sha256(username.strip().casefold().encode()).hexdigest()
    return f"{KEY_PREFIX}user:{name}", f"{KEY_PREFIX}addr:{address}"


def _get(key: str) -> Failures:
    value = cache.get(key)
    return value if isinstance(value, Failures) else Failures()


def locked_for(username: str, address: str) -> float:
    """Return how many seconds log-ins for ``username`` or from ``address`` stay refused."""
    now = clock()
    return max(max(_get(key).locked_until - now, 0.0) for key in _keys(username, address))


def record_failure(username: str, address: str) -> None:
    """Count a failed log-in against the user name and the address; lock them past the limit."""
    config = web_config()
    for key in _keys(username, address):
        count = _get(key).count + 1
        over = count - config.LOGIN_FAILURES_ALLOWED
        locked_until = 0.0
        if over >= 0:
            lockout = min(config.LOGIN_LOCKOUT_S * 2 ** min(over, 64), config.LOGIN_MAX_LOCKOUT_S)
            locked_until = clock() + lockout
        cache.set(key, Failures(count, locked_until), FORGET_AFTER_S)


def record_success(username: str, address: str) -> None:
    """Forget the failures of the user name and the address."""
    cache.delete_many(list(_keys(username, address)))


def lockout_message(seconds: float) -> str:
    """Say that log-ins are refused, for how long and until when."""
    wait = math.ceil(seconds)
    until = datetime.fromtimestamp(clock() + wait, UTC).strftime("%H:%M:%S UTC")
    unit = "second" if wait == 1 else "seconds"
    return (
        f"Too many failed log-ins for this user name or from this address. Try again in "
        f"{wait} {unit} (at {until}). The password was not checked."
    )
