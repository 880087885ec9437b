import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.config import (
    DEFAULT_MAX_BLOCK_BYTES,
    BudgetFractions,
    Config,
    RecencyMode,
    find_config,
    load_config,
)
from runtime.errors import ConfigError, UnknownModel
from runtime.profiles.catalog import get_profile
from tests.properties import WITH_FIXTURES

SECTIONS = ("state", "plan", "recent", "retrieved", "tools", "background", "slack")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llm386.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def test_no_file_gives_the_documented_defaults():
    config = load_config(None)
    assert config == Config.default()
    assert config.budgets.items() == (
        ("state", 0.10),
        ("plan", 0.05),
        ("recent", 0.20),
        ("retrieved", 0.40),
        ("tools", 0.15),
        ("background", 0.05),
        ("slack", 0.05),
    )
    r = config.retrievers
    assert (r.recency.weight, r.recency.mode, r.recency.half_life) == (0.25, "half-life", 20.0)
    assert (r.bm25.weight, r.bm25.k1, r.bm25.b) == (1.0, 1.2, 0.75)
    assert (r.lexical.weight, r.embedding.weight, r.embedding.dimensions) == (0.0, 0.25, 256)
    assert (r.source.weight, r.neighbours.weight) == (0.3, 3.75)
    assert r.pinned.weight == 1.0
    assert config.store.path is None
    assert config.store.max_block_bytes == DEFAULT_MAX_BLOCK_BYTES == 16 * 1024 * 1024
    assert (config.anthropic.timeout_seconds, config.anthropic.max_retries) == (60.0, 2)
    assert config.models == () and config.warnings == ()


def test_empty_file_equals_defaults_except_its_source(tmp_path):
    config = load(tmp_path, "")
    assert dataclasses.replace(config, source=None) == Config.default()
    assert config.source == tmp_path / "llm386.toml"


def test_missing_keys_keep_their_defaults(tmp_path):
    config = load(
        tmp_path,
        "[budgets]\nretrieved = 0.35\n[retrievers.bm25]\nk1 = 2\n"
        '[retrievers.recency]\nmode = "linear"\n[anthropic]\ntimeout_seconds = 5\n',
    )
    assert config.budgets.retrieved == 0.35
    assert config.budgets.recent == 0.20
    assert config.retrievers.bm25 == dataclasses.replace(config.retrievers.bm25, k1=2.0, b=0.75)
    assert isinstance(config.retrievers.bm25.k1, float)
    assert config.retrievers.recency.mode is RecencyMode.LINEAR
    assert config.retrievers.recency.half_life == 20.0
    assert config.anthropic.timeout_seconds == 5.0
    assert config.anthropic.max_retries == 2


def test_model_override_falls_back_to_the_builtin_values(tmp_path):
    config = load(tmp_path, '[models."claude-haiku-4-5"]\nreserved_output_tokens = 16000\n')
    builtin = get_profile("claude-haiku-4-5")
    assert config.profile("claude-haiku-4-5") == dataclasses.replace(
        builtin, reserved_output_tokens=16_000
    )
    assert config.profile("claude-haiku-4-5-20251001").reserved_output_tokens == 16_000
    assert config.profile("claude-opus-5") == get_profile("claude-opus-5")


def test_new_model_gets_nonzero_defaults_and_an_inferred_provider(tmp_path):
    config = load(tmp_path, '[models.local-llama]\nmax_context_tokens = 32768\n[models."gpt-9"]\n')
    local = config.profile("local-llama")
    assert local.provider == "other"
    assert local.max_context_tokens == 32_768
    assert local.reserved_output_tokens > 0 and local.safety_margin_tokens > 0
    assert local.input_budget == 32_768 - 4_096 - 4_096
    assert local.tokens_estimated is True
    assert config.profile("gpt-9").provider == "openai"
    assert config.profile("gpt-9").max_context_tokens > 0
    assert [p.name for p in config.models] == ["gpt-9", "local-llama"]


def test_new_model_with_every_key_set(tmp_path):
    config = load(
        tmp_path,
        '[models.mine]\nprovider = "acme"\nmax_context_tokens = 10000\n'
        "reserved_output_tokens = 1000\nsafety_margin_tokens = 0\n"
        'tokenizer = "o200k_base"\ntokens_estimated = false\nsupports_vision = true\n',
    )
    mine = config.profile("acme/mine")
    assert (mine.provider, mine.input_budget, mine.tokenizer) == ("acme", 9_000, "o200k_base")
    assert (mine.tokens_estimated, mine.supports_vision) == (False, True)


def test_unknown_keys_and_sections_become_warnings_with_lines(tmp_path):
    config = load(
        tmp_path,
        "# settings\n[retrievers.bm25]\nk1 = 1.5\nk3 = 2\n\n[retrievers.magic]\nweight = 1\n"
        '[models."gpt-4.1"]\ncontext = 5\n[extras]\nx = 1\n',
    )
    assert config.warnings == (
        "unknown section extras in llm386.toml (line 10); known: anthropic, budgets, models, "
        "openai, otel, proxy, retrievers, store",
        "unknown key retrievers.bm25.k3 in llm386.toml (line 4); known: b, k1, weight",
        "unknown section retrievers.magic in llm386.toml (line 6); known: bm25, embedding, "
        "lexical, neighbours, pinned, recency, source",
        'unknown key models."gpt-4.1".context in llm386.toml (line 9); known: '
        "max_context_tokens, provider, reserved_output_tokens, safety_margin_tokens, "
        "supports_prompt_caching, supports_system_role, supports_tools, supports_vision, "
        "tokenizer, tokens_estimated",
    )
    assert config.retrievers.bm25.k1 == 1.5


def test_unknown_key_in_dotted_or_inline_form_is_still_reported(tmp_path):
    config = load(tmp_path, "retrievers.bm25.k3 = 1\nstore = { pth = 'x' }\n")
    assert any(
        w.startswith("unknown key retrievers.bm25.k3 in llm386.toml (line 1)")
        for w in config.warnings
    )
    assert any(w.startswith("unknown key store.pth in llm386.toml") for w in config.warnings)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[retrievers.bm25]\nk1 = "high"', "retrievers.bm25.k1 is 'high'; expected a number"),
        ("[anthropic]\nmax_retries = true", "anthropic.max_retries is True; expected an integer"),
        ("[anthropic]\nmax_retries = 2.5", "anthropic.max_retries is 2.5; expected an integer"),
        ("[retrievers.embedding]\ndimensions = 0", "dimensions is 0; expected a number > 0"),
        ("[retrievers.recency]\nhalf_life = -1", "half_life is -1; expected a number > 0"),
        ("[retrievers.recency]\nmode = 'cubic'", "'cubic'; expected one of 'half-life', 'linear'"),
        ("[retrievers.bm25]\nb = 1.5", "retrievers.bm25.b is 1.5; expected a number from 0 to 1"),
        ("[retrievers.pinned]\nweight = nan", "retrievers.pinned.weight is nan; expected a number"),
        ("[store]\nmax_block_bytes = '16MiB'", "store.max_block_bytes is '16MiB'"),
        ("[store]\npath = 3", "store.path is 3; expected a non-empty path string"),
        ("[anthropic]\nbase_url = 'ftp://x'", "base_url is 'ftp://x'; expected an http(s) URL"),
        ("budgets = 3", "budgets is 3; expected a table ([budgets])"),
        ("[retrievers]\nbm25 = 1", "retrievers.bm25 is 1; expected a table"),
        ("[models.x]\ntokenizer = 'p50k'", "tokenizer is 'p50k'; expected one of cl100k_base"),
        ("[models.x]\nsupports_tools = 'yes'", "supports_tools is 'yes'; expected true or false"),
    ],
)
def test_wrong_types_and_ranges_name_the_key_value_and_expectation(tmp_path, text, needle):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text + "\n")
    assert needle in str(caught.value)
    assert str(caught.value).startswith("llm386.toml (line ")


@pytest.mark.parametrize("key", SECTIONS)
def test_budget_fraction_outside_zero_to_one_names_the_key(tmp_path, key):
    with pytest.raises(
        ConfigError, match=rf"budgets\.{key} is 1\.5; expected a number from 0 to 1"
    ):
        load(tmp_path, f"[budgets]\n{key} = 1.5\n")


def test_budget_fractions_summing_over_one_are_refused_naming_the_keys(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[budgets]\nretrieved = 0.5\nslack = 0.1\n")
    message = str(caught.value)
    assert "sum to 1.15, more than 1.0" in message
    assert "retrieved = 0.5, slack = 0.1" in message


@settings(WITH_FIXTURES, max_examples=60)
@given(fractions=st.lists(st.floats(0, 1), min_size=7, max_size=7))
def test_budget_fractions_load_exactly_when_they_sum_to_at_most_one(tmp_path, fractions):
    text = "[budgets]\n" + "".join(
        f"{k} = {v!r}\n" for k, v in zip(SECTIONS, fractions, strict=True)
    )
    if sum(fractions) <= 1.0:
        assert load(tmp_path, text).budgets == BudgetFractions(*fractions)
    elif sum(fractions) > 1.0 + 1e-6:
        with pytest.raises(ConfigError, match="more than 1.0"):
            load(tmp_path, text)


@pytest.mark.parametrize(
    "text",
    [
        '[anthropic]\napi_key = "sk-ant-SECRET"\n',
        '[models.x]\napi_key = "sk-ant-SECRET"\n',
        'ANTHROPIC_API_KEY = "sk-ant-SECRET"\n',
        '[anthropic]\napi-key = "sk-ant-SECRET"\n',
        '[[extra]]\nname = "a"\n[[extra]]\napiKey = "sk-ant-SECRET"\n',
    ],
)
def test_api_key_anywhere_is_refused_without_echoing_it(tmp_path, text):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert "ANTHROPIC_API_KEY" in message
    assert "SECRET" not in message


def test_invalid_toml_reports_line_and_column(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2, column 8"):
        load(tmp_path, "[budgets]\nplan = = 1\n")


def test_invalid_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "llm386.toml"
    path.write_bytes(b'[store]\npath = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="not valid UTF-8 .*offset 19"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")


def test_relative_store_path_is_relative_to_the_file(tmp_path):
    config = load(tmp_path, '[store]\npath = "data/store"\nmax_block_bytes = 1024\n')
    assert config.store.path == tmp_path / "data" / "store"
    assert config.store.max_block_bytes == 1024
    assert load(tmp_path, '[store]\npath = "/srv/s"\n').store.path == Path("/srv/s")


def test_model_without_input_budget_is_refused(tmp_path):
    text = "[models.tiny]\nmax_context_tokens = 8000\nreserved_output_tokens = 4000\n"
    with pytest.raises(ConfigError, match=r"models\.tiny reserved_output_tokens \(4000\)"):
        load(tmp_path, text)


def test_profile_lookup_consults_the_file_then_builtins(tmp_path):
    config = load(tmp_path, '[models."o3"]\nreserved_output_tokens = 50000\n')
    assert config.profile("openai/o3").reserved_output_tokens == 50_000
    assert get_profile("o3").reserved_output_tokens == 100_000
    with pytest.raises(UnknownModel):
        config.profile("not-a-model")
    assert [p.name for p in config.profiles()] == sorted(p.name for p in config.profiles())


def test_config_and_its_parts_are_frozen(tmp_path):
    config = load(tmp_path, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.budgets.slack = 0.5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.retrievers.bm25.k1 = 9  # type: ignore[misc]


def test_find_config_finds_only_the_file_in_that_folder(tmp_path):
    assert find_config(tmp_path) is None
    path = write(tmp_path, "")
    assert find_config(tmp_path) == path
