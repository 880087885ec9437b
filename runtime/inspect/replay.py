"""What a page shows of a replay: the verdict on the bytes, both outputs side by side, figures.

Owns: ``ReplayView`` and ``replay_view`` (a ``ReplayResult`` -> the view), so a page holds the
figures and the output rows it renders, not the three full records a result carries.

Invariants:
- ``bytes_matched`` is the runtime's verdict, unchanged: True when the bytes that reached the
  HTTP layer hash to the recorded prompt hash, False when they did not, None when nothing was
  sent (no key, refused before sending).
- The output rows account for every line of both outputs once (see ``compareview``).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.inspect.compare import Row, diff_rows
from runtime.inspect.timeline import TurnSummary, summarize_record
from runtime.replay.resend import ReplayResult


@dataclass(frozen=True)
class ReplayView:
    summary: TurnSummary  # the new record
    compared_with: str  # call id whose output the new one is diffed against
    bytes_matched: bool | None
    sent_sha256: str | None
    prompt_hash: str
    identical_output: bool
    response_identical: bool  # the response bytes too (the offline model's are)
    added: int
    removed: int
    rows: tuple[Row, ...]
    input_cost_usd: float | None
    price_source: str

    @property
    def errored(self) -> bool:
        return self.summary.errored


def replay_view(result: ReplayResult) -> ReplayView:
    """Return the page's view of ``result``."""
    diff = result.output_diff
    return ReplayView(
        summary=summarize_record(result.record), compared_with=result.compared_with.call_id,
        bytes_matched=result.bytes_matched, sent_sha256=result.sent_sha256,
        prompt_hash=result.original.prompt_hash, identical_output=diff.identical,
        response_identical=result.response_identical, added=diff.added, removed=diff.removed,
        rows=tuple(diff_rows(diff.lines)), input_cost_usd=result.input_cost_usd,
        price_source="" if result.price is None else f"{result.price.source} ({result.price.as_of})",
    )  # fmt: skip
