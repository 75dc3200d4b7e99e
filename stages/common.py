"""What every stage shares: argument parsing, params loading, clean error exits, devices."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from conceptspace import pipeline, studies
from conceptspace.io import ArtifactError, write_json
from conceptspace.params import Params, ParamsError

PARAMS_FILE = studies.BASE


def parser(doc: str | None, *, identity: bool = True) -> argparse.ArgumentParser:
    """An argument parser with ``--params`` and, for per-run stages, ``--run`` and ``--seed``."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    p.add_argument("--params", default=PARAMS_FILE, help="the study's params (default params.yaml)")
    p.add_argument(
        "--provenance",
        help="write the job's provenance record (params, code digests, key) here at the end",
    )
    if identity:
        p.add_argument("--run", required=True, help="run id (a key of `runs` in params.yaml)")
        p.add_argument("--seed", required=True, type=int, help="seed (one of `seeds`)")
    return p


def load(args: argparse.Namespace) -> Params:
    """Load and validate params and, for per-run stages, check the run id and seed."""
    params, doc = studies.load(args.params)
    if getattr(args, "run", None) is not None:
        params.grid_for(args.run)
        params.check_seed(args.seed)
    _LOADED.append((args, doc))
    return params


_LOADED: list[tuple[argparse.Namespace, dict]] = []


def _record(stage: str) -> None:
    """Write the job's provenance record beside its outputs, once they are all in place: the
    params it read, the digests of its code and the keys of the jobs it built on."""
    for args, doc in _LOADED:
        if getattr(args, "provenance", None):
            run, seed = getattr(args, "run", None), getattr(args, "seed", None)
            if getattr(args, "runs", None):  # the train stage takes a group; a job is one run
                run, seed = args.runs[0], args.seeds[0]
            rec = pipeline.job_record(doc, stage, run, seed if run is not None else None)
            write_json(Path(args.provenance), rec)


def entry(run: Callable[[Sequence[str] | None], None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a stage's ``main`` so that bad input exits 2 with one clear line, no traceback."""

    spec = getattr(sys.modules.get(run.__module__), "__spec__", None)
    stage = (spec.name if spec else run.__module__).rsplit(".", 1)[-1]

    def main(argv: Sequence[str] | None = None) -> int:
        try:
            _LOADED.clear()
            run(argv)
            _record(stage)
        except (ParamsError, ArtifactError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0

    main.__doc__ = run.__doc__
    return main


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
