"""docs/benchmarks.md is what bench/report.py makes of the committed bench/results, no more."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench import report

from .markdown import REPO

RESULTS = REPO / "bench" / "results"


def test_the_committed_benchmarks_page_is_the_reports_output() -> None:
    expected = report.render(report.load(RESULTS))
    assert (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8") == expected, (
        "docs/benchmarks.md is out of date: run `python -m bench.report`"
    )


def test_every_results_file_feeds_a_section() -> None:
    read = {name for _, names in report.SECTIONS for name in names}
    on_disk = {p.stem for p in RESULTS.glob("*.json")}
    assert on_disk - read - report.UNREPORTED == set()
    assert read <= on_disk


def test_a_changed_result_changes_the_page(tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    web = json.loads((results / "web.json").read_text())
    web["figures"]["turn_page"]["p50_ms"] = 291.0
    (results / "web.json").write_text(json.dumps(web))
    page = report.render(report.load(results))
    assert "| turn page | 291 |" in page
    assert page != report.render(report.load(RESULTS))


def test_check_mode_reports_a_stale_page(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    out.write_text("stale\n")
    assert report.main(["--out", str(out), "--check"]) == 1
    assert report.main(["--out", str(out)]) == 0
    assert report.main(["--out", str(out), "--check"]) == 0
