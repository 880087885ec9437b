"""The provider seam holds: SDKs stay in their provider's package, and nothing else branches on
a provider's name (it asks ``runtime.providers.get_provider(name)`` instead)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("runtime", "llm386web")
PROVIDERS_DIR = "runtime/providers/"
# Which packages may import each SDK. httpx2 is the transport both SDKs are built on (their
# clients' shared base in httpclient.py hooks it to hash the bytes sent) and the capture
# proxy's upstream client.
SDK_HOMES = {
    "anthropic": ("runtime/providers/anthropic/",),
    "httpx2": (
        "runtime/providers/anthropic/",
        "runtime/providers/httpclient.py",
        "runtime/providers/openai/",
        "runtime/proxy/",
    ),
    "openai": ("runtime/providers/openai/",),
}
NAMES = frozenset({"anthropic", "openai", "offline"})
# Enum members (Provider.ANTHROPIC) and module constants (catalog.ANTHROPIC) spelling a name.
NAME_SYMBOLS = frozenset({"ANTHROPIC", "OPENAI", "OFFLINE", "OFFLINE_MODEL_NAME"})


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            yield rel, ast.parse(path.read_text(encoding="utf-8"), rel)


def sdk_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Yield (line, SDK) for each import of a provider SDK in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots = [node.module.split(".")[0]]
        else:
            continue
        yield from ((node.lineno, root) for root in roots if root in SDK_HOMES)


def _names_a_provider(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.lower() in NAMES
    if isinstance(node, ast.Attribute):
        return node.attr in NAME_SYMBOLS
    if isinstance(node, ast.Name):
        return node.id in NAME_SYMBOLS
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_provider(element) for element in node.elts)
    return False


def name_branches(tree: ast.Module) -> Iterator[int]:
    """Yield the line of each comparison with a provider's name, and each ``case`` on one."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            if any(_names_a_provider(side) for side in (node.left, *node.comparators)):
                yield node.lineno
        elif isinstance(node, ast.MatchValue) and _names_a_provider(node.value):
            yield node.value.lineno


def test_each_sdk_is_imported_only_by_its_provider_package():
    found = [
        f"{rel}:{line} imports {sdk}"
        for rel, tree in _modules()
        for line, sdk in sdk_imports(tree)
        if not rel.startswith(SDK_HOMES[sdk])
    ]
    assert found == [], "import the SDK in its provider package only:\n" + "\n".join(found)


def test_nothing_outside_the_providers_branches_on_a_provider_name():
    found = [
        f"{rel}:{line}"
        for rel, tree in _modules()
        if not rel.startswith(PROVIDERS_DIR)
        for line in name_branches(tree)
    ]
    assert found == [], (
        "ask the provider (runtime.providers.get_provider(name)) instead of comparing its "
        "name:\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "source",
    [
        'if client.provider == "anthropic":\n    pass',
        "if record.provider is Provider.OFFLINE:\n    pass",
        "ok = record.provider in (Provider.ANTHROPIC, Provider.OFFLINE)",
        "if profile.provider != ANTHROPIC:\n    pass",
        "if name == OFFLINE_MODEL_NAME:\n    pass",
        'match target:\n    case "openai":\n        pass',
    ],
)
def test_the_scan_finds_each_way_of_branching_on_a_name(source):
    assert list(name_branches(ast.parse(source))) != []


@pytest.mark.parametrize(
    "source",
    [
        "if get_provider(record.provider).sends_stored_requests:\n    pass",
        'label = "the Anthropic API"',
        "if record.origin is TraceOrigin.IMPORT:\n    pass",
    ],
)
def test_the_scan_lets_questions_to_the_provider_through(source):
    assert list(name_branches(ast.parse(source))) == []


@pytest.mark.parametrize(
    ("source", "sdk"),
    [("import anthropic", "anthropic"), ("from httpx2 import Client", "httpx2"),
     ("import openai.types", "openai")],
)  # fmt: skip
def test_the_scan_finds_sdk_imports(source, sdk):
    assert [found for _, found in sdk_imports(ast.parse(source))] == [sdk]
