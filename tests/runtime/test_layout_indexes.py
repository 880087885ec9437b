"""The derived indexes and the code reading the store's tables are written on the key-value seam.

They reach the data only through ``store.kv`` (``runtime.storage.kv``), so every backend runs them:
none of these modules may import the LMDB driver or anything under ``runtime.storage.lmdb``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ON_THE_SEAM = (
    "runtime/indexes/__init__.py",
    "runtime/indexes/ann.py",
    "runtime/indexes/blockuses.py",
    "runtime/indexes/bm25.py",
    "runtime/indexes/callpoints.py",
    "runtime/indexes/embeddings.py",
    "runtime/indexes/recordindex.py",
    "runtime/indexes/rebuild.py",
    "runtime/indexes/sessionindex.py",
    "runtime/indexes/snapshot.py",
    "runtime/indexes/vectorchunks.py",
    "runtime/inspect/dashboard.py",
    "runtime/inspect/sessions.py",
    "runtime/packer/core.py",
    "runtime/packer/rendering.py",
    "runtime/pager/graph.py",
    "runtime/pager/retrievers.py",
)


def _imported(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


# What reaching past the seam looks like without an import: the LMDB wrapper of a store
# (``store.env``), a raw transaction or cursor, LMDB's transaction counter.
LMDB_ATTRIBUTES = frozenset({"env", "txn", "cursor", "last_txnid"})


def _attributes(tree: ast.AST) -> list[str]:
    return [node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in LMDB_ATTRIBUTES]  # fmt: skip


def _backend_specific(name: str) -> bool:
    return name == "lmdb" or name.startswith(("lmdb.", "runtime.storage.lmdb"))


@pytest.mark.parametrize("path", ON_THE_SEAM)
def test_index_modules_import_no_storage_backend(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)
    assert [name for name in _imported(tree) if _backend_specific(name)] == []
    assert _attributes(tree) == []


def test_the_scan_catches_a_backend_import() -> None:
    sample = "import lmdb\nfrom runtime.storage import lmdb as x\nfrom runtime.storage.lmdb.env import read\n"
    assert [n for n in _imported(ast.parse(sample)) if _backend_specific(n)] == [
        "lmdb", "runtime.storage.lmdb", "runtime.storage.lmdb.env", "runtime.storage.lmdb.env.read",
    ]  # fmt: skip


def test_the_scan_catches_a_reach_past_the_seam() -> None:
    sample = "store.env.db(b'x')\ntxn.cursor(db=db)\nt.txn.get(k)\n"
    assert sorted(_attributes(ast.parse(sample))) == ["cursor", "env", "txn"]


def test_every_index_module_is_scanned() -> None:
    found = {str(p.relative_to(ROOT)) for p in (ROOT / "runtime" / "indexes").glob("*.py")}
    assert found <= set(ON_THE_SEAM)
