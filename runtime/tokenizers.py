"""Offline BPE tokenizers (tiktoken ``cl100k_base`` and ``o200k_base``) and their token counts.

Owns: loading the shipped rank files from ``runtime/data/tiktoken``, checking each against
``SHA256SUMS`` before use, and a per-process cache of ready tokenizers.

Invariants:
- Nothing here touches the network or tiktoken's download cache. The rank files are read from
  the package directory only, and the pattern strings and special tokens are copied below from
  ``tiktoken_ext.openai_public`` (whose constructors would download); a test compares them.
- A rank file is used only if its SHA-256 equals the line in ``SHA256SUMS``; otherwise
  ``TokenizerError`` says which file, the expected and actual digests, and how to fix it.
- ``count(text) == len(encode(text))`` for every ``str``: special-token text such as
  ``<|endoftext|>`` is counted as ordinary text, and lone surrogates never raise.
- ``Tokenizer.version`` names the tiktoken release, the encoding and the file digest, so a token
  count stored next to it can be trusted or recomputed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version as _distribution_version
from pathlib import Path

import tiktoken

from runtime.errors import TokenizerError

# tiktoken only gained ``__version__`` in later releases; the installed distribution always knows.
_TIKTOKEN_RELEASE = _distribution_version("tiktoken")

DATA_DIR = Path(__file__).parent / "data" / "tiktoken"
SUMS_FILE = "SHA256SUMS"

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@dataclass(frozen=True)
class EncodingSpec:
    """What tiktoken needs besides the ranks: the split pattern and the special tokens."""

    name: str
    pat_str: str
    special_tokens: tuple[tuple[str, int], ...]


SPECS: dict[str, EncodingSpec] = {
    "cl100k_base": EncodingSpec(
        "cl100k_base",
        _CL100K_PAT,
        (
            (_ENDOFTEXT, 100257),
            (_FIM_PREFIX, 100258),
            (_FIM_MIDDLE, 100259),
            (_FIM_SUFFIX, 100260),
            (_ENDOFPROMPT, 100276),
        ),
    ),
    "o200k_base": EncodingSpec(
        "o200k_base", _O200K_PAT, ((_ENDOFTEXT, 199999), (_ENDOFPROMPT, 200018))
    ),
}
KNOWN_TOKENIZERS: tuple[str, ...] = tuple(sorted(SPECS))


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """A loaded BPE encoding. Immutable; safe to share between threads."""

    name: str
    sha256: str
    _encoding: tiktoken.Encoding = field(repr=False, compare=False)

    @property
    def version(self) -> str:
        """Return "tiktoken-<release>/<encoding>/<first 12 hex of the rank file's SHA-256>"."""
        return f"tiktoken-{_TIKTOKEN_RELEASE}/{self.name}/{self.sha256[:12]}"

    def encode(self, text: str) -> list[int]:
        """Return the token ids of ``text``, treating special-token text as ordinary text."""
        return self._encoding.encode_ordinary(text)

    def count(self, text: str) -> int:
        """Return how many tokens ``text`` encodes to; never raises for any ``str``."""
        return len(self._encoding.encode_ordinary(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Return the token count of each text, in order."""
        # A plain loop, not encode_ordinary_batch: measured on 2 cores (tiktoken 0.14), the batch's
        # per-call thread pool was 1.4-3.5x slower for 8 to 1,000 texts of 200 to 20,000 words.
        encode = self._encoding.encode_ordinary
        return [len(encode(text)) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        """Return the text of ``ids`` (invalid UTF-8 sequences become U+FFFD)."""
        return self._encoding.decode(list(ids))


_cache: dict[str, Tokenizer] = {}
_cache_lock = threading.Lock()


def get_tokenizer(name: str) -> Tokenizer:
    """Return the shipped tokenizer ``name``, loading it once per process."""
    tokenizer = _cache.get(name)
    if tokenizer is not None:
        return tokenizer
    with _cache_lock:
        if name not in _cache:
            _cache[name] = load_tokenizer(name)
        return _cache[name]


# Token counts by (tokenizer, content key), for texts named by their content (block ids).
_counts: dict[tuple[str, str], int] = {}
COUNT_CACHE_SIZE = 65_536


def counts_by_key(name: str, keys: Sequence[str], texts: Sequence[str]) -> list[int]:
    """Return the token count of each of ``texts`` under tokenizer ``name``, encoding each
    distinct key once per process.

    ``keys[i]`` must name ``texts[i]`` by its content (a block id: one key, one text), so a text
    written again (the system prompt and tool schemas every session repeats, a block put a
    second time) is counted from memory; the counts are those ``count_many`` returns."""
    out: list[int | None] = [_counts.get((name, key)) for key in keys]
    todo = {key: text for key, text, n in zip(keys, texts, out, strict=True) if n is None}
    if todo:
        if len(_counts) + len(todo) > COUNT_CACHE_SIZE:
            _counts.clear()  # bounded: a long import keeps the most recent counts only
        counted = dict(zip(todo, get_tokenizer(name).count_many(list(todo.values())), strict=True))
        for key, n in counted.items():
            _counts[(name, key)] = n
        out = [counted[key] if n is None else n for key, n in zip(keys, out, strict=True)]
    return [int(n) for n in out]  # type: ignore[arg-type]


def remember_counts(name: str, counts: Mapping[str, int]) -> None:
    """Remember counts ``counts_by_key`` made for tokenizer ``name`` in another process (a
    worker that prepared a write), so this process does not count those texts again."""
    if len(_counts) + len(counts) > COUNT_CACHE_SIZE:
        _counts.clear()
    for key, n in counts.items():
        _counts[(name, key)] = n


def forget_counts() -> None:
    """Empty the process's counts by key (a benchmark measuring a cold writer calls it)."""
    _counts.clear()


def load_tokenizer(name: str, data_dir: Path = DATA_DIR) -> Tokenizer:
    """Build tokenizer ``name`` from the rank file in ``data_dir`` after checking its digest."""
    spec = _spec(name)
    data, digest = _read_verified(data_dir, f"{name}.tiktoken")
    encoding = tiktoken.Encoding(
        name,
        pat_str=spec.pat_str,
        mergeable_ranks=_parse_ranks(data, data_dir / f"{name}.tiktoken"),
        special_tokens=dict(spec.special_tokens),
    )
    return Tokenizer(name, digest, encoding)


def _spec(name: str) -> EncodingSpec:
    spec = SPECS.get(name)
    if spec is None:
        known = ", ".join(KNOWN_TOKENIZERS)
        raise TokenizerError(f"unknown tokenizer {name!r}; use one of: {known}")
    return spec


def expected_sha256(data_dir: Path, filename: str) -> str:
    """Return the SHA-256 that ``SHA256SUMS`` in ``data_dir`` records for ``filename``."""
    sums_path = data_dir / SUMS_FILE
    try:
        lines = sums_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenizerError(
            f"cannot read checksum list {sums_path}: {exc}; reinstall llm386web "
            "(the file ships with the package)"
        ) from exc
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == filename:
            return parts[0].lower()
    raise TokenizerError(
        f"{sums_path} has no checksum for {filename}; reinstall llm386web to restore it"
    )


def _read_verified(data_dir: Path, filename: str) -> tuple[bytes, str]:
    expected = expected_sha256(data_dir, filename)
    path = data_dir / filename
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerError(
            f"cannot read tokenizer file {path}: {exc.strerror or exc}; reinstall llm386web "
            "(the BPE files ship with the package; nothing is downloaded)"
        ) from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise TokenizerError(
            f"tokenizer file {path} is damaged: SHA-256 expected {expected}, got {actual}; "
            "reinstall llm386web or restore the file from git"
        )
    return data, actual


def _parse_ranks(data: bytes, path: Path) -> dict[bytes, int]:
    # Same format tiktoken.load.load_tiktoken_bpe reads ("<base64 token> <rank>" per line). It is
    # parsed here because that function also copies local files into tiktoken's cache directory.
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error) as exc:
            raise TokenizerError(
                f"{path} line {number} is not '<base64 token> <rank>'; reinstall llm386web"
            ) from exc
    return ranks
