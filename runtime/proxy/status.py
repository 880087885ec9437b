"""The proxy's status as another process reads it: ``GET /llm386/status``, with a short timeout.

Owns: ``ProxyStatus`` (up, calls, recorded, lost, queue, whether recording works, where each
API goes) and ``read_status``, what the web app's "Connect your agent" page shows.

Invariants:
- Reading never raises: a proxy that is down, slow, or answers with something else is
  ``ProxyStatus(up=False, problem=...)``, the problem said in a sentence.
- Nothing secret is carried: upstream URLs lose any ``user:password@``, and the store's path
  and the recorder's last error message (which may quote a path or a server) are left out.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from runtime.providers.httpclient import public_url
from runtime.proxy.server import STATUS_PATH

MAX_STATUS_BYTES = 64 * 1024


@dataclass(frozen=True)
class ProxyStatus:
    """What the proxy said about itself (or why it could not be asked)."""

    url: str
    up: bool
    calls: int = 0
    recorded: int = 0
    lost: int = 0
    queue: int = 0
    recording: bool = False  # the last write to the store worked
    fail_closed: bool = False
    upstreams: tuple[tuple[str, str], ...] = ()  # (API family, upstream base URL)
    problem: str = ""
    paging: str = ""  # the --page preset ("" when the proxy forwards unchanged)
    paged: int = 0  # calls sent upstream paged
    unpaged: int = 0  # calls --page forwarded unchanged
    recalls: int = 0  # recall calls the proxy answered itself


def read_status(url: str, *, timeout: float = 0.5) -> ProxyStatus:
    """Ask the proxy at ``url`` (its base URL) for its status, waiting at most ``timeout`` s."""
    target = url.rstrip("/") + STATUS_PATH
    try:
        with _opener().open(target, timeout=timeout) as answer:
            data = json.loads(answer.read(MAX_STATUS_BYTES))
    except (OSError, ValueError) as exc:  # URLError, timeouts and refusals are OSErrors
        return ProxyStatus(public_url(url), False, problem=_why(exc))
    if not isinstance(data, dict) or data.get("up") is not True:
        return ProxyStatus(public_url(url), False, problem="it answered, but not as llm386 proxy")
    return _status(public_url(url), data)


def _opener() -> urllib.request.OpenerDirector:
    # No proxy from the environment: the address is a local one, asked directly.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _status(url: str, data: dict[str, Any]) -> ProxyStatus:
    found = data.get("upstreams")
    upstreams: dict[str, Any] = found if isinstance(found, dict) else {}
    given = data.get("paging")
    paging: dict[str, Any] = given if isinstance(given, dict) else {}
    return ProxyStatus(
        url, True, calls=_int(data, "calls"), recorded=_int(data, "recorded"),
        lost=_int(data, "lost"), queue=_int(data, "queue"),
        recording=data.get("recording") is True, fail_closed=data.get("fail_closed") is True,
        upstreams=tuple(sorted((str(k), public_url(str(v))) for k, v in upstreams.items())),
        paging=str(paging.get("preset") or ""), paged=_int(paging, "paged"),
        unpaged=_int(paging, "unpaged"), recalls=_int(paging, "recalls"),
    )  # fmt: skip


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _why(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"it answered {exc.code}, not the status of llm386 proxy"
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "it did not answer in time"
    if isinstance(reason, ConnectionRefusedError):
        return "nothing is listening there"
    if isinstance(exc, ValueError):
        return "it answered, but not with JSON"
    return f"it could not be reached ({type(reason).__name__})"
