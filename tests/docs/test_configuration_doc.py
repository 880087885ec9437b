"""The llm386.toml shown in docs/configuration.md is the defaults, and loads without a warning."""

from __future__ import annotations

import re
from pathlib import Path

from runtime import Config, load_config

from .markdown import REPO


def _sample(tmp_path: Path) -> Path:
    text = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```toml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, "docs/configuration.md shows one llm386.toml"
    path = tmp_path / "llm386.toml"
    path.write_text(blocks[0], encoding="utf-8")
    return path


def test_the_documented_llm386_toml_loads_without_warnings(tmp_path: Path) -> None:
    assert load_config(_sample(tmp_path)).warnings == ()


def test_the_documented_values_are_the_defaults(tmp_path: Path) -> None:
    shown, default = load_config(_sample(tmp_path)), Config.default()
    assert shown.budgets == default.budgets
    assert shown.retrievers == default.retrievers
    assert shown.store.max_block_bytes == default.store.max_block_bytes
    assert shown.anthropic == default.anthropic
