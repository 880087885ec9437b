"""Filters that show stored text in a readable form (``llm386web.content``): Markdown and JSON.

Their markup is built by llm386web.content from escaped or sanitised pieces, so it is marked
safe here and only here; every other filter returns plain text for autoescaping.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from llm386web.content import json_tree_html, markdown_html

register = template.Library()


@register.filter
def markdown(value: Any) -> SafeString | None:
    """Return ``value`` as sanitised Markdown HTML (None: show it raw)."""
    html = markdown_html(str(value))
    return None if html is None else mark_safe(html)  # noqa: S308 - sanitised by nh3


@register.filter
def json_tree(value: Any) -> SafeString | None:
    """Return ``value`` as a collapsible JSON tree (None: not an object or array; show it raw)."""
    html = json_tree_html(str(value))
    return None if html is None else mark_safe(html)  # noqa: S308 - every piece escaped
