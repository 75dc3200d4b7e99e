"""One numeric code path on every x86-64 CPU (docs/method.md §11).

The pinned run and a run on a simulated CPU without AVX-512 (every library's dispatch capped
below the machine's: MKL's instruction set, glibc's CPU features, plus the pinned variables)
make the same bytes; without the pin the simulated CPU changes them, so the check can fail.
Other platforms (ARM, GPUs) are promised the same numbers within a tolerance, not bytes: the
pinned and native paths of this machine stand in for two such platforms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conceptspace import numerics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOAD = os.path.join(ROOT, "tests", "numerics_workload.py")
AVX512 = "AVX512F,AVX512CD,AVX512BW,AVX512DQ,AVX512VL,AVX512_BF16,AVX512_VNNI,AMX_TILE"
WITHOUT_AVX512 = {
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=" + ",".join(f"-{f}" for f in AVX512.split(",")),
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "NPY_DISABLE_CPU_FEATURES": numerics.PINNED["NPY_DISABLE_CPU_FEATURES"],
    "OPENBLAS_CORETYPE": "Haswell",  # what OpenBLAS detects on an AVX2-only CPU
}
# OpenBLAS reads the CPU itself: another core type stands in for another CPU on any machine
# (Sandybridge: AVX without FMA, which every x86-64 CPU with AVX2 can run)
OTHER_OPENBLAS = {"OPENBLAS_CORETYPE": "Sandybridge"}


def _has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return "avx512f" in f.read()
    except OSError:
        return False


def _run(level: str, extra: dict[str, str] | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED}
    env.update({numerics.VARIABLE: level, "PYTHONPATH": ROOT, **(extra or {})})
    out = subprocess.run(
        [sys.executable, WORKLOAD], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pinned():
    return _run("avx2")


def test_pin_sets_every_library(pinned):
    eff = pinned["effective"]
    assert eff["torch_capability"] == "AVX2"
    assert eff["numpy_dispatch"] in ("X86_V3", "baseline")
    assert eff["mkl_cbwr"] == "COMPATIBLE"
    assert eff["onednn_max_isa"] == "AVX2"
    assert eff["openblas_coretype"] == "Haswell"


def test_pinned_bytes_equal_under_another_openblas_core(pinned):
    """The rendered images' blur is a matrix product through OpenBLAS, whose kernels follow
    the CPU it detects: the pin holds them at one core type whatever the machine says."""
    assert _run("avx2", OTHER_OPENBLAS)["sha256"] == pinned["sha256"]


def test_without_the_pin_another_openblas_core_changes_the_bytes():
    assert _run("native", OTHER_OPENBLAS)["sha256"] != _run("native")["sha256"]


@pytest.mark.skipif(not _has_avx512(), reason="needs a CPU with AVX-512 to simulate one without")
def test_pinned_bytes_equal_on_a_cpu_without_avx512(pinned):
    assert _run("avx2", WITHOUT_AVX512)["sha256"] == pinned["sha256"]


@pytest.mark.skipif(not _has_avx512(), reason="needs a CPU with AVX-512 to simulate one without")
def test_without_the_pin_the_simulated_cpu_changes_the_bytes():
    assert _run("native", WITHOUT_AVX512)["sha256"] != _run("native")["sha256"]


def test_other_platforms_agree_within_tolerance(pinned):
    """The tolerance promised where bytes are not (ARM, GPUs): losses to 1e-4 relative and
    samples to 1e-3 absolute after training, here between the pinned and native paths."""
    native = _run("native")
    np.testing.assert_allclose(native["losses"], pinned["losses"], rtol=1e-4)
    np.testing.assert_allclose(native["samples"], pinned["samples"], atol=1e-3)


def test_pin_refuses_after_torch_was_imported(monkeypatch):
    monkeypatch.setenv(numerics.VARIABLE, "avx2")
    monkeypatch.delenv("MKL_CBWR", raising=False)
    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", object()))
    with pytest.raises(numerics.NumericsError, match="MKL_CBWR"):
        numerics.pin()


def test_unknown_level_is_refused(monkeypatch):
    monkeypatch.setenv(numerics.VARIABLE, "fast")
    with pytest.raises(numerics.NumericsError, match="CONCEPTSPACE_NUMERICS"):
        numerics.level()
