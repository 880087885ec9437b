"""What the README and docs/ point at exists: links and anchors, files, commands, make targets."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from runtime.cli import build_parser

from .links import Link, anchors, links, resolve, slug, spans, subcommands_named
from .markdown import REPO, markdown_files

FILES = markdown_files()
# Top-level folders whose paths the docs name in code spans; anything under them must exist.
_REPO_PATH = re.compile(
    r"^(?:\.\./)*(?:runtime|llm386web|tests|bench|docs|templates|static|requirements|\.ci)/"
    r"[\w./*-]*$"
)
_MAKE = re.compile(r"(?<![\w-])make ([a-z][a-z-]*)")


def _subcommands() -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_the_docs_are_found() -> None:
    names = {p.relative_to(REPO).as_posix() for p in FILES}
    assert {"README.md", "CONVENTIONS.md", "docs/cli.md", "docs/storage.md"} <= names


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(REPO).as_posix() for p in FILES])
def test_every_relative_link_resolves_to_a_file_and_anchor(path: Path) -> None:
    broken = [f"{link} ({why})" for link in links(path) if (why := resolve(link))]
    assert broken == []


def test_every_subcommand_a_sample_or_code_span_names_exists() -> None:
    known = _subcommands()
    named = [(p, n, name) for p in FILES for n, name in subcommands_named(p)]
    assert len(named) > 50  # guards the reader: it must find the samples' commands
    unknown = [
        f"{p.relative_to(REPO)}:{n}: llm386 {name}" for p, n, name in named if name not in known
    ]
    assert unknown == []


def test_cli_doc_has_a_section_for_every_subcommand() -> None:
    documented = anchors(REPO / "docs" / "cli.md")
    missing = sorted(name for name in _subcommands() if slug(f"`llm386 {name}`") not in documented)
    assert missing == []


def test_every_repository_path_in_a_code_span_exists() -> None:
    missing = []
    for path in FILES:
        for number, code in spans(path):
            if not _REPO_PATH.match(code) or "<" in code:
                continue
            base = path.parent if code.startswith("..") else REPO
            if not list(base.glob(code.rstrip("/"))):
                missing.append(f"{path.relative_to(REPO)}:{number}: {code}")
    assert missing == []


def test_every_make_target_named_exists() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    named = {
        (path.relative_to(REPO).as_posix(), m.group(1))
        for path in FILES
        for m in _MAKE.finditer(path.read_text(encoding="utf-8"))
    }
    assert {"run", "test"} <= {target for _, target in named}
    assert sorted(f"{p}: make {t}" for p, t in named if t not in targets) == []


# The readers above, on small inputs --------------------------------------------------------


def test_slug_is_githubs_anchor() -> None:
    assert slug("`llm386 page`") == "llm386-page"
    assert slug("Traces (`runtime/storage/lmdb/traces.py`, `chunks.py`)") == (
        "traces-runtimestoragelmdbtracespy-chunkspy"
    )
    assert slug("Models, configuration, tokenizers") == "models-configuration-tokenizers"


def test_resolve_reports_missing_files_and_anchors(tmp_path: Path) -> None:
    doc = REPO / "docs" / "cli.md"
    assert resolve(Link(doc, 1, "storage.md#verify-and-repair")) is None
    assert resolve(Link(doc, 1, "#llm386-replay")) is None
    assert resolve(Link(doc, 1, "https://example.com/x")) is None
    assert resolve(Link(doc, 1, "nowhere.md")) == "no such file"
    assert "no heading" in (resolve(Link(doc, 1, "storage.md#nowhere")) or "")


def test_links_skip_code_and_read_images(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text("See [a](x.md) and ![i](img/y.png), not `[b](z.md)`.\n```sh\n[c](w.md)\n```\n")
    assert [link.target for link in links(doc)] == ["x.md", "img/y.png"]


def test_subcommands_are_read_past_global_options(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text(
        "Run `llm386 --json traces` or `llm386 --store /tmp/s verify`; not llm386web.\n"
        "```sh\nllm386 diff A B  # then llm386 nosuch\necho llm386.toml\n```\n"
    )
    assert sorted(name for _, name in subcommands_named(doc)) == ["diff", "traces", "verify"]


def _url_shapes() -> set[str]:
    urls = (REPO / "llm386web" / "urls.py").read_text(encoding="utf-8")
    return {re.sub(r"<[^>]+>", "<>", "/" + p) for p in re.findall(r'path\("([^"]*)"', urls)}


def _shape(url: str) -> str:
    return re.sub(r"<[^>]+>", "<>", url.split("?", 1)[0])


def test_every_web_address_the_web_doc_names_is_routed() -> None:
    # In the pages table, "`/traces/<call id>/messages/` · `/json/`" means /traces/<call id>/json/.
    named: list[str] = []
    for _, line in spans_by_line(REPO / "docs" / "web.md"):
        first, *more = line
        base = first[: first.rstrip("/").rfind("/") + 1]
        named += [first, *(base + m.lstrip("/") for m in more)]
    routed = _url_shapes()
    assert len(named) > 15
    assert sorted(u for u in named if _shape(u) not in routed) == []


def spans_by_line(path: Path) -> list[tuple[int, list[str]]]:
    """Return, per line, the code spans that are web addresses: a table's first cell, else
    addresses with a placeholder."""
    found: dict[int, list[str]] = {}
    for number, code in spans(path):
        if code.startswith("/") and " " not in code.replace("<call id>", ""):
            found.setdefault(number, []).append(code)
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for number, codes in sorted(found.items()):
        line = lines[number - 1]
        if line.startswith("| `/"):
            cell = line.split("|")[1]
            out.append((number, [c for c in codes if f"`{c}`" in cell]))
            out += [(number, [c]) for c in codes if f"`{c}`" not in cell and "<" in c]
        else:
            out += [(number, [c]) for c in codes if "<" in c]
    return out
