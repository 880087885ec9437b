"""The session page's turn previews: what the model wrote or called, and each turn's cost."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.test import Client

from runtime.inspect.timeline import PREVIEW_CHARS, output_preview
from runtime.tracing.records import TraceRecord

from .tracefactory import Session, conversation

pytestmark = pytest.mark.django_db


def _rows(html: bytes) -> list[str]:
    return re.findall(r'<tr id="turn-\d+".*?</tr>', html.decode(), re.S)


def test_each_turn_shows_the_first_line_it_wrote_and_its_input_cost(
    logged_in: Client, traced: Callable[..., Session]
) -> None:
    bodies = conversation(3)
    bodies[4] = "First line of turn two\nsecond line, not shown"
    traced("alpha", bodies, errors=[3])
    rows = _rows(logged_in.get("/sessions/alpha/").content)
    assert len(rows) == 3
    assert '<span class="first-line">message 1: an answer</span>' in rows[0]
    assert "First line of turn two" in rows[1] and "second line" not in rows[1]
    assert "no answer (the call failed)" in rows[2]
    # claude-sonnet-4-6 at list price: turn 1 is 100 input tokens, 20 of them cache writes.
    costs = [re.search(r'<td class="num cost">([^<]*)</td>', row).group(1) for row in rows]
    assert costs[0].startswith("$0.000") and costs[2] == "—"


def test_cost_counts_output_and_cost_and_latency_have_a_strip_each(
    logged_in: Client, traced: Callable[..., Session], traces
) -> None:
    from runtime.inspect.timeline import session_timeline
    from runtime.providers import Usage, get_provider

    made = traced("beta", conversation(3), errors=[3])
    rows = session_timeline(traces, "beta").rows
    first = rows[0]
    provider = get_provider(first.provider)
    usage = Usage(first.input_tokens - first.cache_read_tokens - first.cache_creation_tokens,
                  first.output_tokens, first.cache_read_tokens, first.cache_creation_tokens)  # fmt: skip
    assert first.output_tokens > 0 and first.cost_usd is not None
    assert first.cost_usd > first.input_cost_usd  # output is priced too
    expected = (provider.price(usage, first.model) or 0) + usage.output_tokens * (
        provider.price_of(first.model).output_usd_per_mtok / 1_000_000
    )
    assert first.cost_usd == pytest.approx(expected)
    html = logged_in.get("/sessions/beta/").content.decode()
    cost, latency = (re.search(rf'<figure class="chart strip strip-{u}">(.*?)</figure>', html, re.S)
                     for u in ("usd", "ms"))  # fmt: skip
    assert cost is not None and latency is not None
    # The failed turn reported no usage: no cost bar; every turn has a latency bar.
    assert cost.group(1).count('<rect class="strip-bar"') == 2
    assert latency.group(1).count('<rect class="strip-bar"') == 3
    for call_id in made.call_ids[:2]:
        assert f'href="/traces/{call_id}/"' in cost.group(1)
    assert "list-price cost $" in cost.group(1) and " ms</title>" in latency.group(1)


def test_a_turn_that_called_tools_lists_them(
    logged_in: Client, imported_demo: list[TraceRecord]
) -> None:
    called = [r for r in imported_demo if (r.response or {}).get("tool_calls")]
    assert called
    html = logged_in.get("/sessions/tau-task000-trial0/?limit=100").content
    rows = _rows(html)
    for rec in called:
        names = [c["function"]["name"] for c in rec.response["tool_calls"]]
        row = rows[rec.turn - 1]
        assert [f'<code class="tool-name">{n}</code>' in row for n in names] == [True] * len(names)


def test_output_preview_reads_text_and_tool_calls_and_escapes_on_the_page(
    logged_in: Client, traced: Callable[..., Session]
) -> None:
    anthropic = {"content": [{"type": "text", "text": "\n\n  Plan:  \nmore"},
                             {"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}]}  # fmt: skip
    assert output_preview(anthropic) == ("Plan:", ("lookup",))
    openai = {"role": "assistant", "content": None,
              "tool_calls": [{"id": "c", "function": {"name": "book", "arguments": "{}"}}]}  # fmt: skip
    assert output_preview(openai) == ("", ("book",))
    assert output_preview({"content": [{"type": "text", "text": "x" * 500}]})[0] == (
        "x" * (PREVIEW_CHARS - 1) + "…"
    )
    assert output_preview(None) == ("", ())
    bodies = conversation(1)
    bodies[2] = "<script>alert(1)</script>"
    traced("hostile-preview", bodies)
    html = logged_in.get("/sessions/hostile-preview/").content
    assert b'<span class="first-line">&lt;script&gt;alert(1)&lt;/script&gt;</span>' in html
