"""What of a PostgreSQL URL is safe to show, and the password kept apart from the rest.

Invariants: :func:`split` returns connection parameters without the password and the password
alone, so the password is handed to libpq as its own argument and never sits in a string the
driver might echo; :func:`redact` removes it from any message, and :func:`location` is the URL
without it (both from the ``user:password@`` part and a ``password=`` query parameter).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")
_MASK = "***"


def is_postgres_url(target: str) -> bool:
    """Tell whether ``target`` names a PostgreSQL database (a postgresql:// URL)."""
    return target.partition("://")[0].lower() in SCHEMES and "://" in target


def password_of(url: str) -> str | None:
    """Return the password the URL carries (in its user part or query), or None."""
    parts = urlsplit(url)
    if parts.password is not None:
        return unquote(parts.password)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "password":
            return value
    return None


def location(url: str) -> str:
    """Return the URL without its password: safe for logs, pages and errors."""
    return redact(without_password(url), password_of(url))


def redact(text: str, password: str | None) -> str:
    """Return ``text`` with every spelling of ``password`` (plain and URL-quoted) masked."""
    if not password:
        return text
    for spelling in sorted({password, quote(password, safe=""), quote(password)}, key=len)[::-1]:
        text = text.replace(spelling, _MASK)
    return text


def without_password(url: str) -> str:
    """Return the URL to hand libpq: the same database and options, the password removed."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    query = [(n, v) for n, v in parse_qsl(parts.query, keep_blank_values=True) if n != "password"]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, quote_via=quote), ""))
