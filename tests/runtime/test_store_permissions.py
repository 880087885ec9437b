"""A store folder that llm386 creates is private to its owner: traces hold whole prompts."""

from __future__ import annotations

import stat

from runtime import open_store


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_store_folder_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "not-home" / ".llm386" / "store"
    open_store(path).close()
    assert _mode(path) == 0o700
    assert (path / "data.mdb").exists()


def test_an_existing_empty_folder_keeps_the_permissions_its_owner_gave_it(tmp_path):
    path = tmp_path / "shared"
    path.mkdir(mode=0o750)
    path.chmod(0o750)
    open_store(path).close()
    assert _mode(path) == 0o750
