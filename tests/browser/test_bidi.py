"""Untrusted text cannot turn the page's own sentences around, in real Chromium: a RIGHT-TO-LEFT
OVERRIDE (U+202E) in a provider's error type, a model name or a query runs on to the end of its
paragraph unless the page isolates it (``<bdi>``). Each test finds a phrase of the page's own
and checks that its first word is drawn left of its second."""

from __future__ import annotations

from typing import Any

import pytest

from runtime import BlockStore
from runtime.blocks import BlockKind, NewBlock
from tests.web.tracefactory import T0, anthropic_request

pytestmark = pytest.mark.browser

RLO = "\u202e"

# The x of the phrase's first word and of the word after it, in the first text node under
# <main> that holds the phrase (null when there is none).
READS_LEFT_TO_RIGHT = """(phrase) => {
  const walk = document.createTreeWalker(document.querySelector("main"), NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const at = n.textContent.indexOf(phrase);
    if (at < 0) continue;
    const gap = phrase.indexOf(" ");
    const x = (from, to) => { const r = document.createRange(); r.setStart(n, from);
                              r.setEnd(n, to); return r.getBoundingClientRect().x; };
    return [x(at, at + gap), x(at + gap + 1, at + phrase.length)];
  }
  return [null, null]; }"""


def _assert_reads_left_to_right(page: Any, phrase: str) -> None:
    first, second = page.evaluate(READS_LEFT_TO_RIGHT, phrase)
    assert first is not None, f"{phrase!r} is not on the page"
    assert second > first, f"{phrase!r} is drawn right to left"


def _turns(store: BlockStore, session: str, count: int, **fields: Any) -> list[str]:
    from llm386web.store_access import get_traces
    from runtime.tracing.records import Provider, StoredTrace, new_record

    request = anthropic_request("You are a test.", ["Hello?"])
    store.put(session, NewBlock(BlockKind.USER_MESSAGE, "Hello?", created_at=T0))
    records = [new_record(request, session=session, turn=n, started_at=T0 + n,
                          provider=Provider.ANTHROPIC, **{"model": "claude-sonnet-4-6", **fields})
               for n in range(1, count + 1)]  # fmt: skip
    get_traces().record_many([StoredTrace(r, request) for r in records])
    return [r.call_id for r in records]


def test_a_right_to_left_override_in_a_model_name_does_not_reverse_the_page_around_it(
    browser: Any, browser_store: BlockStore
) -> None:
    from llm386web.store_access import get_traces
    from runtime.otel.ingest import ingest_request
    from tests.fakes import otlp

    # A span's model attribute is the exporter's text: U+202E (RIGHT-TO-LEFT OVERRIDE) in it
    # must not run on into the page's own sentence after it.
    spans = [otlp.current_chat(2, turn=1, **{"gen_ai.request.model": f"gpt{RLO}-4o"})]
    traces = get_traces()
    ingest_request(otlp.request(*spans), browser_store, traces)
    browser.login()
    browser.page.goto(f"/traces/{traces.turns('conv-1')[0][1]}/")
    _assert_reads_left_to_right(browser.page, "it holds the messages")
    assert browser.page_errors == []


def test_a_right_to_left_override_in_a_providers_error_type_does_not_reverse_the_turn_page(
    browser: Any, browser_store: BlockStore
) -> None:
    from runtime.providers.response import Attempt
    from runtime.tracing.records import TraceError

    kind, message = f"overloaded{RLO}_error", f"Overloaded{RLO}, try later"
    attempt = Attempt(number=1, status=529, error_type=kind, message=message, latency_ms=5.0)
    [call_id] = _turns(browser_store, "bidi-error", 1, attempts=(attempt,),
                       error=TraceError(kind, message, 529))  # fmt: skip
    browser.login()
    page = browser.page
    page.goto(f"/traces/{call_id}/")
    _assert_reads_left_to_right(page, "(HTTP 529)")  # after the error type, in its sentence
    page.locator("details.meta summary", has_text="HTTP attempts").click()
    row = page.locator("details.meta table.data tbody tr").first
    type_box = row.locator("td").nth(2).locator("bdi").first.bounding_box()
    message_box = row.locator("td").nth(2).locator("bdi").nth(1).bounding_box()
    assert type_box and message_box and message_box["x"] > type_box["x"]
    assert browser.page_errors == []


def test_a_right_to_left_override_in_a_model_name_does_not_reverse_the_compare_picker(
    browser: Any, browser_store: BlockStore
) -> None:
    a, _ = _turns(browser_store, "bidi-pick", 2, model=f"gpt{RLO}-4o")
    browser.login()
    browser.page.goto(f"/compare/pick/?a={a}&q=bidi-pick")
    _assert_reads_left_to_right(browser.page, "by session")  # after the candidate's model
    assert browser.page_errors == []


def test_a_right_to_left_override_in_the_query_does_not_reverse_the_compare_pickers_answer(
    browser: Any, browser_store: BlockStore
) -> None:
    a, _ = _turns(browser_store, "bidi-pick", 2)
    browser.login()
    browser.page.goto(f"/compare/pick/?a={a}&q=no{RLO}such")
    _assert_reads_left_to_right(browser.page, "Type a session")  # after the query, quoted
    assert browser.page_errors == []
