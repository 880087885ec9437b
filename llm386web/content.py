"""Readable views of stored text: assistant text as Markdown, tool calls and results as a JSON tree.

Both return markup built here from untrusted text, and both are built so nothing executable
can come out of them:

- Markdown goes through markdown-it-py with raw HTML off (it is shown as text) and then through
  nh3 (an HTML sanitiser: an allow-list of tags and attributes, links limited to http, https and
  mailto, ``rel="noopener noreferrer nofollow"`` on each). No ``style``, no event handler, no
  image (a remote image would be a request the trace author chose), no ``data:`` URL survives.
- The JSON tree is nested ``<details>`` whose every key and value is escaped here; numbers keep
  the exact digits the text had (a 5,000-digit integer is shown, not refused). Nesting is cut at
  ``MAX_DEPTH`` and the tree at ``MAX_NODES`` (shown as "…"), so hostile depth cannot reach the
  recursion limit and a huge result cannot make a huge page; text nested too deeply even to
  parse is shown raw.

Either returns None when it has no better view than the raw text (too long, not an object or
array, unparseable): the template then shows only the raw text. The raw text is always one
click away in the page.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

import nh3
from markdown_it import MarkdownIt

MAX_MARKDOWN_CHARS = 200_000  # longer text is shown raw (rendering it would slow the page)
MAX_JSON_CHARS = 1_000_000
MAX_DEPTH = 20  # containers nested deeper show "…"
MAX_NODES = 2_000  # values shown in one tree; the rest show "…"
OPEN_LEVELS = 2  # levels open when the page loads

_md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li",
    "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}


def markdown_html(text: str) -> str | None:
    """Return ``text`` rendered as sanitised HTML, or None when it is too long to render."""
    if len(text) > MAX_MARKDOWN_CHARS:
        return None
    html = _md.render(text)
    return nh3.clean(
        html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow", strip_comments=True,
    )  # fmt: skip


class _Number(str):
    """A JSON number as the digits it was written with."""


def _parse(text: str) -> Any:
    if len(text) > MAX_JSON_CHARS:
        return None
    try:
        return json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python can parse
        return None


class _Tree:
    def __init__(self) -> None:
        self.nodes = 0
        self.out: list[str] = []

    def value(self, key: str | None, value: Any, depth: int) -> None:
        self.nodes += 1
        label = "" if key is None else f'<span class="json-key">{escape(key)}</span>: '
        if isinstance(value, dict | list):
            self.container(label, value, depth)
        else:
            self.out.append(f"<li>{label}{_scalar(value)}</li>")

    def container(self, label: str, value: dict[str, Any] | list[Any], depth: int) -> None:
        is_dict = isinstance(value, dict)
        size = f"{{{len(value)} key{'s' * (len(value) != 1)}}}" if is_dict else f"[{len(value)}]"
        if not value:
            self.out.append(
                f'<li>{label}<span class="json-punct">{"{}" if is_dict else "[]"}</span></li>'
            )
            return
        if depth >= MAX_DEPTH:
            self.out.append(f'<li>{label}<span class="json-punct">{size}</span> '
                            '<span class="json-cut" title="nested too deeply: see raw">…</span></li>')  # fmt: skip
            return
        opened = " open" if depth < OPEN_LEVELS else ""
        self.out.append(f'<li><details{opened}><summary>{label}<span class="json-punct">{size}'
                        '</span></summary><ul class="json-items">')  # fmt: skip
        items = (
            value.items() if isinstance(value, dict) else ((f"{i}", v) for i, v in enumerate(value))
        )
        for shown, (k, v) in enumerate(items):
            if self.nodes >= MAX_NODES:
                self.out.append(f'<li class="json-cut">… {len(value) - shown} more: see raw</li>')
                break
            self.value(k, v, depth + 1)
        self.out.append("</ul></details></li>")


def _scalar(value: Any) -> str:
    if isinstance(value, _Number):
        return f'<span class="json-num">{escape(value)}</span>'
    if isinstance(value, str):
        return f'<span class="json-str">"{escape(value)}"</span>'
    if value is None:
        return '<span class="json-lit">null</span>'
    return f'<span class="json-lit">{"true" if value else "false"}</span>'


def json_tree_html(text: str) -> str | None:
    """Return ``text`` (a JSON object or array) as a collapsible tree, else None."""
    value = _parse(text)
    if not isinstance(value, dict | list):
        return None
    tree = _Tree()
    tree.value(None, value, 0)
    return f'<ul class="json-tree">{"".join(tree.out)}</ul>'
