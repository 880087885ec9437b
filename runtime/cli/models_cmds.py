"""Model profile commands: ``llm386 models`` lists every profile, ``llm386 models NAME`` shows one."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from runtime.cli.common import Output, add_command, table
from runtime.config import Config, config_location, load_config
from runtime.profiles.catalog import ModelProfile
from runtime.profiles.lifecycle import ModelStatus, lifecycle_of

ESTIMATE_NOTE = (
    "estimate: the model's own tokenizer is not public, so token counts use the listed "
    "tokenizer and are estimates; the safety margin is the headroom for their error"
)

RETIRED_NOTE = (
    "retired: the API no longer serves the model; its profile stays so old traces display, but "
    "chat, replay and repage refuse it and name the replacement (-> NAME)"
)


def config_from(args: argparse.Namespace) -> Config:
    """Load ``--config``, else $LLM386_CONFIG, else ./llm386.toml if present, else defaults."""
    return load_config(config_location(getattr(args, "config", None), Path.cwd(), os.environ))


def cmd_models(args: argparse.Namespace) -> Output:
    config = config_from(args)
    if args.name:
        return _one(config.profile(args.name), config)
    profiles = config.profiles()
    rows = [_row(profile) for profile in profiles]
    headers = ["name", "provider", "context", "reserved", "margin", "input budget", "tokenizer",
               "", "status"]  # fmt: skip
    text = table(rows, headers)
    if any(profile.tokens_estimated for profile in profiles):
        text += f"\n\n{ESTIMATE_NOTE}"
    if any(lifecycle_of(p.name).status is ModelStatus.RETIRED for p in profiles):
        text += f"\n{RETIRED_NOTE}"
    return Output(_with_warnings(text, config), [_json(profile) for profile in profiles])


def _json(profile: ModelProfile) -> dict[str, object]:
    """Return the profile's fields, its input budget and its lifecycle, keys sorted."""
    return dict(sorted({**profile.to_json(), **lifecycle_of(profile.name).to_json()}.items()))


def _row(profile: ModelProfile) -> list[str]:
    return [
        profile.name,
        profile.provider,
        f"{profile.max_context_tokens:,}",
        f"{profile.reserved_output_tokens:,}",
        f"{profile.safety_margin_tokens:,}",
        f"{profile.input_budget:,}",
        profile.tokenizer,
        "estimate" if profile.tokens_estimated else "",
        lifecycle_of(profile.name).summary(),
    ]


def _one(profile: ModelProfile, config: Config) -> Output:
    data = _json(profile)
    width = max(len(key) for key in data)
    lines = [f"{key.ljust(width)}  {_show(value)}" for key, value in data.items()]
    if profile.tokens_estimated:
        lines.append(f"\n{ESTIMATE_NOTE}")
    if lifecycle_of(profile.name).status is ModelStatus.RETIRED:
        lines.append(RETIRED_NOTE)
    return Output(_with_warnings("\n".join(lines), config), data)


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _with_warnings(text: str, config: Config) -> str:
    return "\n".join([text, *(f"warning: {warning}" for warning in config.warnings)])


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``models``."""
    parser = add_command(sub, "models", cmd_models, "list model profiles, or show one")
    parser.add_argument("name", nargs="?", help="a model name (provider/ prefix and dated ok)")
    parser.add_argument("--config", help="llm386.toml to read (default: ./llm386.toml if present)")
