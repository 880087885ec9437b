"""The one pagination type: a window of an ordered list and the cursors of its neighbours.

A list is paged by position (``offset``: sessions, a session's turns, a block's holders and
uses, a turn's entries and messages) or by key (``start``: a session's entries by seq, which
has gaps after deletes, so a position would need a scan). Either way the page models hand the
web a `Pagination`: the query parameter its cursor travels in, the cursor of this window and
of the first, previous, next and last ones (None where there is none), and a line saying which
items are shown. The web turns the cursors into URLs; nothing here knows about URLs.

Invariants: ``limit >= 1``; every cursor is ``>= 0``; ``next`` is set exactly when items
follow this window, ``prev`` exactly when items precede it. A window past the end of the list
is empty and its ``prev`` is the last window, so a stale link always leads back to the items.
Query values are parsed here too (`query_int`): anything but a plain whole number in
range is `InvalidInput` (a 400 on the web), never an exception from ``int()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import InvalidInput

OFFSET = "offset"
START = "start"
MAX_OFFSET = 10**12
MAX_SEQ = 2**63 - 1


@dataclass(frozen=True)
class Pagination:
    """Where one window of ``limit`` items sits in an ordered list of ``total`` (if known)."""

    param: str  # the query parameter the cursors travel in: OFFSET or START
    cursor: int  # this window's cursor
    limit: int
    total: int | None
    range_text: str
    first: int | None = None
    prev: int | None = None
    next: int | None = None
    last: int | None = None

    def __post_init__(self) -> None:
        cursors = (self.cursor, self.first, self.prev, self.next, self.last)
        if self.limit < 1 or any(c is not None and c < 0 for c in cursors):
            raise InvalidInput(f"{self.param} must be 0 or more and limit 1 or more")

    @property
    def has_prev(self) -> bool:
        return self.prev is not None

    @property
    def has_next(self) -> bool:
        return self.next is not None

    @property
    def is_paged(self) -> bool:
        """Return whether the list needs more than this one window."""
        return self.has_prev or self.has_next


def by_offset(offset: int, limit: int, total: int, *, noun: str = "") -> Pagination:
    """Return the pagination of items ``offset`` to ``offset + limit`` of ``total``."""
    if offset < 0 or limit < 1:
        raise InvalidInput("offset must be 0 or more and limit 1 or more")
    shown = max(min(offset + limit, total) - offset, 0)
    text = f"{noun}{offset + 1}–{offset + shown} of {total}" if shown else f"none of {total}"
    more = offset + limit < total
    # Next steps by limit from here, so Last keeps this window's alignment and Next reaches it.
    last = offset + (total - 1 - offset) // limit * limit if more else None
    # Past the end (a stale link), Previous leads back to the list's last window.
    back = max(offset - limit, 0) if offset < total else max(total - 1, 0) // limit * limit
    prev = back if offset > 0 else None
    return Pagination(
        OFFSET, offset, limit, total, text,
        first=0 if offset > 0 else None, prev=prev, next=offset + limit if more else None, last=last,
    )  # fmt: skip


def by_seq(
    start: int,
    limit: int,
    total: int | None,
    shown: tuple[int, int] | None,
    *,
    prev: int | None,
    next: int | None,
    last: int | None,
) -> Pagination:
    """Return the keyset pagination of entries from seq ``start`` (``shown``: first and last seq).

    The caller reads ``prev``/``next``/``last`` from the index (seqs have gaps, so they cannot
    be computed from ``start``): the first seq of the window before, after and at the end.
    """
    of = "" if total is None else f" of {total} entries"
    text = f"seq {shown[0]}–{shown[1]}{of}" if shown else f"none{of}"
    first = 0 if prev is not None else None
    return Pagination(START, start, limit, total, text, first, prev, next, last)


def query_int(
    raw: str | None, name: str, *, default: int, low: int = 0, high: int = MAX_OFFSET
) -> int:
    """Return the whole number ``raw`` from ``low`` to ``high`` (``default`` if absent or empty).

    Raises InvalidInput naming the parameter for anything else: a sign, a fraction, a word,
    non-ASCII digits ("²" passes str.isdigit but not int()), or a number out of range.
    """
    if raw is None or raw == "":
        return default
    # Length first: int() of over 4,300 digits raises ValueError instead of answering.
    plain = len(raw) <= len(str(high)) and raw.isascii() and raw.isdigit()
    if not plain or not low <= int(raw) <= high:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise InvalidInput(f"{name}={shown!r} is not a whole number from {low} to {high}")
    return int(raw)
