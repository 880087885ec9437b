"""The lock and pyproject tell the truth: every install comes from the lock, every import is declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCAL = {"runtime", "llm386web", "tests", "bench", "manage"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(group: str | None) -> list[Requirement]:
    project = _project()
    raw = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(line) for line in raw]


def _lock() -> dict[str, list[str]]:
    """Return each locked package's versions (a universal lock may pin one per Python range)."""
    pins: dict[str, list[str]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins.setdefault(canonicalize_name(match[1]), []).append(match[2])
    return pins


def _imports(folder: str) -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in LOCAL}


def _distributions(modules: set[str], declared: set[str]) -> set[str]:
    """Return the distribution each module comes from. A namespace shared by several
    distributions (``google``: protobuf and googleapis-common-protos) counts as the declared one
    when one of them is declared, whatever order the installer listed them in."""
    by_module = packages_distributions()
    missing = sorted(m for m in modules if m not in by_module)
    assert missing == [], f"imported but not installed: {missing}"
    found = set()
    for module in modules:
        names = sorted(canonicalize_name(d) for d in by_module[module])
        found.add(next((n for n in names if n in declared), names[0]))
    return found


def test_every_declared_dependency_is_locked_within_its_bounds():
    pins = _lock()
    for requirement in [*_requirements(None), *_requirements("dev")]:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is declared in pyproject.toml but not in requirements.lock"
        for version in pins[name]:
            assert requirement.specifier.contains(version, prereleases=True), (name, version)


def test_every_locked_package_is_pinned_with_hashes():
    text = (ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    pinned = [b for b in blocks if _PIN.match(b)]
    assert len(pinned) >= 30
    assert [b.split()[0] for b in pinned if "--hash=sha256:" not in b] == []


def test_every_module_the_product_imports_is_a_declared_runtime_dependency():
    declared = {canonicalize_name(r.name) for r in _requirements(None)}
    used = _distributions(_imports("runtime") | _imports("llm386web"), declared)
    assert sorted(used - declared) == []


def test_test_only_packages_stay_out_of_the_product():
    runtime_deps = {canonicalize_name(r.name) for r in _requirements(None)}
    dev = {canonicalize_name(r.name) for r in _requirements("dev")}
    assert "rank-bm25" in dev and "rank-bm25" not in runtime_deps
    used = _distributions(_imports("runtime") | _imports("llm386web"), runtime_deps)
    assert sorted(used & (dev - runtime_deps)) == []


def test_tests_and_benchmarks_import_only_declared_packages():
    declared = {canonicalize_name(r.name) for r in [*_requirements(None), *_requirements("dev")]}
    used = _distributions(_imports("tests") | _imports("bench"), declared)
    assert sorted(used - declared) == []
