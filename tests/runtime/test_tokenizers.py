import dataclasses
import hashlib
import shutil
import socket
from pathlib import Path

import pytest
import tiktoken
import tiktoken_ext.openai_public as openai_public
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import TokenizerError
from runtime.tokenizers import (
    DATA_DIR,
    KNOWN_TOKENIZERS,
    SPECS,
    expected_sha256,
    get_tokenizer,
    load_tokenizer,
)

# Any Python str: every code point, with lone surrogates and special-token text mixed in often,
# because count() must never raise and must treat "<|endoftext|>" as ordinary text.
ANY_TEXT = st.lists(
    st.one_of(
        st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
        st.sampled_from(["<|endoftext|>", "<|endofprompt|>", "<|fim_prefix|>", " \n\r\t", "'ll"]),
    ),
    max_size=12,
).map("".join)
OFFICIAL_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Block every socket connect and point tiktoken's download cache at an empty folder."""

    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(socket.socket, "connect", _refuse_network)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse_network)
    return cache


@pytest.fixture
def data_copy(tmp_path):
    target = tmp_path / "tiktoken-data"
    shutil.copytree(DATA_DIR, target)
    return target


def test_known_tokenizers_are_the_two_shipped_encodings():
    assert KNOWN_TOKENIZERS == ("cl100k_base", "o200k_base")


def test_counts_known_text_with_known_ids():
    cl100k = get_tokenizer("cl100k_base")
    assert cl100k.encode("hello world") == [15339, 1917]
    assert cl100k.count("hello world") == 2
    assert get_tokenizer("o200k_base").encode("hello world") == [24912, 2375]


def test_loads_and_counts_with_sockets_blocked_and_an_empty_cache(no_network):
    for name in KNOWN_TOKENIZERS:
        tokenizer = load_tokenizer(name)
        assert tokenizer.count("The quick brown fox jumps over the lazy dog.") == 10
    assert list(no_network.iterdir()) == []


def test_shipped_patterns_and_specials_match_tiktokens_own_constructors(no_network):
    # Seed tiktoken's cache with the shipped files under the key it would use for the download,
    # so its constructors run without the network and we can compare what they build with ours.
    for name, url in OFFICIAL_URLS.items():
        key = hashlib.sha1(url.encode()).hexdigest()
        shutil.copyfile(DATA_DIR / f"{name}.tiktoken", no_network / key)
        official = openai_public.ENCODING_CONSTRUCTORS[name]()
        assert SPECS[name].pat_str == official["pat_str"]
        assert dict(SPECS[name].special_tokens) == official["special_tokens"]


@pytest.fixture(scope="module")
def official_encodings(tmp_path_factory):
    """tiktoken's own encodings, built by its constructors from a cache seeded with our files."""
    cache = tmp_path_factory.mktemp("seeded-cache")
    for name, url in OFFICIAL_URLS.items():
        key = hashlib.sha1(url.encode()).hexdigest()
        shutil.copyfile(DATA_DIR / f"{name}.tiktoken", cache / key)
    built = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        patch.setattr(socket.socket, "connect", _refuse_network)
        for name in OFFICIAL_URLS:
            spec = openai_public.ENCODING_CONSTRUCTORS[name]()
            built[name] = tiktoken.Encoding(
                spec["name"],
                pat_str=spec["pat_str"],
                mergeable_ranks=spec["mergeable_ranks"],
                special_tokens=spec["special_tokens"],
            )
    return built


def _refuse_network(*args, **kwargs):
    raise AssertionError("the tokenizer tried to use the network")


@settings(max_examples=150, deadline=None)
@given(text=ANY_TEXT)
def test_encodes_exactly_like_tiktokens_official_encoding(official_encodings, text):
    for name, official in official_encodings.items():
        assert get_tokenizer(name).encode(text) == official.encode(text, disallowed_special=())


@settings(max_examples=200, deadline=None)
@given(text=ANY_TEXT)
def test_count_equals_length_of_encode_and_never_raises(text):
    for name in KNOWN_TOKENIZERS:
        tokenizer = get_tokenizer(name)
        assert tokenizer.count(text) == len(tokenizer.encode(text))
        assert tokenizer.count(text) == len(tokenizer._encoding.encode_ordinary(text))


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(ANY_TEXT, max_size=12))
def test_count_many_matches_count_in_order(texts):
    tokenizer = get_tokenizer("o200k_base")
    assert tokenizer.count_many(texts) == [tokenizer.count(text) for text in texts]


def test_special_token_text_counts_as_ordinary_text():
    tokenizer = get_tokenizer("cl100k_base")
    ids = tokenizer.encode("<|endoftext|><|endofprompt|>")
    assert 100257 not in ids
    assert 100276 not in ids
    assert tokenizer.count("<|endoftext|>") > 1


def test_lone_surrogate_is_counted_not_raised():
    assert get_tokenizer("cl100k_base").count("a\ud800b") >= 2


def test_empty_text_has_no_tokens():
    assert get_tokenizer("cl100k_base").count("") == 0
    assert get_tokenizer("cl100k_base").count_many([]) == []


def test_get_tokenizer_returns_one_shared_instance_per_name():
    assert get_tokenizer("cl100k_base") is get_tokenizer("cl100k_base")
    assert get_tokenizer("cl100k_base") is not get_tokenizer("o200k_base")


def test_version_names_tiktoken_release_encoding_and_file_digest():
    digest = hashlib.sha256((DATA_DIR / "o200k_base.tiktoken").read_bytes()).hexdigest()
    version = get_tokenizer("o200k_base").version
    assert version == f"tiktoken-{tiktoken.__version__}/o200k_base/{digest[:12]}"


def test_tokenizer_is_immutable():
    tokenizer = get_tokenizer("cl100k_base")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tokenizer.name = "o200k_base"


def test_unknown_tokenizer_lists_the_known_ones():
    with pytest.raises(
        TokenizerError, match="unknown tokenizer 'p50k_base'.*cl100k_base, o200k_base"
    ):
        get_tokenizer("p50k_base")


def test_one_corrupted_byte_fails_the_checksum_naming_file_and_digests(data_copy):
    path = data_copy / "cl100k_base.tiktoken"
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x01
    path.write_bytes(bytes(data))
    expected = expected_sha256(data_copy, "cl100k_base.tiktoken")
    got = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(TokenizerError) as caught:
        load_tokenizer("cl100k_base", data_copy)
    message = str(caught.value)
    assert str(path) in message
    assert f"expected {expected}, got {got}" in message
    assert "reinstall" in message


def test_intact_copy_loads_from_a_passed_data_dir(data_copy):
    assert load_tokenizer("o200k_base", data_copy).count("hello world") == 2


def test_missing_rank_file_is_a_tokenizer_error(data_copy):
    (data_copy / "o200k_base.tiktoken").unlink()
    with pytest.raises(TokenizerError, match="cannot read tokenizer file .*o200k_base.tiktoken"):
        load_tokenizer("o200k_base", data_copy)


def test_missing_checksum_line_is_a_tokenizer_error(data_copy):
    sums = data_copy / "SHA256SUMS"
    kept = [line for line in sums.read_text().splitlines() if "o200k" not in line]
    sums.write_text("\n".join(kept) + "\n")
    with pytest.raises(TokenizerError, match="no checksum for o200k_base.tiktoken"):
        load_tokenizer("o200k_base", data_copy)


def test_missing_checksum_file_is_a_tokenizer_error(data_copy):
    (data_copy / "SHA256SUMS").unlink()
    with pytest.raises(TokenizerError, match="cannot read checksum list"):
        load_tokenizer("cl100k_base", data_copy)


def test_malformed_rank_line_with_matching_checksum_names_the_line(tmp_path: Path):
    path = tmp_path / "cl100k_base.tiktoken"
    path.write_bytes(b"IQ== 0\nnot-base64!! 1\n")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  cl100k_base.tiktoken\n")
    with pytest.raises(TokenizerError, match="line 2"):
        load_tokenizer("cl100k_base", tmp_path)


def test_counts_by_key_are_count_many_with_each_key_encoded_once(monkeypatch):
    from runtime import tokenizers

    monkeypatch.setattr(tokenizers, "_counts", {})
    monkeypatch.setattr(tokenizers, "COUNT_CACHE_SIZE", 4)
    texts = ["hello world", "a longer text, with punctuation!", "", "hello world", "\u00e9t\u00e9"]
    keys = ["k1", "k2", "k3", "k1", "k4"]
    for name in KNOWN_TOKENIZERS:
        expected = get_tokenizer(name).count_many(texts)
        assert tokenizers.counts_by_key(name, keys, texts) == expected
        assert tokenizers.counts_by_key(name, keys[::-1], texts[::-1]) == expected[::-1]
    # Counted once per key and tokenizer, and bounded: a full cache starts again.
    assert len(tokenizers._counts) <= 4
    assert tokenizers.counts_by_key("cl100k_base", ["k5"], ["one more"]) == [2]
    assert len(tokenizers._counts) == 1
