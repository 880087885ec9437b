"""Filters and tags for showing stored values: times, short ids, previews, page links.

Every filter returns plain text; autoescaping happens when the template outputs it. Nothing here
marks stored content safe.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django import template
from django.utils.http import urlencode

from llm386web.roles import can_act
from runtime.blocks import SHORT_ID_LEN
from runtime.tracing.records import short_call_id as _short_call_id

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
def short_call_id(value: Any) -> str:
    """Return the shown prefix of a call id (timestamp + counter), which `llm386 trace` accepts."""
    return _short_call_id(str(value))


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
def sort_url(context: template.Context, key: str) -> str:
    """Return the query string sorting by ``key``: descending first, then toggling."""
    request = context["request"]
    params = request.GET.copy()
    same = params.get("sort", "activity") == key
    params["dir"] = "asc" if same and params.get("dir", "desc") == "desc" else "desc"
    params["sort"] = key
    params.pop("offset", None)  # a new order starts at the first page
    return "?" + urlencode(sorted(params.items()))


@register.simple_tag(takes_context=True)
def sort_state(context: template.Context, key: str) -> str:
    """Return "ascending"/"descending" for the column the list is sorted by, else "none"."""
    params = context["request"].GET
    if params.get("sort", "activity") != key:
        return "none"
    return "ascending" if params.get("dir", "desc") == "asc" else "descending"


@register.filter
def thousands(value: Any) -> str:
    """Format a whole number with thousands separators ("—" for None)."""
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


@register.filter
def percent(value: Any, digits: int = 0) -> str:
    """Format a fraction as a percentage."""
    if value is None:
        return "—"
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def usd(value: Any) -> str:
    """Format a dollar amount with enough digits for fractions of a cent."""
    if value is None:
        return "—"
    amount = float(value)
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


@register.filter
def ms(value: Any) -> str:
    """Format a latency in milliseconds ("—" when unknown)."""
    if value is None:
        return "—"
    amount = float(value)
    return f"{amount / 1000:.2f} s" if amount >= 1000 else f"{amount:.0f} ms"


@register.filter
def bar_width(value: Any, whole: Any) -> str:
    """Return ``value`` over ``whole`` as an SVG width in a 0-100 viewBox (capped at 100)."""
    try:
        share = float(value) / float(whole)
    except (TypeError, ValueError, ZeroDivisionError):
        return "0"
    return f"{max(0.0, min(share, 1.0)) * 100:.2f}"


register.filter("can_act", can_act)  # whether to show the buttons of llm386web.roles' guard


@register.filter
def usage_figure(value: Any, label: str) -> str:
    """Format one usage figure of an experiment by its row's label (cost, latency or tokens)."""
    if value is None:
        return "—"
    if "cost" in label.lower():
        return ("-" if value < 0 else "") + usd(abs(value))
    if "latency" in label.lower():
        return ("-" if value < 0 else "") + ms(abs(value))
    return thousands(value)
