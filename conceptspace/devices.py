"""Where and on how many threads a job computes: the intra-op thread count and the device a
params section asks for, with deterministic kernels on CUDA (docs/method.md). torch is
imported only when one of these is called."""

from __future__ import annotations

import os

from conceptspace.params import ParamsError


def set_threads(n: int) -> None:
    """Fix the intra-op thread count (results may depend on it, so it comes from params)."""
    import torch

    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def pick_device(requested: str, key: str = "train.device") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error
    naming ``key``. On CUDA, :func:`cuda_reproducible` is applied."""
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    elif requested == "cuda" and not torch.cuda.is_available():
        raise ParamsError(f"{key} = 'cuda': no CUDA device is available")
    if requested == "cuda":
        cuda_reproducible()
    return requested


def cuda_reproducible() -> None:
    """Deterministic CUDA kernels, so that a run repeats and resumes bit for bit on the same GPU
    (docs/method.md): cuDNN picks deterministic convolution algorithms, and attention
    uses the math kernel (the backward passes of the fused attention kernels are not guaranteed
    to be deterministic). TF32 settings are left as they are: they change rounding, not
    repeatability."""
    import torch

    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
