"""Server log output: unhandled exceptions with their traceback on stderr, secrets masked.

DEBUG is off by default, and Django's default logging sends ``django.request`` errors only to
``mail_admins`` then (no ADMINS: nowhere), while the 500 page says "the server log has the
details". ``LOGGING`` in settings routes them to stderr through :class:`ScrubbingFormatter`,
which masks every secret the server holds before a line is written: the API keys in the
environment, the Django secret key, database passwords and ``user:password@`` in base URLs.
An exception message or a traceback line (which quotes source, not local variables) could
carry one, echoed by a server or pasted into a URL.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DJANGO_SECRET_KEY")
URL_ENV_VARS = ("ANTHROPIC_BASE_URL", "OPENAI_BASE_URL")
MIN_SECRET_CHARS = 8  # shorter values are too likely to be ordinary words to mask
# Key-shaped strings even when the key is not this server's (a pasted or echoed one).
# (and ingest tokens, llm386_..., which are never logged on purpose either).
KEY_PATTERN = re.compile(r"\b(?:sk-|llm386_)[A-Za-z0-9_\-]{16,}")
MASK = "[secret]"


def _url_credentials(url: str) -> Iterator[str]:
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    for part in (userinfo, userinfo.partition(":")[2]):
        yield part
        yield unquote(part)


def server_secrets() -> list[str]:
    """Return every secret value this server holds, longest first (so none is half-masked)."""
    from django.conf import settings

    found = [os.environ.get(name, "") for name in SECRET_ENV_VARS]
    found += [part for name in URL_ENV_VARS for part in _url_credentials(os.environ.get(name, ""))]
    if settings.configured:
        found.append(str(getattr(settings, "SECRET_KEY", "")))
        found += [str(db.get("PASSWORD") or "") for db in settings.DATABASES.values()]
        base_url = getattr(settings, "LLM386", {}).get("ANTHROPIC_BASE_URL", "")
        found += list(_url_credentials(str(base_url)))
    kept = {s for s in found if len(s) >= MIN_SECRET_CHARS}
    return sorted(kept, key=lambda s: (-len(s), s))


def scrub(text: str) -> str:
    """Return ``text`` with every server secret and key-shaped string masked."""
    for secret in server_secrets():
        text = text.replace(secret, MASK)
    return KEY_PATTERN.sub(MASK, text)


class ScrubbingFormatter(logging.Formatter):
    """Format as usual (traceback included), then mask secrets in the whole text."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
