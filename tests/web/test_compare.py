"""Compare page: block changes, section deltas, side-by-side text diff, cache prefix, j/k, permalinks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from runtime.blocks import canonical_json
from runtime.inspect.compare import segments, side_by_side
from runtime.inspect.request import cache_units, view_request
from runtime.inspect.textdiff import diff_views
from runtime.tracing.records import TraceRecord

from .tracefactory import anthropic_request, conversation

pytestmark = pytest.mark.django_db


def test_compare_previous_redirects_to_the_pair_permalink(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(3))
    response = logged_in.get(f"/traces/{s.call_ids[2]}/compare/")
    assert response.status_code == 302
    assert response["Location"] == f"/compare/{s.call_ids[1]}/{s.call_ids[2]}/"
    first = logged_in.get(f"/traces/{s.call_ids[0]}/compare/")
    assert first.status_code == 404 and b"first turn" in first.content


def test_compare_shows_entered_blocks_section_deltas_and_cache_verdict(
    logged_in: Client, traced: Any
) -> None:
    s = traced("run", conversation(3))
    html = logged_in.get(f"/compare/{s.call_ids[1]}/{s.call_ids[2]}/").content.decode()
    entered = html[html.index("Blocks that entered") : html.index("Blocks that left")]
    assert 'class="count">2</span>' in entered  # the assistant reply and the next question
    assert (
        f'href="/blocks/{s.block_ids[4]}/"' in entered and f"/blocks/{s.block_ids[5]}/" in entered
    )
    assert "recent-window" in entered
    recent = html[html.index('seg-recent"></span> recent') :].split("</tr>")[0]
    assert 'delta up">+' in recent
    # each request ends with a cache breakpoint on its last message; B appends after it
    assert "prefix-kept" in html and "First divergent byte" in html
    assert "B first differs after it" in html and "the divergence is inside it" not in html
    # turn 2 cached 80 + 20 tokens (factory usage); turn 3 reported reading 160 of them
    box = html[html.index('class="cache-read') :].split("</p>")[0]
    assert "provider agrees" in box and "prefix of 100 tokens" in box and "160 cache-read" in box


def test_side_by_side_diff_marks_changed_characters(logged_in: Client, traced: Any) -> None:
    a = traced("a", ["sys", "the flight leaves at 9:00", "ok"], turns=1)
    b = traced("b", ["sys", "the flight leaves at 9:45", "ok"], turns=1)
    html = logged_in.get(f"/compare/{a.call_ids[0]}/{b.call_ids[0]}/").content.decode()
    assert "<mark>00</mark>" in html and "<mark>45</mark>" in html
    assert 'class="code op-removed"' in html and 'class="code op-added"' in html
    assert "<h3>messages" in html  # aligned by request section
    assert "prefix-changed" in html  # the change is before A's breakpoint


def test_j_and_k_move_to_the_neighbouring_pairs(logged_in: Client, traced: Any) -> None:
    s = traced("run", conversation(4))
    c = s.call_ids
    html = logged_in.get(f"/compare/{c[1]}/{c[2]}/").content.decode()
    assert f'href="/compare/{c[0]}/{c[1]}/" rel="prev" data-key="k"' in html
    assert f'href="/compare/{c[2]}/{c[3]}/" rel="next" data-key="j"' in html
    last = logged_in.get(f"/compare/{c[2]}/{c[3]}/").content.decode()
    assert 'data-key="j"' not in last


def test_any_two_turns_compare_even_across_sessions(logged_in: Client, traced: Any) -> None:
    a = traced("a", conversation(1))
    b = traced("b", conversation(2, prefix="other"))
    response = logged_in.get(f"/compare/{b.call_ids[1]}/{a.call_ids[0]}/")
    assert response.status_code == 200
    assert b"Swap sides" in response.content
    assert 'data-key="j"' not in response.content.decode()


def test_compare_prefixes_redirect_and_bad_ids_are_400_or_404(
    logged_in: Client, traced: Any
) -> None:
    s = traced("run", conversation(2))
    short = logged_in.get(f"/compare/{s.call_ids[0][:20]}/{s.call_ids[1][:20]}/")
    assert short["Location"] == f"/compare/{s.call_ids[0]}/{s.call_ids[1]}/"
    assert logged_in.get(f"/compare/xyz/{s.call_ids[1]}/").status_code == 400
    missing = logged_in.get(f"/compare/{s.call_ids[0]}/1234567890123000000000000/")
    assert missing.status_code == 404


def test_long_change_lists_show_a_first_page_and_a_link_to_all(
    logged_in: Client, traced: Any
) -> None:
    s = traced("run", conversation(60), turns=60)
    html = logged_in.get(f"/compare/{s.call_ids[0]}/{s.call_ids[59]}/").content.decode()
    entered = html[html.index("Blocks that entered") : html.index("Blocks that left")]
    assert 'class="count">118</span>' in entered
    assert entered.count("</tr>") == 1 + 100
    assert 'href="?all=1"' in html
    every = logged_in.get(f"/compare/{s.call_ids[0]}/{s.call_ids[59]}/?all=1").content.decode()
    entered_all = every[every.index("Blocks that entered") : every.index("Blocks that left")]
    assert entered_all.count("</tr>") == 1 + 118


def test_segments_rebuild_the_line_exactly() -> None:
    text = "abcdefgh"
    pieces = segments(text, [(1, 3), (5, 6)])
    assert "".join(p.text for p in pieces) == text
    assert [p.changed for p in pieces] == [False, True, False, True, False]
    assert segments("", []) == segments("", [])


def test_side_by_side_accounts_for_every_diff_line_once() -> None:
    a = view_request(anthropic_request("s", ["one", "two", "three"]))
    b = view_request(anthropic_request("s", ["one", "2", "three", "four"]))
    diff = diff_views(a, b)
    hunks = side_by_side(diff, a, b)
    lefts = [r.left.number for h in hunks for r in h.rows if r.left.number is not None]
    rights = [r.right.number for h in hunks for r in h.rows if r.right.number is not None]
    expected_left = [line.a + 1 for h in diff.hunks for line in h.lines if line.a is not None]
    expected_right = [line.b + 1 for h in diff.hunks for line in h.lines if line.b is not None]
    assert lefts == expected_left and rights == expected_right
    assert re.match(r"messages", hunks[0].section)


def test_openai_turns_report_the_shared_prefix_an_automatic_cache_could_reuse(
    logged_in: Client, traces: Any, imported_demo: list[TraceRecord]
) -> None:
    a, b = imported_demo[2:4]
    html = logged_in.get(f"/compare/{a.call_id}/{b.call_id}/").content.decode()
    assert "automatic-prefix" in html and "nothing of it was cached" not in html
    # in cache order: model, tools, then the messages, each unit's canonical JSON in turn
    in_order = [
        b"".join(canonical_json(u.value) for u in cache_units(json.loads(traces.request_bytes(r.prompt_hash))))
        for r in (a, b)
    ]  # fmt: skip
    shared = next((i for i, (x, y) in enumerate(zip(*in_order, strict=False)) if x != y),
                  min(map(len, in_order)))  # fmt: skip
    assert f"the first {shared:,} bytes, up to the first difference" in html
