"""One numeric code path on every x86-64 CPU (docs/method.md §11).

PyTorch's own kernels, oneDNN (convolutions), MKL (matrix products), NumPy and OpenBLAS
(NumPy's and SciPy's matrix products) each pick their kernels by the instruction sets the CPU
has, and kernels of different widths sum in different orders: the same code gives different
float bytes on a CPU with AVX-512 or AMX and on one without. :func:`pin` fixes every one of
them to one level before any of them is loaded:

- PyTorch's kernels: ``ATEN_CPU_CAPABILITY=avx2``;
- oneDNN: ``ONEDNN_MAX_CPU_ISA=AVX2`` (no AVX-512, AVX-512 BF16 or AMX kernels);
- MKL: ``MKL_CBWR=COMPATIBLE``, its conditional numerical reproducibility branch that MKL
  promises on every x86-64 CPU (the AVX2 branch is promised on Intel CPUs only);
- NumPy: its AVX-512 dispatch targets disabled (``NPY_DISABLE_CPU_FEATURES``);
- OpenBLAS, which NumPy and SciPy bundle: its Haswell kernels (``OPENBLAS_CORETYPE``), the
  AVX2 and FMA ones, whatever core it detects (it reads the CPU itself: on an AVX2-only AMD
  EPYC it picks Haswell, on one with AVX-512 AVX-512 kernels, and the blur of every rendered
  image, a matrix product, differs in its last bits between the two).

AVX2 is what every x86-64 CPU of the last decade has; the cost of the pin against native
dispatch is measured by ``benchmarks/bench_numerics.py`` (docs: performance). The level and
the libraries' versions are part of every job's key (:func:`settings`); the CPU the job ran on
is recorded beside the key (:func:`platform`), not in it. ``CONCEPTSPACE_NUMERICS=native``
leaves every library at its native dispatch: the benchmark's baseline, never a committed
result (its jobs get other keys).

Nothing here imports torch or numpy at module level: the settings must be in the environment
before either is first imported (``stages/__init__.py`` and ``tests/conftest.py`` call
:func:`pin` first).
"""

from __future__ import annotations

import os
import platform as _platform
import sys

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
}
LEVELS = ("avx2", "native")
PLATFORM = "platform.json"  # beside each job's provenance record: :func:`platform`
VARIABLE = "CONCEPTSPACE_NUMERICS"


class NumericsError(RuntimeError):
    """The numerics cannot be pinned in this process (a library was loaded first)."""


def level() -> str:
    """The level this process runs at: ``avx2`` (the default) or ``native``."""
    value = os.environ.get(VARIABLE, "avx2")
    if value not in LEVELS:
        raise NumericsError(f"{VARIABLE}={value!r}: expected one of {', '.join(LEVELS)}")
    return value


def environment(lvl: str | None = None) -> dict[str, str]:
    """The environment variables of a level (empty for ``native``)."""
    return dict(PINNED) if (lvl or level()) == "avx2" else {}


def pin() -> str:
    """Put the level's settings in the environment, before torch or numpy is imported.

    Idempotent. Raises :class:`NumericsError` when torch or numpy was imported first with
    other settings: their dispatch is then already chosen and the process would compute on
    another path than its record says."""
    lvl = level()
    wanted = environment(lvl)
    loaded = [m for m in ("torch", "numpy") if m in sys.modules]
    differs = {k: v for k, v in wanted.items() if os.environ.get(k) != v}
    if loaded and differs:
        raise NumericsError(
            f"{' and '.join(loaded)} imported before conceptspace.numerics.pin(): "
            f"{', '.join(differs)} would not take effect; call pin() first"
        )
    os.environ.update(wanted)
    return lvl


def settings() -> dict[str, object]:
    """What decides the bytes, for every job's key: the level, its variables and the
    versions of the numeric libraries (a new torch may pick other kernels). Read from the
    installed packages' metadata, without importing them."""
    from importlib.metadata import version

    return {
        "level": level(),
        "environment": environment(),
        "torch": version("torch"),
        "numpy": version("numpy"),
    }


def effective() -> dict[str, object]:
    """What the libraries report they use in this process (checked, not assumed)."""
    import torch
    from numpy._core._multiarray_umath import __cpu_features__

    numpy_max = next(
        (f for f in ("AVX512_SPR", "AVX512_ICL", "X86_V4", "X86_V3") if __cpu_features__.get(f)),
        "baseline",
    )
    return {
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy_dispatch": numpy_max,
        "mkl_cbwr": os.environ.get("MKL_CBWR", "native"),
        "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "native"),
    }


def platform() -> dict[str, str]:
    """The machine a job ran on: recorded beside its key, so that a byte difference between
    two machines can be traced to what differs between them."""
    model, flags = "unknown", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == "model name" and model == "unknown":
                    model = value.strip()
                elif name.strip() == "flags" and not flags:
                    flags = value.strip()
    except OSError:
        pass
    wide = sorted(f for f in flags.split() if f.startswith(("avx512", "amx", "avx2", "fma")))
    return {
        "machine": _platform.machine(),
        "cpu": model,
        "cpu_features": " ".join(wide),
        "python": _platform.python_version(),
    }
