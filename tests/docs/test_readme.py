"""The README stays a README (issue 10): at most 200 lines; the design lives in docs/."""

from __future__ import annotations

from .markdown import REPO

MAX_README_LINES = 200


def test_readme_is_at_most_200_lines() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move the detail to docs/"
    )
