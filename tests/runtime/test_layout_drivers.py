"""Each storage driver stays behind its backend: only runtime/storage/<backend>/ imports it.

Scans the product's code (runtime/ and llm386web/) with ``ast``: ``lmdb`` is imported only under
runtime/storage/lmdb/, ``psycopg`` and ``psycopg_pool`` only under runtime/storage/postgres/,
and LMDB's environment module (``runtime.storage.lmdb.env``) is used only by its own package.
Tests and benchmarks may use the drivers to set up and inspect a store.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("runtime", "llm386web")
DRIVERS = {
    "lmdb": "runtime/storage/lmdb/",
    "psycopg": "runtime/storage/postgres/",
    "psycopg_pool": "runtime/storage/postgres/",
}
LMDB_ENV = "runtime.storage.lmdb.env"


def _imports(path: Path) -> set[str]:
    """Return every module ``path`` imports, with ``from a import b`` also giving ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _product_files() -> list[tuple[str, set[str]]]:
    files = sorted(p for folder in PRODUCT for p in (ROOT / folder).rglob("*.py"))
    return [(p.relative_to(ROOT).as_posix(), _imports(p)) for p in files]


def test_only_each_backend_imports_its_driver():
    offenders = sorted(
        (where, name)
        for where, names in _product_files()
        for name in names
        if name.partition(".")[0] in DRIVERS
        and not where.startswith(DRIVERS[name.partition(".")[0]])
    )
    assert offenders == []


def test_no_new_module_reaches_lmdbs_environment_past_the_seam():
    users = sorted(
        where
        for where, names in _product_files()
        if LMDB_ENV in names and not where.startswith("runtime/storage/lmdb/")
    )
    assert users == []  # talk to runtime.storage.kv instead


def test_the_scan_sees_an_import_of_each_shape(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import psycopg.pq\nfrom psycopg_pool import ConnectionPool\nfrom runtime.storage.lmdb import env\n"
    )
    assert {"psycopg.pq", "psycopg_pool", LMDB_ENV} <= _imports(sample)
