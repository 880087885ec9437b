"""The benchmark figures the README and docs/ quote are the ones in bench/results.

A ``<!-- figures FILE.json path=shown ... -->`` comment after a paragraph or table (see
tests/docs/markdown.py) names each figure's source; rerunning a benchmark without updating the
text it feeds fails here.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from .markdown import REPO, Figure, equals_shown, figures, lookup, markdown_files, quoted

RESULTS = REPO / "bench" / "results"
FIGURES = [f for path in markdown_files() for f in figures(path)]


@cache
def _results(name: str) -> Any:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def test_the_docs_name_the_source_of_their_benchmark_figures() -> None:
    # Guards the collection: with no figures comment found, the tests below would check nothing.
    quoted_files = {f.results_file for f in FIGURES}
    assert {"pager.json", "locomo.json", "web.json", "paging.json", "import.json"} <= quoted_files


@pytest.mark.parametrize("figure", FIGURES, ids=[f"{f.name}={f.shown}" for f in FIGURES])
def test_quoted_figure_equals_the_bench_result(figure: Figure) -> None:
    assert (RESULTS / figure.results_file).is_file(), f"{figure.name}: no such results file"
    assert figure.shown, f"{figure.name}: write it as path=shown"
    assert quoted(figure.shown, figure.text), (
        f"{figure.name}: {figure.shown} is not in the text above the comment:\n{figure.text}"
    )
    value = lookup(_results(figure.results_file), figure.key)
    assert isinstance(value, int | float), f"{figure.name} is {value!r}, not a number"
    assert equals_shown(value, figure.shown), (
        f"{figure.name}: the text says {figure.shown}, bench/results says {value}"
    )


@pytest.mark.parametrize(
    ("value", "shown", "equal"),
    [
        (50.3, "50", True),
        (7.4261, "7.4", True),
        (7.4261, "7.5", False),
        (373.901, "374", True),
        (102667.0, "102,667", True),
        (0.005708, "0.57%", True),
        (0.005708, "0.6%", True),
        (0.005708, "0.57", False),
        (63.0, "50", False),
    ],
)
def test_equals_shown_rounds_to_the_decimals_written(value: float, shown: str, equal: bool) -> None:
    assert equals_shown(value, shown) is equal


def test_quoted_matches_whole_numbers_only() -> None:
    assert quoted("50", "(**50x**, target 20x)")
    assert quoted("7.4", "blocks 7.4 ms")
    assert not quoted("7.4", "blocks 17.4 ms")
    assert not quoted("7.4", "blocks 7.45 ms")
    assert not quoted("1,698", "11,698 calls")
