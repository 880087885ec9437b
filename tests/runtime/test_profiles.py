import dataclasses
import json
import re
import typing
from datetime import datetime
from pathlib import Path

import anthropic
import anthropic._data
import anthropic.types
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.cli import main
from runtime.config import Config
from runtime.errors import UnknownModel
from runtime.profiles.catalog import (
    ANTHROPIC,
    BUILTIN_PROFILES,
    ModelProfile,
    get_profile,
    list_profiles,
)
from runtime.profiles.lifecycle import LIFECYCLES, ModelStatus, lifecycle_of
from runtime.tokenizers import KNOWN_TOKENIZERS

REQUIRED_CLAUDE = (
    "claude-opus-4-7",
    "claude-opus-4-8",
    "claude-opus-5",
    "claude-sonnet-4-6",
    "claude-sonnet-5",
    "claude-haiku-4-5",
)
# The SDK version the lifecycle table (runtime.profiles.lifecycle) was last checked against: the one the
# lock pins. A newer SDK (make check-upgrades) fails here until the table is checked again.
CHECKED_SDK = "2.16.0"


def _sdk_claude_names() -> list[str]:
    """Return the model names the installed (pinned) SDK's ``anthropic.types.Model`` lists."""
    return list(typing.get_args(typing.get_args(anthropic.types.Model)[0]))


def _undated(names: list[str]) -> list[str]:
    return [n for n in names if not re.search(r"-\d{8}$", n)]


def _sdk_date(text: str) -> str:
    """Return "June 30th, 2026" (the SDK's deprecation table) as "2026-06-30"."""
    plain = re.sub(r"(\d+)(st|nd|rd|th)", r"\1", text)
    return datetime.strptime(plain, "%B %d, %Y").date().isoformat()


def _profile(context: int, reserved: int, margin: int) -> ModelProfile:
    return ModelProfile("m", "other", context, reserved, margin, "cl100k_base", True)


def test_input_budget_subtracts_reserve_and_margin():
    assert get_profile("claude-opus-4-7").input_budget == 200_000 - 8_192 - 4_096
    assert get_profile("gpt-4o").input_budget == 128_000 - 16_384 - 256
    assert get_profile("gpt-4.1").input_budget == 1_047_576 - 32_768 - 256
    assert get_profile("o3").input_budget == 200_000 - 100_000 - 256


def test_input_budget_is_zero_not_negative_when_reserve_exceeds_context():
    assert _profile(1_000, 900, 200).input_budget == 0


@given(context=st.integers(0, 10**7), reserved=st.integers(0, 10**7), margin=st.integers(0, 10**7))
def test_input_budget_is_within_zero_and_context(context, reserved, margin):
    budget = _profile(context, reserved, margin).input_budget
    assert 0 <= budget <= context
    assert budget == context - reserved - margin or budget == 0


def test_the_lifecycle_table_was_checked_against_the_pinned_and_installed_sdk():
    lock = (Path(__file__).resolve().parents[2] / "requirements.lock").read_text()
    pinned = re.search(r"^anthropic==(\S+)", lock, re.M)
    assert pinned is not None and pinned[1] == CHECKED_SDK
    assert anthropic.__version__ == CHECKED_SDK, (
        f"anthropic {anthropic.__version__} is installed but runtime.profiles.lifecycle was checked "
        f"against {CHECKED_SDK}: compare the two SDKs' anthropic.types.Model and "
        "_data.DEPRECATED_MODELS, update LIFECYCLES and CLAUDE_MODELS, then CHECKED_SDK"
    )


def test_every_claude_model_the_sdk_names_has_a_profile():
    names = _sdk_claude_names()
    undated = _undated(names)
    missing = [n for n in undated if n not in BUILTIN_PROFILES]
    assert set(REQUIRED_CLAUDE) <= set(undated)
    assert missing == []
    assert all(get_profile(n).provider == "anthropic" for n in names)


def test_every_builtin_claude_profile_the_sdk_no_longer_names_is_retired():
    named = set(_undated(_sdk_claude_names()))
    dropped = sorted(
        p.name for p in BUILTIN_PROFILES.values() if p.provider == ANTHROPIC and p.name not in named
    )
    assert "claude-sonnet-4-5" in dropped
    for name in dropped:
        lifecycle = lifecycle_of(name)
        assert lifecycle.status is ModelStatus.RETIRED, name
        assert lifecycle.end_of_life and lifecycle.source, name


def test_the_sdks_deprecated_models_are_deprecated_with_its_end_of_life_date():
    for name, when in anthropic._data.DEPRECATED_MODELS.items():
        lifecycle = lifecycle_of(name)
        assert lifecycle.status in (ModelStatus.DEPRECATED, ModelStatus.RETIRED), name
        assert lifecycle.end_of_life == _sdk_date(when), name


def test_every_model_the_lifecycle_table_names_has_a_profile_and_a_current_replacement():
    for name, lifecycle in LIFECYCLES.items():
        assert name in BUILTIN_PROFILES
        assert lifecycle.status is not ModelStatus.CURRENT
        assert lifecycle.replacement in BUILTIN_PROFILES
        assert lifecycle_of(lifecycle.replacement).status is ModelStatus.CURRENT
        assert (
            lifecycle.end_of_life
            == datetime.fromisoformat(lifecycle.end_of_life).date().isoformat()
        )


def test_a_retired_model_keeps_its_profile_and_its_snapshots_and_prefix_are_retired_too():
    assert get_profile("claude-sonnet-4-5").input_budget == 187_712
    assert lifecycle_of("claude-sonnet-4-5").replacement == "claude-sonnet-4-6"
    for name in ("claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"):
        assert lifecycle_of(name).status is ModelStatus.RETIRED
    assert lifecycle_of("claude-sonnet-4-6-20260101").status is ModelStatus.CURRENT
    assert lifecycle_of("my-local-model").status is ModelStatus.CURRENT


@pytest.mark.parametrize("name", REQUIRED_CLAUDE)
def test_claude_profiles_are_estimates_with_headroom(name):
    profile = get_profile(name)
    assert profile.provider == "anthropic"
    assert (profile.max_context_tokens, profile.reserved_output_tokens) == (200_000, 8_192)
    assert profile.safety_margin_tokens == 4_096
    assert profile.tokenizer == "cl100k_base"
    assert profile.tokens_estimated is True
    assert profile.supports_prompt_caching is True


def test_openai_profiles_use_o200k_and_exact_counts():
    expected = {
        "gpt-4o": (128_000, 16_384, 256),
        "gpt-4o-mini": (128_000, 16_384, 256),
        "gpt-4.1": (1_047_576, 32_768, 256),
        "o3": (200_000, 100_000, 256),
        "o1": (200_000, 100_000, 256),
    }
    for name, figures in expected.items():
        profile = get_profile(name)
        got = (profile.max_context_tokens, profile.reserved_output_tokens)
        assert (*got, profile.safety_margin_tokens) == figures
        assert (profile.provider, profile.tokenizer, profile.tokens_estimated) == (
            "openai",
            "o200k_base",
            False,
        )


def test_o1_has_no_system_role_and_o3_does():
    assert get_profile("o1").supports_system_role is False
    assert get_profile("o3").supports_system_role is True


def test_every_builtin_uses_a_shipped_tokenizer_and_has_a_positive_budget():
    for profile in BUILTIN_PROFILES.values():
        assert profile.tokenizer in KNOWN_TOKENIZERS
        assert profile.input_budget > 0


def test_provider_prefix_resolves_to_the_plain_profile():
    assert get_profile("anthropic/claude-sonnet-4-6") == get_profile("claude-sonnet-4-6")
    assert get_profile("openai/gpt-4o").name == "gpt-4o"


def test_provider_prefix_must_match_the_profiles_provider():
    with pytest.raises(UnknownModel):
        get_profile("openai/claude-sonnet-4-6")


def test_dated_snapshot_keeps_its_name_and_the_family_figures():
    profile = get_profile("claude-haiku-4-5-20251001")
    family = get_profile("claude-haiku-4-5")
    assert profile.name == "claude-haiku-4-5-20251001"
    assert dataclasses.replace(profile, name=family.name) == family
    assert get_profile("anthropic/claude-haiku-4-5-20251001").name == "claude-haiku-4-5-20251001"
    assert get_profile("gpt-4o-2024-08-06").max_context_tokens == 128_000


def test_unknown_model_suggests_close_names_and_the_config_fix():
    with pytest.raises(UnknownModel) as caught:
        get_profile("claude-sonet-4-6")
    message = str(caught.value)
    assert "'claude-sonet-4-6'" in message
    assert "Did you mean: claude-sonnet-4-6" in message
    assert '[models."claude-sonet-4-6"]' in message
    assert "llm386.toml" in message


def test_unknown_model_without_close_names_still_says_how_to_add_one():
    with pytest.raises(UnknownModel, match="llm386 models") as caught:
        get_profile("zzzz")
    assert "Did you mean" not in str(caught.value)


def test_list_profiles_is_sorted_by_name_and_includes_config_models():
    custom = ModelProfile("aaa-local", "other", 8_192, 1_024, 512, "o200k_base", True)
    override = dataclasses.replace(get_profile("gpt-4o"), reserved_output_tokens=4_096)
    config = Config(models=(custom, override))
    names = [p.name for p in list_profiles(config)]
    assert names == sorted(names)
    assert names[0] == "aaa-local"
    assert get_profile("gpt-4o", config).reserved_output_tokens == 4_096
    assert get_profile("gpt-4o").reserved_output_tokens == 16_384
    assert [p.name for p in list_profiles()] == sorted(BUILTIN_PROFILES)


def test_to_json_has_every_field_and_the_budget_with_sorted_keys():
    data = get_profile("claude-opus-5").to_json()
    field_names = {f.name for f in dataclasses.fields(ModelProfile)}
    assert set(data) == field_names | {"input_budget"}
    assert list(data) == sorted(data)
    assert data["input_budget"] == 187_712
    assert json.loads(json.dumps(data)) == data


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_profile("o3").max_context_tokens = 1  # type: ignore[misc]


def models_listing(run) -> list[str]:
    code, out, _ = run("models")
    assert code == 0
    return out.splitlines()


def test_cli_models_lists_every_profile_and_marks_estimates(run):
    lines = models_listing(run)
    claude = next(line for line in lines if line.startswith("claude-opus-5 "))
    gpt = next(line for line in lines if line.startswith("gpt-4o "))
    assert "187,712" in claude and claude.split()[-2:] == ["estimate", "current"]
    assert "111,360" in gpt and gpt.split()[-2:] == ["o200k_base", "current"]
    assert any(line.startswith("estimate: ") for line in lines)


def test_cli_models_shows_each_models_status_and_replacement(run):
    lines = models_listing(run)
    retired = next(line for line in lines if line.startswith("claude-sonnet-4-5 "))
    deprecated = next(line for line in lines if line.startswith("claude-opus-4-5 "))
    assert retired.endswith("retired 2026-11-30 -> claude-sonnet-4-6")
    assert deprecated.endswith("deprecated end of life 2027-01-22 -> claude-opus-4-6")
    assert any(line.startswith("retired: ") for line in lines)


def test_cli_models_json_and_one_model_include_the_lifecycle(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["models", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["claude-sonnet-4-6"]["status"] == "current"
    assert rows["claude-sonnet-4-6"]["replacement"] is None
    assert (rows["claude-sonnet-4-5"]["status"], rows["claude-sonnet-4-5"]["end_of_life"]) == (
        "retired",
        "2026-11-30",
    )
    assert main(["models", "claude-sonnet-4-5-20250929"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^status +retired$", text, re.M)
    assert re.search(r"^replacement +claude-sonnet-4-6$", text, re.M)
    assert "anthropic 2.16.0 no longer names it" in text


def test_cli_models_json_lists_profiles_in_name_order(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in data] == sorted(BUILTIN_PROFILES)


def test_cli_models_name_shows_one_profile_from_the_local_config(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llm386.toml").write_text('[models."gpt-4o"]\nsafety_margin_tokens = 1000\n')
    assert main(["--json", "models", "openai/gpt-4o-2024-08-06"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "gpt-4o-2024-08-06"
    assert data["safety_margin_tokens"] == 1000
    assert data["input_budget"] == 128_000 - 16_384 - 1000


def test_cli_models_unknown_name_is_one_error_line(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["models", "gpt-5o"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llm386: error: unknown model 'gpt-5o'")
    assert len(err.splitlines()) == 1


def test_cli_models_reports_config_warnings(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "other.toml"
    config.write_text("[budgets]\nretrived = 0.3\n")
    assert main(["models", "o1", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "warning: unknown key budgets.retrived in other.toml (line 2)" in out
