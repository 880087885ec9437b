"""Hostile trace content: vectors that try to run script through the Markdown and JSON views,
and a turn that carries every one of them (assistant text, tool call input keys and values, tool
results), for the Django tests and the Chromium test alike."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from runtime import BlockStore, NewBlock
from runtime.blocks import BlockKind, canonical_json
from runtime.tracing.records import (
    Provider,
    StoredTrace,
    TraceRecord,
    TraceStore,
    new_call_id,
    prompt_hash,
)

from .tracefactory import MODEL, T0

XSS = "window.__xss=1"  # what a vector runs if it gets through: the browser test reads it back

VECTORS = (
    "<script>alert(1)</script>",
    f"<script>{XSS}</script>",
    "<img src=x onerror=alert(1)>",
    f'<img src=x onerror="{XSS}">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "[link](javascript:alert(1))",
    "[link](JAVASCRIPT:alert(1))",
    "[link](java&#x09;script:alert(1))",
    "[link](&#106;avascript:alert(1))",
    "[link](java\u200bscript:alert(1))",
    "[link](vbscript:msgbox(1))",
    "[link](file:///etc/passwd)",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![img](javascript:alert(1))",
    '![img](x" onerror="alert(1))',
    '[t](https://example.com "title\\" onmouseover=\\"alert(1)")',
    "<javascript:alert(1)>",
    '<https://example.com/"onmouseover="alert(1)>',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="https://example.com" onclick="alert(1)">ok</a>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    "<style>body{background:url(javascript:alert(1))}</style>",
    '<div style="background:url(javascript:alert(1))">x</div>',
    "<link rel=stylesheet href=javascript:alert(1)>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    "<body onload=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<form action=javascript:alert(1)><button>go</button></form>",
    "<video><source onerror=alert(1)></video>",
    "<audio src=x onerror=alert(1)>",
    "<marquee onstart=alert(1)>m</marquee>",
    "<isindex action=javascript:alert(1) type=image>",
    "<table><tr><td onmouseover=alert(1)>x</td></tr></table>",
    "| a | b |\n|---|---|\n| <img src=x onerror=alert(1)> | [x](javascript:alert(1)) |",
    "> <script>alert(1)</script> in a quote",
    "`<script>alert(1)</script>` in code",
    "```html\n<script>alert(1)</script>\n```",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<<script>script>alert(1)<</script>/script>",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    "</textarea><script>alert(1)</script>",
    "</pre><script>alert(1)</script>",
    "</details></summary></li></ul><script>alert(1)</script>",
    "<!--<script>alert(1)</script>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<template><script>alert(1)</script></template>",
    "\u202e<script>alert(1)</script>",
    "\uff1cscript\uff1ealert(1)\uff1c/script\uff1e",
    "<scr\u0130pt>alert(1)</scr\u0130pt>",
    "\x00<script>alert(1)</script>",
    '<div hx-get="/logout/" hx-trigger="load">evil-hx</div>',
    '<button hx-post="/logout/" hx-trigger="load" data-hx-post="/logout/">evil-hx</button>',
    "<x onclick=alert(1)>custom element</x>",
    "{{ request }} {% debug %} ${alert(1)}",
)
DEEP_PARSEABLE = "[" * 60 + '"<script>alert(1)</script>"' + "]" * 60  # cut at the depth cap
DEEP_UNPARSEABLE = "[" * 100_000 + "]" * 100_000  # deeper than Python's JSON parser goes
HUGE_NUMBERS = "[" + "9" * 5000 + ", 1e99999, -0.0e-99999]"
WIDE = json.dumps({f"k{i}": i for i in range(3000)})  # more values than one tree shows


def _tool_input(i: int, vector: str) -> dict[str, Any]:
    return {vector: vector, "nested": {"<b>key</b>": [vector, {"deep": vector}]}, "n": i}


def hostile_request() -> dict[str, Any]:
    """Return an Anthropic request whose messages carry every vector in every view."""
    messages: list[dict[str, Any]] = []
    for i, vector in enumerate(VECTORS):
        result = json.dumps({vector: [vector, {"html": vector}]})
        messages += [
            {"role": "user", "content": [{"type": "text", "text": vector}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": f"**{i}** {vector}\n\n{vector}"},
                {"type": "tool_use", "id": f"t{i}", "name": vector, "input": _tool_input(i, vector)}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": f"t{i}", "content": result}]},
        ]  # fmt: skip
    extra = [DEEP_PARSEABLE, DEEP_UNPARSEABLE, HUGE_NUMBERS, WIDE]
    messages.append({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": f"x{i}", "content": text} for i, text in enumerate(extra)]})  # fmt: skip
    return {"max_tokens": 64, "model": MODEL, "system": "You are a test.", "messages": messages}


def hostile_response() -> dict[str, Any]:
    text = "\n\n".join(VECTORS)
    uses = [{"type": "tool_use", "id": f"r{i}", "name": "lookup", "input": _tool_input(i, v)}
            for i, v in enumerate(VECTORS)]  # fmt: skip
    return {"content": [{"type": "text", "text": text}, *uses], "role": "assistant",
            "stop_reason": "tool_use", "type": "message",
            "usage": {"input_tokens": 10, "output_tokens": 5}}  # fmt: skip


def write_hostile_turn(store: BlockStore, traces: TraceStore, name: str = "hostile-md") -> str:
    """Record one turn whose request and response carry every vector; return its call id."""
    store.put(name, NewBlock(BlockKind.USER_MESSAGE, VECTORS[0], created_at=T0))
    store.set_session_meta(name, model=MODEL)
    request = canonical_json(hostile_request())
    response = hostile_response()
    raw_response = canonical_json(response)
    record = TraceRecord(
        call_id=new_call_id(), session=name, turn=1, started_at=T0, provider=Provider.ANTHROPIC,
        model=MODEL, prompt_hash=prompt_hash(request), request_size=len(request), latency_ms=10.0,
        response=response, response_hash=prompt_hash(raw_response), stop_reason="tool_use",
    )  # fmt: skip
    traces.record_many([StoredTrace(record, request, raw_response)])
    return record.call_id


# -- telling executable markup from text, as a browser parses it ----------------------------

SITE_CHARTS = (
    "stacked",
    "fill-bar",
    "strip-bars",
)  # the classes of the SVG charts the templates draw
URL_ATTRS = ("href", "src", "action", "formaction", "xlink:href", "data", "poster", "background")
ACTIVE_TAGS = {"script", "style", "iframe", "object", "embed", "svg", "math", "base", "link",
               "meta", "img", "video", "audio", "source", "marquee", "isindex", "template",
               "noscript", "frame", "frameset", "applet", "input", "textarea", "select"}  # fmt: skip


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def tags_of(html: str) -> list[tuple[str, dict[str, str]]]:
    """Return every start tag of ``html`` with its attributes (character references decoded)."""
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def _scheme(value: str) -> str:
    """Return the scheme a browser reads in a URL attribute ("" for a relative URL): tabs and
    newlines anywhere and C0 controls or spaces at the ends are dropped first (WHATWG URL)."""
    plain = re.sub(r"[\t\n\r]", "", value).strip("".join(map(chr, range(33))))
    found = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):", plain)
    return found.group(1).lower() if found else ""


def executable(tags: list[tuple[str, dict[str, str]]], *, page: bool) -> list[str]:
    """Return what in ``tags`` could run script or act on its own (a page may hold its own
    scripts, stylesheet, icon, meta tags and forms; content may hold none of them)."""
    bad = []
    for tag, attrs in tags:
        own = page and (
            (tag == "script" and attrs.get("src", "").startswith("/static/"))
            or (tag == "link" and attrs.get("href", "").startswith(("/static/", "data:,")))
            or (tag == "meta" and set(attrs) <= {"charset", "name", "content"} and "http-equiv" not in attrs)
            or (tag in ("input", "select", "textarea") and attrs.get("type") != "image")
            or (tag == "svg" and attrs.get("role") == "img" and attrs.get("class") in SITE_CHARTS)
        )  # fmt: skip
        if tag in ACTIVE_TAGS and not own:
            bad.append(f"<{tag}>")
        for name, value in attrs.items():
            if name.startswith("on") or name in ("style", "srcdoc"):
                bad.append(f"<{tag} {name}>")
            if (
                name in URL_ATTRS
                and _scheme(value) not in ("", "http", "https", "mailto")
                and not (own and value == "data:,")
            ):
                bad.append(f"<{tag} {name}={value!r}>")
            if (name.startswith(("hx-", "data-hx-")) and "/logout/" in value) or name == "hx-on":
                bad.append(f"<{tag} {name}={value!r}>")
    return bad
