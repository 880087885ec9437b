"""Fuzzed transcript files: parsing and ``import`` refuse them with an error, never a
traceback; the CLI exits 2 with one line; sessions already in the store never change."""

from __future__ import annotations

from hypothesis import given

from tests.fuzz.entries import targets
from tests.fuzz.harness import FUZZ, run_case
from tests.fuzz.stores import assert_unchanged, snapshot
from tests.fuzz.strategies import transcript_files


def test_fuzzed_transcripts_never_crash_and_never_change_stored_sessions(tmp_path) -> None:
    with targets(tmp_path) as t:
        before = snapshot(t.store, t.traces, t.sessions)

        @FUZZ
        @given(data=transcript_files("fuzz"))
        def case(data: bytes) -> None:
            for entry in ("transcript", "import"):
                run_case(entry, data, lambda d, entry=entry: t.run(entry, d))

        case()
        assert_unchanged(t.store, t.traces, t.sessions, before)


def test_fuzzed_transcripts_given_to_the_cli_exit_2_with_one_line(tmp_path) -> None:
    with targets(tmp_path) as t:

        @FUZZ
        @given(data=transcript_files("cli"))
        def case(data: bytes) -> None:
            run_case("cli-import", data, lambda d: t.run("cli-import", d))

        case()
