"""A plan is the same bytes on any machine: scores never depend on the CPU's vector units.

BLAS and numpy pick their kernels by the CPU (AVX-512, AVX2 with fused multiply-adds, plain
SSE), and a kernel's order of summation shows in a float's last bits. The golden plan hashes
were written on a machine with AVX-512 and failed on one without: embedding and merged scores
differed in their last bits, though every decision and prompt was the same. This test pages
one session in fresh processes with the default kernels and with the oldest ones each library
can be told to use (OpenBLAS's Prescott, numpy's x86-64-v2 baseline), and wants the same plans.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import hashlib, json, sys, tempfile
from pathlib import Path
from bench.bench_pager import SESSION, build, grow, profile_with_budget, tasks
from bench.common import SHIPPED_TAU
from runtime.pager.core import PageRequest, page

blocks, edges = grow(SHIPPED_TAU / "sessions.json", SHIPPED_TAU / "tools.json", 400)
store, _ = build(Path(tempfile.mkdtemp()) / "store", blocks, edges)
digest = hashlib.sha256()
for budget in (3_000, 16_000):
    for question in tasks(blocks)[:3]:
        plan = page(store, PageRequest(SESSION, question, profile_with_budget(budget)))
        data = plan.to_json() | {"every_omission": [o.to_json() for o in plan.every_omission()]}
        digest.update(json.dumps(data, sort_keys=True).encode())
print(digest.hexdigest())
"""
OLDEST = {
    "OPENBLAS_CORETYPE": "Prescott",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
}


def _plans_digest(tmp_path: Path, **env: str) -> str:
    script = tmp_path / "plans.py"
    script.write_text(SCRIPT)
    run_env = {**os.environ, "PYTHONPATH": os.getcwd(), **env}
    out = subprocess.run([sys.executable, "-W", "ignore", str(script)], env=run_env,
                         capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(sys.platform != "linux" or os.uname().machine != "x86_64",
                    reason="the kernels named are x86-64's")  # fmt: skip
def test_plans_are_the_same_bytes_with_the_oldest_vector_kernels(tmp_path):
    assert _plans_digest(tmp_path) == _plans_digest(tmp_path, **OLDEST)


def test_recency_halving_is_decimal_powers_of_one_ratio():
    """Recency's 0.5 ** (age / half_life) comes from no CPU-dispatched power function (numpy's
    is SVML's on AVX-512 CPUs): it matches the decimal value closely and halves every
    half_life entries."""
    import decimal

    import numpy as np

    from runtime.pager.retrievers import halving

    ages = np.array([0, 1, 7, 20, 40, 333, 5_000, 30_000, 10**9], dtype=np.int64)
    got = halving(ages, 20.0)
    with decimal.localcontext() as context:
        context.prec = 50
        want = [float(decimal.Decimal(0.5) ** (decimal.Decimal(int(a)) / 20)) for a in ages]
    assert got[0] == 1.0 and got[3] == 0.5 and got[4] == 0.25 and got[-1] == 0.0
    assert np.allclose(got, want, rtol=1e-11, atol=0)
    assert halving(np.zeros(0, dtype=np.int64), 3.0).shape == (0,)
