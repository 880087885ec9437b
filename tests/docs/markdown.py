"""Read the code samples and the benchmark figures out of the project's Markdown files.

The conventions the README (and CONVENTIONS.md and every docs/*.md) follows, so that none of it can drift:

- Every code sample is a fenced block with a language. ```sh / ```bash / ```shell / ```console
  and ```python blocks are run by tests/docs/test_samples.py against the demo store; any other
  language (```text, ```toml) is shown, not run. Unlabelled fences and indented code blocks are
  refused, so no command can hide from the tests.
- ``<!-- readme-test: skip (reason) -->``, on its own line before a runnable block, keeps it from
  running (it starts a server, needs the network or an API key); the reason is reported.
- ``<!-- figures FILE.json path=shown ... [FILE2.json ...] -->``, starting a line right after a
  paragraph or table names where its benchmark figures come from: each ``shown`` must appear
  in that text as written and equal the value at ``path`` in bench/results/FILE.json to the
  decimals shown (``0.57%`` is the fraction 0.0057). ``path`` is dotted keys with ``[n]`` list
  indexes: ``sizes[2].blocks``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHELL = frozenset({"sh", "bash", "shell", "console"})
PYTHON = frozenset({"python", "py", "python3"})

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:(.*?)-->")  # on a line of its own, not in `code`
_SKIP = re.compile(r"^\s*skip\s*\((.+)\)\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")


def markdown_files() -> list[Path]:
    """Return the Markdown files whose samples and figures are checked: README, CONVENTIONS
    and docs/."""
    return [REPO / "README.md", REPO / "CONVENTIONS.md", *sorted((REPO / "docs").rglob("*.md"))]


def _relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


@dataclass(frozen=True)
class Sample:
    """One fenced code block: where it is, its language, its code, and why it is skipped."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip: str | None = None

    @property
    def name(self) -> str:
        return f"{_relative(self.path)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.language in SHELL | PYTHON


@dataclass(frozen=True)
class Problem:
    """A place where a file breaks the conventions above."""

    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{_relative(self.path)}:{self.line}: {self.what}"


@dataclass(frozen=True)
class Parsed:
    samples: tuple[Sample, ...]
    problems: tuple[Problem, ...]


def parse(path: Path) -> Parsed:
    """Return the fenced blocks of ``path`` and every breach of the sample conventions."""
    lines = path.read_text(encoding="utf-8").splitlines()
    samples: list[Sample] = []
    problems: list[Problem] = []
    skip: tuple[int, str] | None = None  # (line, reason) of a marker awaiting its block
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            end = _closing_fence(lines, i, fence.group(1))
            language = fence.group(2).lower()
            if not language:
                problems.append(Problem(path, i + 1, "fenced block without a language"))
            reason = skip[1] if skip else None
            sample = Sample(path, i + 1, language, "\n".join(lines[i + 1 : end]) + "\n", reason)
            if reason and not sample.runnable:
                problems.append(Problem(path, skip[0], f"skip marker before a {language!r} block"))
            samples.append(sample)
            skip = None
            i = end + 1
            continue
        marker = _MARKER.match(line)
        if marker:
            skip = _read_marker(path, i + 1, marker.group(1), skip, problems)
        elif line.strip() and skip:
            problems.append(Problem(path, skip[0], "skip marker not followed by a code block"))
            skip = None
        if _starts_indented_code(lines, i):
            problems.append(Problem(path, i + 1, "indented code block: fence it with a language"))
        i += 1
    if skip:
        problems.append(Problem(path, skip[0], "skip marker not followed by a code block"))
    return Parsed(tuple(samples), tuple(problems))


def _closing_fence(lines: list[str], start: int, opening: str) -> int:
    """Return the index of the line closing the fence opened at ``start`` (or the last line)."""
    closing = re.compile(rf"^ {{0,3}}{re.escape(opening[0])}{{{len(opening)},}}\s*$")
    for j in range(start + 1, len(lines)):
        if closing.match(lines[j]):
            return j
    return len(lines)


def _read_marker(
    path: Path, line: int, text: str, pending: tuple[int, str] | None, problems: list[Problem]
) -> tuple[int, str] | None:
    if pending:
        problems.append(Problem(path, pending[0], "skip marker not followed by a code block"))
    skip = _SKIP.match(text)
    if not skip:
        problems.append(Problem(path, line, f"unknown readme-test marker {text.strip()!r}"))
        return None
    return line, skip.group(1).strip()


def _starts_indented_code(lines: list[str], i: int) -> bool:
    """Whether line ``i`` opens an indented code block (4+ spaces after a blank line).

    Indented text under a list item is a continuation paragraph, not code, so it is allowed.
    """
    if i == 0 or not lines[i].startswith("    ") or not lines[i].strip() or lines[i - 1].strip():
        return False
    before = next((x for x in reversed(lines[:i]) if x.strip()), "")
    return not (_LIST_ITEM.match(before) or before.startswith(" "))


def samples() -> list[Sample]:
    """Return every fenced block of every checked Markdown file, in file order."""
    return [s for path in markdown_files() for s in parse(path).samples]


def problems() -> list[Problem]:
    return [p for path in markdown_files() for p in parse(path).problems]


def shell_script(code: str) -> str:
    """Return the commands of a shell sample: with ``$ `` prompts, only the prompted lines.

    A prompted sample shows output after its commands; those lines are not run. A command
    continued with a trailing backslash keeps its continuation lines.
    """
    lines = code.splitlines()
    if not any(x.startswith("$ ") for x in lines):
        return code
    commands: list[str] = []
    continued = False
    for line in lines:
        if line.startswith("$ ") or continued:
            commands.append(line[2:] if line.startswith("$ ") and not continued else line)
            continued = line.endswith("\\")
    return "\n".join(commands) + "\n"


# Benchmark figures -------------------------------------------------------------------------

_FIGURES = re.compile(r"^<!--\s*figures\s(.*?)-->", re.DOTALL | re.MULTILINE)
_PATH = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Figure:
    """One figure the text quotes, with the bench result it must equal."""

    path: Path
    line: int  # of the figures comment
    results_file: str
    key: str
    shown: str
    text: str  # the paragraph or table the figure is quoted in

    @property
    def name(self) -> str:
        return f"{_relative(self.path)}:{self.line}:{self.results_file}:{self.key}"


def figures(path: Path) -> list[Figure]:
    """Return every figure named by a ``<!-- figures ... -->`` comment in ``path``."""
    source = path.read_text(encoding="utf-8")
    found: list[Figure] = []
    for comment in _FIGURES.finditer(source):
        line = source.count("\n", 0, comment.start()) + 1
        text = _text_before(source[: comment.start()])
        results_file = ""
        for token in comment.group(1).split():
            if token.endswith(".json"):
                results_file = token
                continue
            key, _, shown = token.partition("=")
            found.append(Figure(path, line, results_file, key, shown, text))
    return found


def _text_before(head: str) -> str:
    """Return the paragraph or table that ends just before a figures comment."""
    lines = head.splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("<!--")):
        lines.pop()
    block: list[str] = []
    while lines and lines[-1].strip():
        block.append(lines.pop())
    return "\n".join(reversed(block))


def lookup(data: object, key: str) -> object:
    """Return the value at a dotted ``key`` (with ``[n]`` indexes) in parsed JSON."""
    value = data
    for name, index in _PATH.findall(key):
        value = value[int(index)] if index else value[name]  # type: ignore[index]
    return value


def quoted(shown: str, text: str) -> bool:
    """Whether ``shown`` appears in ``text`` as a whole number, not inside a longer one."""
    return re.search(rf"(?<![\d.,]){re.escape(shown)}(?![\d]|[.,]\d)", text) is not None


def equals_shown(value: float, shown: str) -> bool:
    """Whether ``value`` rounds to ``shown`` ("1,698", "7.4"; "0.57%" for 0.0057) at its decimals."""
    digits = shown.replace(",", "")
    if digits.endswith("%"):
        value, digits = value * 100, digits[:-1]
    decimals = len(digits.partition(".")[2])
    return abs(value - float(digits)) <= 0.5 * 10**-decimals + 1e-9
