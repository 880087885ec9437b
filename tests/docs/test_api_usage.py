"""The README and docs/ use only the supported API, and docs/api.md describes all of it."""

from __future__ import annotations

import ast
import re

import pytest

import runtime

from .markdown import PYTHON, REPO, Sample, samples

PYTHON_SAMPLES = [s for s in samples() if s.language in PYTHON]
API = frozenset(runtime.__all__)


def outside_api(code: str) -> list[str]:
    """Return each use of ``runtime`` in ``code`` that is not a name of ``runtime.__all__``.

    Allowed: ``from runtime import NAME`` and ``import runtime`` then ``runtime.NAME`` for a
    NAME in ``__all__``. Anything under ``runtime.`` (``from runtime.pager.core import page``,
    ``import runtime.replay``) is internal.
    """
    found: list[str] = []
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "runtime":
            if node.module != "runtime":
                found.append(f"from {node.module} import ...")
            found += [f"from runtime import {a.name}" for a in node.names if a.name not in API]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("runtime.")]
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "runtime"
            and node.attr not in API
        ):
            found.append(f"runtime.{node.attr}")
    return found


def test_the_docs_have_python_samples() -> None:
    assert len(PYTHON_SAMPLES) >= 3


@pytest.mark.parametrize("sample", PYTHON_SAMPLES, ids=[s.name for s in PYTHON_SAMPLES])
def test_a_python_sample_uses_only_runtime_all(sample: Sample) -> None:
    assert outside_api(sample.code) == []


def test_outside_api_finds_internal_imports_and_attributes() -> None:
    code = (
        "import runtime\nimport runtime.replay\nfrom runtime import page, Internal\n"
        "from runtime.pager.core import page\nprint(runtime.open_store, runtime.limits)\n"
    )
    assert outside_api(code) == [
        "import runtime.replay",
        "from runtime import Internal",
        "from runtime.pager.core import ...",
        "runtime.limits",
    ]


def test_api_doc_names_every_name_of_all() -> None:
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", text))
    assert sorted(API - named) == []
