"""Fuzzed session exports: ``import-session`` refuses them with an error, never a traceback;
the CLI exits 2 with one line; what the store held before never changes."""

from __future__ import annotations

from hypothesis import given

from runtime.transfer.exchange import export_lines
from tests.fuzz.entries import targets
from tests.fuzz.harness import FUZZ, fuzz_keeping_sessions, run_case
from tests.fuzz.strategies import export_files


def test_fuzzed_exports_never_crash_and_never_change_stored_sessions(tmp_path) -> None:
    with targets(tmp_path) as t:
        lines = export_lines(t.store, t.traces, t.sessions[0])[0]
        fuzz_keeping_sessions(t, export_files(lines), ("export-parse", "import-session"))


def test_fuzzed_exports_given_to_the_cli_exit_2_with_one_line(tmp_path) -> None:
    with targets(tmp_path) as t:
        lines = export_lines(t.store, t.traces, t.sessions[0])[0]

        @FUZZ
        @given(data=export_files(lines))
        def case(data: bytes) -> None:
            run_case("cli-import-session", data, lambda d: t.run("cli-import-session", d))

        case()
