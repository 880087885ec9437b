"""Every input a fuzz campaign ever crashed on (tests/fuzz/corpus/<entry>/) is now refused
cleanly by the entry point it crashed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.entries import RUNNERS, targets
from tests.fuzz.harness import CORPUS, run_case

CASES = sorted(CORPUS.glob("*/*.bin"))


def test_the_corpus_has_a_case_of_every_crash_kind_it_was_seeded_with() -> None:
    assert {path.parent.name for path in CASES} >= {"import", "import-session", "reply", "config"}
    assert {path.parent.name for path in CASES} <= set(RUNNERS)


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_saved_crash_is_refused_cleanly(path: Path, tmp_path: Path) -> None:
    entry = path.parent.name
    with targets(tmp_path, server=entry == "reply") as t:
        run_case(entry, path.read_bytes(), lambda d: t.run(entry, d))
