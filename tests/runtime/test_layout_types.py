"""The storage seam is typed: no parameter or field named ``store``/``traces`` is ``Any``."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"store", "traces"}


def _untyped(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.arg in NAMES:
            annotation = node.annotation
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            annotation = node.annotation if node.target.id in NAMES else None
        else:
            continue
        if isinstance(annotation, ast.Name) and annotation.id == "Any":
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_store_is_typed_any() -> None:
    files = sorted([*(ROOT / "runtime").rglob("*.py"), *(ROOT / "llm386web").rglob("*.py")])
    assert [where for f in files for where in _untyped(f)] == []


def test_the_check_finds_an_untyped_store(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import Any\n\ndef f(store: Any) -> None: ...\n")
    assert _untyped(sample, tmp_path) == ["sample.py:3"]
