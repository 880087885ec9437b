"""The supported API is runtime.__all__: sorted, complete, every name real, and cheap to import."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys

import pytest

import runtime
from runtime import errors, limits

# What `import runtime` must not load: the pipeline stages past the store, and their heavy
# dependencies (numpy, the anthropic SDK). They load when one of their names is first used.
HEAVY = (
    "anthropic",
    "numpy",
    "runtime.agent.core",
    "runtime.packer.core",
    "runtime.pager.core",
    "runtime.providers",
    "runtime.replay.repage",
    "runtime.replay.resend",
    "runtime.storage.lmdb.traces",
    "runtime.tracing.records",
)


def test_all_is_sorted_and_has_no_duplicates() -> None:
    assert runtime.__all__ == sorted(set(runtime.__all__))


@pytest.mark.parametrize("name", runtime.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(runtime, name) is not None


@pytest.mark.parametrize("name", sorted(runtime._LAZY))
def test_a_lazy_name_is_exported_and_is_its_module_object(name: str) -> None:
    assert name in runtime.__all__
    module = importlib.import_module(runtime._LAZY[name])
    assert getattr(runtime, name) is getattr(module, name)


def test_the_api_covers_each_pipeline_stage() -> None:
    # The issue names these as missing from the first API; they are the library's entry points.
    stages = {"open_store", "page", "pack", "LmdbTraceStore", "replay", "repage", "Agent"}
    data = {"TraceRecord", "PageOptions", "PagePlan", "PageRequest", "PackedRequest"}
    assert stages | data <= set(runtime.__all__)


def test_every_runtime_error_is_exported() -> None:
    defined = {
        name
        for module in (errors, limits)
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, errors.Llm386Error)
        and value.__module__ == module.__name__
    }
    assert defined - set(runtime.__all__) == set()


def test_an_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        runtime.nonesuch  # noqa: B018


def test_dir_lists_the_lazy_names() -> None:
    assert set(runtime._LAZY) <= set(dir(runtime))


def test_importing_runtime_loads_none_of_the_heavy_modules() -> None:
    code = (
        "import json, sys, runtime\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    "first",
    ["import runtime.replay.fidelity", "from runtime.replay.resend import send_traced", ""],
)
def test_replay_is_the_function_even_after_the_replay_package_loads(first: str) -> None:
    # Loading runtime/replay/ sets runtime.replay to the package unless the module refuses it.
    code = (
        f"{first}\nimport sys\nfrom runtime import replay, repage\n"
        "import runtime.replay.repage\n"
        "from runtime import replay as again\n"
        "resend = sys.modules['runtime.replay.resend']\n"
        "assert replay is again is resend.replay, replay\n"
        "assert repage is sys.modules['runtime.replay.repage'].repage, repage\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
