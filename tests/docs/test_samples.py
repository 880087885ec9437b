"""Every shell and Python sample in the README and docs/ runs, against the demo store.

The demo is loaded once per test session the way `make run` loads it (`manage.py migrate`,
then `manage.py llm386_demo`) into a folder laid out like a checkout: ``var/`` is
``LLM386_HOME``, so ``var/store`` in a Python sample and a bare ``llm386`` in a shell sample both
reach the demo store. Each sample then runs in its own copy of that folder, so samples that
write, delete or purge cannot change what another sample sees. Shell samples run under
``bash -e -o pipefail`` with an ``llm386`` on PATH that runs this checkout's code; Python
samples run in a fresh interpreter. No sample sees an API key, so none reaches the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .markdown import PYTHON, REPO, SHELL, Sample, problems, samples, shell_script

SAMPLES = samples()
RUNNABLE = [s for s in SAMPLES if s.runnable]
TIMEOUT_S = 300
# What a sample may inherit from the test process: nothing that points at another store or
# config, and no key (a sample that needs one is marked skip).
_DROPPED = (
    "LLM386_STORE",
    "LLM386_CONFIG",
    "LLM386_PASSWORD",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
)


def _environment(checkout: Path, bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED and "PYTEST" not in k}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    python_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([str(bin_dir), python_bin, env.get("PATH", "")])
    env["PYTHONPATH"] = str(REPO)
    env["LLM386_HOME"] = str(checkout / "var")
    return env


def _llm386_shim(bin_dir: Path) -> None:
    """Write an ``llm386`` command that runs runtime.cli:main from this checkout."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "llm386"
    shim.write_text(
        f"#!{sys.executable}\nimport sys\nfrom runtime.cli import main\nsys.exit(main())\n"
    )
    shim.chmod(0o755)


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@dataclass(frozen=True)
class Demo:
    checkout: Path  # pristine: var/ holds the demo; copied, never run in
    bin_dir: Path  # the llm386 shim
    printed: str  # what `manage.py llm386_demo` printed


@pytest.fixture(scope="session")
def demo() -> Iterator[Demo]:
    """Load the demo once, as `make run` does (migrate, then llm386_demo)."""
    with tempfile.TemporaryDirectory(prefix="readme-demo-") as base:
        checkout, bin_dir = Path(base) / "checkout", Path(base) / "bin"
        (checkout / "var").mkdir(parents=True)
        _llm386_shim(bin_dir)
        env = _environment(checkout, bin_dir)
        for step in (["migrate", "--noinput"], ["llm386_demo"]):
            done = _run([sys.executable, str(REPO / "manage.py"), *step], REPO, env)
            assert done.returncode == 0, f"manage.py {step[0]} failed:\n{done.stdout}{done.stderr}"
        yield Demo(checkout, bin_dir, done.stdout)


@pytest.fixture
def sandbox(demo: Demo) -> Iterator[tuple[Path, dict[str, str]]]:
    """A private copy of the demo checkout and the environment to run a sample in it.

    Removed after the test (not kept in pytest's tmp_path): each copy holds a 70 MB store.
    """
    with tempfile.TemporaryDirectory(prefix="readme-sample-") as base:
        checkout = Path(base) / "checkout"
        shutil.copytree(demo.checkout, checkout)
        yield checkout, _environment(checkout, demo.bin_dir)


def test_every_code_sample_is_fenced_labelled_and_marked_correctly() -> None:
    assert [str(p) for p in problems()] == []


def test_the_readme_has_runnable_samples_of_both_kinds() -> None:
    # Guards the collection itself: a parser that found nothing would pass every sample test.
    languages = {s.language for s in RUNNABLE if s.path.name == "README.md" and not s.skip}
    assert languages & SHELL and languages & PYTHON


def test_skipped_samples_say_why() -> None:
    skipped = [s for s in RUNNABLE if s.skip]
    assert all(len(s.skip or "") >= 8 for s in skipped), [s.name for s in skipped]


def _case(sample: Sample) -> object:
    # A marked sample is skipped before its fixtures run: no demo load just to skip it.
    reason = f"{sample.name} marked in the Markdown: {sample.skip}"
    marks = [pytest.mark.skip(reason=reason)] if sample.skip else []
    return pytest.param(sample, id=sample.name, marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("sample", [_case(s) for s in RUNNABLE])
def test_sample_runs_against_the_demo_store(
    sample: Sample, sandbox: tuple[Path, dict[str, str]]
) -> None:
    checkout, env = sandbox
    if sample.language in SHELL:
        script = checkout / "sample.sh"
        script.write_text(shell_script(sample.code))
        argv = ["bash", "-e", "-o", "pipefail", str(script)]
    else:
        script = checkout / "sample.py"
        script.write_text(sample.code)
        argv = [sys.executable, str(script)]
    done = _run(argv, checkout, env)
    assert done.returncode == 0, (
        f"{sample.name} exited {done.returncode}\n--- sample ---\n{sample.code}"
        f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
    )


def _normalised(printed: str, checkout: Path | None = None) -> str:
    """Return demo output without what differs between runs: timings, paths, the password."""
    if checkout is not None:
        printed = printed.replace(str(checkout), "<repo>")
    printed = re.sub(r"\(\d+(\.\d+)? s\)", "(… s)", printed)
    return re.sub(r"(Password:\s+)\S+", r"\1<generated>", printed).strip()


@pytest.mark.slow
def test_the_readme_shows_what_loading_the_demo_prints(demo: Demo) -> None:
    shown = [s.code for s in SAMPLES if "llm386 is ready." in s.code]
    assert len(shown) == 1, "one sample shows what `make run` prints"
    assert _normalised(shown[0]) == _normalised(demo.printed, demo.checkout)
