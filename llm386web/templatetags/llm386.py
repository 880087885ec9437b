"""Filters and tags for showing stored values: times, short ids, previews, page links.

Every filter returns plain text; autoescaping happens when the template outputs it. Nothing here
marks stored content safe.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django import template

from llm386web.views.common import page_query
from runtime.blocks import SHORT_ID_LEN

register = template.Library()

_SPACE = re.compile(r"\s+")


@register.filter
def ms_datetime(value: Any) -> dt.datetime | None:
    """Turn milliseconds since the Unix epoch into an aware UTC datetime."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)


@register.filter
def short_id(value: Any) -> str:
    """Return the first characters of a hash id (enough to be unique in practice)."""
    return str(value)[:SHORT_ID_LEN]


@register.filter
def preview(value: Any, length: int = 160) -> str:
    """Return ``value`` on one line, cut to ``length`` characters with an ellipsis."""
    text = _SPACE.sub(" ", str(value)).strip()
    return text if len(text) <= length else text[: length - 1] + "…"


@register.filter
def get_item(mapping: Any, key: str) -> Any:
    """Look up ``key`` in a mapping (for meta keys that are not identifiers)."""
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.simple_tag(takes_context=True)
def page_url(context: template.Context, param: str, value: int) -> str:
    """Return the current URL's query string with ``param`` set to ``value``."""
    return page_query(context["request"], param, value)
