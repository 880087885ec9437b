"""Read links, anchors, code spans and the names they mention out of the project's Markdown.

Links are resolved the way GitHub renders them: a relative target is a path from the file's
folder, ``#anchor`` names a heading of the target (GitHub's slug: lower-cased, punctuation
dropped, spaces to hyphens, ``-1``, ``-2`` for repeats) or an ``<a id="…">`` in it. Text inside
fenced code blocks is code, not links; inline code spans are read apart (``spans``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .markdown import REPO, parse

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ANCHOR = re.compile(r"<a\s+id=\"([^\"]+)\"")
_SUBCOMMAND = re.compile(r"(?<![\w./-])llm386 +(?:--?[a-z-]+(?: +[^\s-]\S*)? +)*([a-z][a-z-]*)")


@dataclass(frozen=True)
class Link:
    path: Path  # the Markdown file it is in
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}: {self.target}"


def prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of the lines outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        opening = _FENCE.match(line)
        if opening and fence is None:
            fence = opening.group(1)[0] * len(opening.group(1))
        elif fence is not None and line.strip().startswith(fence):
            fence = None
        elif fence is None:
            yield number, line


def _without_spans(line: str) -> str:
    return _SPAN.sub("", line)


def links(path: Path) -> list[Link]:
    """Return every link and image target of ``path`` outside code."""
    return [
        Link(path, number, m.group(1))
        for number, line in prose_lines(path)
        for m in _LINK.finditer(_without_spans(line))
    ]


def spans(path: Path) -> list[tuple[int, str]]:
    """Return the inline code spans outside fenced blocks, with their line numbers."""
    return [
        (number, m.group(2).strip())
        for number, line in prose_lines(path)
        for m in _SPAN.finditer(line)
    ]


def slug(heading: str) -> str:
    """Return GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Return every anchor a link into ``path`` may name."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(path):
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(_ANCHOR.findall(line))
    return found


def resolve(link: Link) -> str | None:
    """Return why ``link`` does not resolve, or None when it does."""
    target = link.target
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... not checked here
        return None
    file_part, _, anchor = target.partition("#")
    file = (link.path.parent / file_part).resolve() if file_part else link.path
    if not file.exists():
        return "no such file"
    if not file.is_relative_to(REPO):
        return "outside the repository"
    if anchor and (file.suffix != ".md" or anchor not in anchors(file)):
        return f"no heading or <a id> #{anchor} in {file.relative_to(REPO)}"
    return None


def subcommands_named(path: Path) -> list[tuple[int, str]]:
    """Return each ``llm386 SUBCOMMAND`` a shell sample or a code span of ``path`` names."""
    found = [
        (sample.line + i, m.group(1))
        for sample in parse(path).samples
        if sample.language in {"sh", "bash", "shell", "console"}
        for i, line in enumerate(sample.code.splitlines(), 1)
        for m in _SUBCOMMAND.finditer(line.split("#", 1)[0])
    ]
    found += [(n, m.group(1)) for n, code in spans(path) for m in _SUBCOMMAND.finditer(code)]
    return found
