"""Every input a fuzz campaign ever crashed on (tests/fuzz/corpus/<entry>/) is now refused
cleanly by the entry point it crashed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.entries import RUNNERS, Targets, targets
from tests.fuzz.harness import CORPUS, run_case
from tests.fuzz.stores import assert_unchanged, snapshot

CASES = sorted(CORPUS.glob("*/*.bin"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    """One good store (and API server) for every case; checked unchanged at the end."""
    with targets(tmp_path_factory.mktemp("corpus"), server=True) as t:
        before = snapshot(t.store, t.traces, t.sessions)
        yield t
        assert_unchanged(t.store, t.traces, t.sessions, before)


def test_the_corpus_has_a_case_of_every_crash_kind_it_was_seeded_with() -> None:
    assert {path.parent.name for path in CASES} >= {"import", "import-session", "reply", "config"}
    assert {path.parent.name for path in CASES} <= set(RUNNERS)


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_saved_crash_is_refused_cleanly(path: Path, shared: Targets) -> None:
    entry = path.parent.name
    run_case(entry, path.read_bytes(), lambda d: shared.run(entry, d))
