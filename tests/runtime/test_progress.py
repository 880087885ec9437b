"""Progress reports: lines at each 10% step off a terminal, a redrawn bar on one, a final total."""

from __future__ import annotations

import io

import pytest

from runtime.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_mode_reports_each_tenth_once_and_a_final_total() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("import", 200, unit="turns", stream=out, mode="lines", clock=clock) as p:
        for _ in range(200):
            clock.now += 0.01
            p.advance()
    lines = out.getvalue().splitlines()
    assert lines[0] == "import: 1/200 turns (0%)"
    assert [line for line in lines if line.startswith("import: 100/")] == [
        "import: 100/200 turns (50%)"
    ]
    assert len(lines) == 12  # 0%, 10% ... 100%, and the summary
    assert lines[-1] == "import: done, 200/200 turns (100%) in 2.0s"


def test_bar_mode_redraws_in_place_and_ends_with_a_newline() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress("copy", 4, stream=out, mode="bar", clock=clock, redraw_s=0.0)
    for _ in range(4):
        clock.now += 1
        p.advance()
    p.finish()
    text = out.getvalue()
    assert text.count("\r") == 5 and "\n" in text
    assert "copy [" + "#" * 28 + "] 4/4 (100%)" in text
    assert text.endswith("copy: done, 4/4 (100%) in 4.0s\n")


def test_unknown_total_reports_on_a_timer_and_a_failure_says_stopped() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress("scan", stream=out, mode="lines", clock=clock, line_every_s=5)
    with pytest.raises(RuntimeError), p:
        for _ in range(12):
            clock.now += 1
            p.advance()
        raise RuntimeError("boom")
    assert out.getvalue().splitlines() == ["scan: 5", "scan: 10", "scan: stopped, 12 in 12.0s"]


def test_environment_forces_the_mode_and_off_prints_nothing(monkeypatch) -> None:
    monkeypatch.setenv("LLM386_PROGRESS", "off")
    out = io.StringIO()
    with Progress("quiet", 3, stream=out) as p:
        p.advance(3)
    assert out.getvalue() == ""


def test_a_stream_that_is_not_a_terminal_gets_lines(monkeypatch) -> None:
    monkeypatch.delenv("LLM386_PROGRESS", raising=False)
    out = io.StringIO()
    assert Progress("x", 1, stream=out).mode == "lines"


def test_a_broken_stream_does_not_stop_the_work() -> None:
    out = io.StringIO()
    out.close()
    with Progress("x", 2, stream=out, mode="lines") as p:
        p.advance(2)
    assert p.done == 2
