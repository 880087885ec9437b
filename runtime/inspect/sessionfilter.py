"""The sessions list's filters that read session meta: date range, provider, tags, meta keys.

Owns: ``parse_day`` (a UTC day from ``YYYY-MM-DD``), ``MetaTerm`` (``KEY`` or ``KEY=VALUE``),
the readers that turn a session's meta into what a summary row keeps (``provider_of``,
``meta_items``; tags are read by ``runtime.tags``) and the match functions the sessions list
applies to its rows.

Invariants:
- Everything here reads a summary row, which is made from the session record the block store
  keeps; no filter reads a trace record or a block.
- A session's tags are its meta ``tags`` (``runtime.tags``): a filter names some, a session
  matches if it has all of them.
- A meta term matches a top-level meta key; ``KEY=VALUE`` also needs the value, written as text
  (JSON for numbers and booleans: ``reward=0``, ``captured=true``), to be equal.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.errors import InvalidInput
from runtime.profiles.catalog import BUILTIN_PROFILES, lookup_profile
from runtime.tags import check_tag

MAX_TERMS = 10  # tags or meta terms one query may name
MAX_TERM_CHARS = 200
DAY_MS = 86_400_000


def parse_day(raw: str, name: str) -> dt.date | None:
    """Return the date ``raw`` names (YYYY-MM-DD; "" is None), or raise InvalidInput."""
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw) if len(raw) == 10 else _bad_day(raw, name)
    except ValueError:
        return _bad_day(raw, name)


def _bad_day(raw: str, name: str) -> dt.date:
    raise InvalidInput(f"{name}={_shown(raw)!r} is not a date written YYYY-MM-DD")


def _shown(raw: str) -> str:
    return raw if len(raw) <= 40 else raw[:40] + "…"


def check_range(since: dt.date | None, until: dt.date | None) -> None:
    """Refuse a date range that ends before it starts."""
    if since and until and since > until:
        raise InvalidInput(f"the date range starts ({since}) after it ends ({until})")


def day_bounds(since: dt.date | None, until: dt.date | None) -> tuple[int | None, int | None]:
    """Return the range as ms since the epoch: the start of ``since``, the end of ``until``."""

    def start(day: dt.date) -> int:
        return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)

    return (start(since) if since else None, start(until) + DAY_MS - 1 if until else None)


def parse_tags(raw: str) -> tuple[str, ...]:
    """Return the tags a comma-separated list names, sorted, each once (InvalidInput if bad)."""
    tags = sorted({check_tag(t.strip()) for t in raw.split(",") if t.strip()})
    if len(tags) > MAX_TERMS:
        raise InvalidInput(f"tag names {len(tags)} tags; filter by at most {MAX_TERMS}")
    return tuple(tags)


@dataclass(frozen=True)
class MetaTerm:
    """A meta filter: the session's meta has ``key`` (and, when ``value`` is set, that value)."""

    key: str
    value: str | None = None

    @classmethod
    def parse(cls, raw: str) -> MetaTerm:
        if len(raw) > MAX_TERM_CHARS:
            raise InvalidInput(f"meta={_shown(raw)!r} is over {MAX_TERM_CHARS} characters")
        key, eq, value = raw.partition("=")
        key = key.strip()
        if not key:
            raise InvalidInput(f"meta={_shown(raw)!r} names no key: write KEY or KEY=VALUE")
        return cls(key, value if eq else None)

    def text(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


def parse_meta(raws: Sequence[str]) -> tuple[MetaTerm, ...]:
    """Return the meta terms ``raws`` name (empty ones skipped), or raise InvalidInput."""
    terms = tuple(MetaTerm.parse(r) for r in raws if r.strip())
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"meta is given {len(terms)} times; filter by at most {MAX_TERMS}")
    return terms


def provider_of(meta: Mapping[str, Any], model: str) -> str:
    """Return a session's provider: its meta ``provider``, else its model's built-in one."""
    named = meta.get("provider")
    if isinstance(named, str) and named:
        return named
    profile = lookup_profile(model, BUILTIN_PROFILES) if model else None
    return profile.provider if profile is not None else ""


def value_text(value: Any) -> str | None:
    """Return a scalar meta value as a filter compares it (a string as is, a number, boolean or
    null as JSON); None for a list or an object, which only a bare KEY term matches."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def meta_items(meta: Mapping[str, Any]) -> tuple[tuple[str, str | None], ...]:
    """Return (key, value as text) of a session's meta, sorted by key (values are cut to
    ``MAX_TERM_CHARS``: a longer one cannot be asked for)."""
    return tuple(sorted((str(k), _cut(value_text(v))) for k, v in meta.items()))


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_TERM_CHARS else text[: MAX_TERM_CHARS + 1]


def has_meta(items: Sequence[tuple[str, str | None]], terms: Iterable[MetaTerm]) -> bool:
    """Return whether ``items`` satisfy every term."""
    found = dict(items)
    return all(t.key in found and (t.value is None or found[t.key] == t.value) for t in terms)


def in_range(first: int, last: int, bounds: tuple[int | None, int | None]) -> bool:
    """Return whether activity from ``first`` to ``last`` (ms) overlaps the range ``bounds``."""
    low, high = bounds
    return (low is None or last >= low) and (high is None or first <= high)


@dataclass(frozen=True)
class FilterChoices:
    """What the filters offer: every provider, tag and meta key among the sessions, sorted."""

    providers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    meta_keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, rows: Sequence[Any]) -> FilterChoices:
        return cls(tuple(sorted({r.provider for r in rows if r.provider})),
                   tuple(sorted({t for r in rows for t in r.tags})),
                   tuple(sorted({k for r in rows for k, _ in r.meta})))  # fmt: skip
