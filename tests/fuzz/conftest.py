"""Fuzz suite fixtures: prints how many cases each entry point ran."""

from __future__ import annotations

from typing import Any

from tests.fuzz.harness import CASES, LONG


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if CASES:
        mode = "long campaign" if LONG else "bounded run"
        counts = ", ".join(f"{entry} {count:,}" for entry, count in sorted(CASES.items()))
        terminalreporter.write_line(f"fuzz cases ({mode}): {counts}")
