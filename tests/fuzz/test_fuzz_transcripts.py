"""Fuzzed transcript files: parsing and ``import`` refuse them with an error, never a
traceback; the CLI exits 2 with one line; sessions already in the store never change."""

from __future__ import annotations

from hypothesis import given

from tests.fuzz.entries import targets
from tests.fuzz.harness import FUZZ, fuzz_keeping_sessions, run_case
from tests.fuzz.strategies import transcript_files


def test_fuzzed_transcripts_never_crash_and_never_change_stored_sessions(tmp_path) -> None:
    with targets(tmp_path) as t:
        fuzz_keeping_sessions(t, transcript_files("fuzz"), ("transcript", "import"))


def test_fuzzed_transcripts_given_to_the_cli_exit_2_with_one_line(tmp_path) -> None:
    with targets(tmp_path) as t:

        @FUZZ
        @given(data=transcript_files("cli"))
        def case(data: bytes) -> None:
            run_case("cli-import", data, lambda d: t.run("cli-import", d))

        case()
