"""Pages of a captured request that holds what JSON reads but UTF-8 cannot encode."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from runtime.tracing.records import Provider, StoredTrace, TraceOrigin, new_record

pytestmark = pytest.mark.django_db

PLAIN = b'{"model":"claude-sonnet-4-6","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}'
SURROGATE = PLAIN.replace(b'"hi"', b'"\\ud800"')


def test_a_request_holding_a_lone_surrogate_compares_and_opens_in_the_playground(
    logged_in: Client, traces: Any
) -> None:
    # json.loads reads "\ud800", so a proxy can capture it; rendering the compare page and the
    # playground raised UnicodeEncodeError when Django encoded the page: a 500 instead.
    records = [new_record(body, session="odd-unicode", turn=n, started_at=1_000 * n,
                          provider=Provider.ANTHROPIC, model="claude-sonnet-4-6",
                          origin=TraceOrigin.CAPTURE, latency_ms=1.0)
               for n, body in enumerate((PLAIN, SURROGATE), 1)]  # fmt: skip
    traces.record_many(
        [StoredTrace(r, body, None) for r, body in zip(records, (PLAIN, SURROGATE), strict=True)]
    )
    a, b = (r.call_id for r in records)
    pages = {url: logged_in.get(url) for url in (f"/compare/{a}/{b}/", f"/traces/{b}/playground/",
                                                 f"/traces/{b}/")}  # fmt: skip
    assert all(page.status_code == 200 for page in pages.values()), pages
    assert b"\\ud800" in pages[f"/traces/{b}/playground/"].content  # the escape: JSON for it
