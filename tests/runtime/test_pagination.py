"""The one pagination type: cursors of the neighbouring windows, range text, query parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import InvalidInput
from runtime.inspect.pagination import (
    MAX_OFFSET,
    OFFSET,
    START,
    Pagination,
    by_offset,
    by_seq,
    query_int,
)


def test_a_middle_window_links_every_neighbour() -> None:
    page = by_offset(50, 50, 120, noun="turns ")
    assert (page.param, page.cursor, page.limit, page.total) == (OFFSET, 50, 50, 120)
    assert (page.first, page.prev, page.next, page.last) == (0, 0, 100, 100)
    assert page.range_text == "turns 51–100 of 120"
    assert page.has_prev and page.has_next and page.is_paged


def test_the_first_and_last_windows_have_no_link_off_the_end() -> None:
    first, last = by_offset(0, 50, 120), by_offset(100, 50, 120)
    assert (first.first, first.prev, first.next, first.last) == (None, None, 50, 100)
    assert (last.first, last.prev, last.next, last.last) == (0, 50, None, None)
    assert last.range_text == "101–120 of 120"


def test_a_list_that_fits_one_window_is_not_paged() -> None:
    assert not by_offset(0, 50, 50).is_paged
    assert not by_offset(0, 50, 0).is_paged and by_offset(0, 50, 0).range_text == "none of 0"


def test_a_window_past_the_end_is_empty_and_leads_back_to_the_last_window() -> None:
    page = by_offset(10**9, 50, 120)
    assert page.range_text == "none of 120"
    assert (page.prev, page.next, page.last) == (100, None, None)


@given(offset=st.integers(0, 10_000), limit=st.integers(1, 600), total=st.integers(0, 10_000))
def test_offset_cursors_stay_in_the_list_and_walk_it_without_gaps(
    offset: int, limit: int, total: int
) -> None:
    page = by_offset(offset, limit, total)
    assert page.has_next == (offset + limit < total)
    assert page.has_prev == (offset > 0)
    if page.next is not None:
        assert page.next == offset + limit and page.last is not None
        assert page.next <= page.last < total <= page.last + limit
        assert (page.last - offset) % limit == 0  # Next, Next, ... lands on Last
    if page.prev is not None:
        assert 0 <= page.prev < offset and page.prev < max(total, 1)


@pytest.mark.parametrize(("offset", "limit"), [(-1, 50), (0, 0), (0, -5)])
def test_a_negative_offset_or_empty_limit_is_invalid_input(offset: int, limit: int) -> None:
    with pytest.raises(InvalidInput, match="offset must be 0 or more"):
        by_offset(offset, limit, 10)


def test_a_pagination_never_holds_a_negative_cursor() -> None:
    with pytest.raises(InvalidInput):
        Pagination(START, 0, 10, None, "", prev=-1)


def test_a_keyset_window_names_its_seqs_and_starts_again_at_zero() -> None:
    page = by_seq(40, 20, 70, (41, 60), prev=18, next=61, last=62)
    assert (page.param, page.cursor) == (START, 40)
    assert (page.first, page.prev, page.next, page.last) == (0, 18, 61, 62)
    assert page.range_text == "seq 41–60 of 70 entries"
    opening = by_seq(0, 20, None, (0, 19), prev=None, next=20, last=50)
    assert opening.first is None and opening.range_text == "seq 0–19"
    assert (
        by_seq(900, 20, 70, None, prev=62, next=None, last=None).range_text == "none of 70 entries"
    )


@pytest.mark.parametrize(("raw", "expected"), [(None, 7), ("", 7), ("0", 0), ("42", 42),
                                               (str(MAX_OFFSET), MAX_OFFSET)])  # fmt: skip
def test_query_int_reads_plain_whole_numbers(raw: str | None, expected: int) -> None:
    assert query_int(raw, "offset", default=7) == expected


@pytest.mark.parametrize(
    "raw",
    ["-1", "+1", "1.5", "1e3", " 1", "abc", "0x10", "²", "١٢", "9" * 5000, str(MAX_OFFSET + 1)],
)
def test_query_int_rejects_anything_else_naming_the_parameter(raw: str) -> None:
    with pytest.raises(InvalidInput, match=r"^offset=.* is not a whole number from 0 to "):
        query_int(raw, "offset", default=0)


def test_query_int_checks_the_low_bound_and_keeps_the_message_short() -> None:
    with pytest.raises(InvalidInput, match="limit='0' is not a whole number from 1 to 500"):
        query_int("0", "limit", default=50, low=1, high=500)
    with pytest.raises(InvalidInput) as caught:
        query_int("x" * 10_000, "start", default=0)
    assert len(str(caught.value)) < 120
