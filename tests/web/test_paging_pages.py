"""The turn and session pages show demand paging: tokens by category, savings, faults, cost."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from runtime.agent.core import Agent
from runtime.paging.eviction import EvictionConfig
from runtime.paging.placeholders import StubStyle
from runtime.providers import OfflineModel
from tests.runtime.test_agent_paging import LongProfiles

pytestmark = pytest.mark.django_db

CONFIG = EvictionConfig(max_age=1, min_bytes=10, stub_style=StubStyle.SIGNATURE)


def chat(store: Any, traces: Any) -> list[str]:
    agent = Agent(
        store, traces, OfflineModel(), session="paged", paging=CONFIG, runner=LongProfiles()
    )
    calls: list[str] = []
    for message in ("Who is user u-1001?", "Hello there", "Who is user u-1001?"):
        calls += agent.say(message).call_ids
    return calls


def text(html: bytes) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.decode()))


def test_the_turn_page_shows_tokens_by_category_savings_and_faults(
    logged_in: Client, store: Any, traces: Any
) -> None:
    calls = chat(store, traces)
    record = traces.get(calls[-1])  # serves the repeat fault found in the answer before it
    page = text(logged_in.get(f"/traces/{record.call_id}/").content)
    acct = record.paging["accounting"]
    assert "Demand paging" in page and "Full history Packed Saved" in page
    full, packed, saved = acct["full_tokens"], acct["packed_tokens"], acct["saved_tokens"]
    share = f"{saved / full * 100:.1f}%"
    assert f"Total {full:,} {packed:,} {saved:,} ({share})" in page
    assert "Page faults served 1" in page and "fault repeat" in page


def test_the_session_page_shows_cumulative_tokens_against_full_history_and_cost(
    logged_in: Client, store: Any, traces: Any
) -> None:
    calls = chat(store, traces)
    records = [traces.get(c) for c in calls]
    full = sum(r.paging["accounting"]["full_tokens"] for r in records)
    packed = sum(r.paging["accounting"]["packed_tokens"] for r in records)
    page = text(logged_in.get("/sessions/paged/").content)
    assert f"Demand paging over {len(records)} turns" in page
    share = f"{(1 - packed / full) * 100:.1f}%"
    assert f"Cumulative input tokens {full:,} {packed:,} (saved {full - packed:,}, {share})" in page
    assert f"Reduction {share} of full history" in page and "0.000" not in page
    assert "Estimated cost, no caching" in page and "Estimated cost, prompt caching" in page


def test_a_session_without_demand_paging_shows_no_paging_table(
    logged_in: Client, store: Any, traces: Any
) -> None:
    Agent(store, traces, OfflineModel(), session="plain", paging=None).say("Hello")
    assert "Demand paging" not in logged_in.get("/sessions/plain/").content.decode()


def test_paging_figures_use_thousands_separators_and_percentages(
    logged_in: Client, store: Any, traces: Any
) -> None:
    chat(store, traces)
    html = logged_in.get("/sessions/paged/").content.decode()
    figures = html[html.index('<table class="figures">') : html.index("</table>")]
    numbers = re.findall(r'<td class="num">([^<]*)</td>', figures)
    big = [n for n in numbers if re.fullmatch(r"[\d,]+", n) and len(n.replace(",", "")) > 3]
    assert big and all("," in n for n in big)
    assert re.search(r"Reduction \d+\.\d%", text(html.encode()))
