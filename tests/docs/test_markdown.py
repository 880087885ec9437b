"""The Markdown reader behind the sample and figure tests finds what it must and refuses the rest."""

from __future__ import annotations

from pathlib import Path

from .markdown import figures, parse, shell_script


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


def test_parse_finds_fenced_samples_with_their_line_language_and_skip_reason(
    tmp_path: Path,
) -> None:
    doc = _write(
        tmp_path,
        "# T\n\n```sh\nllm386 sessions\n```\n\n"
        "<!-- readme-test: skip (starts a server) -->\n```bash\nmake run\n```\n\n"
        "~~~python\nprint(1)\n~~~\n\n```toml\n[a]\n```\n",
    )
    parsed = parse(doc)
    assert parsed.problems == ()
    found = [(s.line, s.language, s.code, s.skip, s.runnable) for s in parsed.samples]
    assert found == [
        (3, "sh", "llm386 sessions\n", None, True),
        (8, "bash", "make run\n", "starts a server", True),
        (12, "python", "print(1)\n", None, True),
        (16, "toml", "[a]\n", None, False),
    ]


def test_parse_refuses_unlabelled_fences_and_indented_code(tmp_path: Path) -> None:
    doc = _write(tmp_path, "Run:\n\n    llm386 sessions\n\n```\nllm386 models\n```\n")
    assert [(p.line, p.what) for p in parse(doc).problems] == [
        (3, "indented code block: fence it with a language"),
        (5, "fenced block without a language"),
    ]


def test_indented_continuation_of_a_list_item_is_not_code(tmp_path: Path) -> None:
    doc = _write(tmp_path, "- an item\n\n    still the item\n")
    assert parse(doc).problems == ()


def test_parse_refuses_stray_and_misspelt_markers(tmp_path: Path) -> None:
    doc = _write(
        tmp_path,
        "<!-- readme-test: skip (no block follows) -->\nSome text.\n\n"
        "<!-- readme-test: skp (typo) -->\n```sh\nls\n```\n\n"
        "<!-- readme-test: skip (not runnable) -->\n```text\nx\n```\n",
    )
    assert [(p.line, p.what) for p in parse(doc).problems] == [
        (1, "skip marker not followed by a code block"),
        (4, "unknown readme-test marker 'skp (typo)'"),
        (9, "skip marker before a 'text' block"),
    ]


def test_shell_script_runs_only_prompted_lines_when_a_sample_shows_output() -> None:
    code = (
        "$ llm386 put --session s \\\n    --kind fact hi\nfa98…  s#0\n$ llm386 sessions\nsession\n"
    )
    assert shell_script(code) == "llm386 put --session s \\\n    --kind fact hi\nllm386 sessions\n"
    plain = "# a comment\nllm386 sessions\n"
    assert shell_script(plain) == plain


def test_figures_reads_each_source_and_the_text_it_is_quoted_in(tmp_path: Path) -> None:
    doc = _write(
        tmp_path,
        "Intro.\n\n| a | b |\n|---|---|\n| 7.4 ms | 50x |\n"
        "<!-- figures pager.json\nsizes[2].x.p50_ms=7.4\nweb.json y=50 -->\n",
    )
    found = [(f.line, f.results_file, f.key, f.shown) for f in figures(doc)]
    assert found == [(6, "pager.json", "sizes[2].x.p50_ms", "7.4"), (6, "web.json", "y", "50")]
    assert {f.text for f in figures(doc)} == {"| a | b |\n|---|---|\n| 7.4 ms | 50x |"}
