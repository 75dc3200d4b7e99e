"""What every stage shares: argument parsing, params loading, clean error exits, devices."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from conceptspace import numerics, pipeline, staleness, studies, toollock
from conceptspace.io import ArtifactError, write_json
from conceptspace.params import Params, ParamsError

PARAMS_FILE = studies.BASE


def parser(
    doc: str | None, *, identity: bool = True, group: bool = False
) -> argparse.ArgumentParser:
    """An argument parser with ``--params`` and ``--provenance`` and, for per-run stages,
    ``--run`` and ``--seed``. A stage that takes a group of runs (``group``: stages/train.py,
    which adds its own repeated ``--run`` and ``--seed``) takes ``--provenance`` once per run."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    p.add_argument("--params", default=PARAMS_FILE, help="the study's params (default params.yaml)")
    what = "the job's provenance record (params, code digests, key)"
    once = "; once per run of the group, in order, or not at all" if group else ""
    p.add_argument(
        "--provenance",
        action="append" if group else "store",
        help=f"write {what} here at the end{once}",
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


def document(args: argparse.Namespace) -> dict:
    """The merged params document that :func:`load` read for ``args``."""
    return next(doc for a, doc in _LOADED if a is args)


def _records(args: argparse.Namespace) -> list[tuple[str | None, int | None, str]]:
    """(run, seed, path) of each provenance record asked for: one per run of a group (the
    train stage: ``--provenance`` repeated, in the order of ``--run``/``--seed``), else the
    job's own ((None, None, path) for a per-study stage)."""
    paths = getattr(args, "provenance", None)
    if not paths:
        return []
    if isinstance(paths, list):
        return list(zip(args.runs, args.seeds, paths, strict=True))
    run = getattr(args, "run", None)
    return [(run, getattr(args, "seed", None) if run is not None else None, paths)]


def _record(stage: str) -> None:
    """Write the job's provenance records beside its outputs, once they are all in place: the
    params it read, the digests of its code and the keys of the jobs it built on. Each run of
    a group gets the record a lone job of that run writes (``pipeline.job_record``), with the
    size and sha256 of every file in its folder beside the key (conceptspace/staleness.py)."""
    for args, doc in _LOADED:
        for run, seed, path in _records(args):
            record = pipeline.job_record(doc, stage, run, seed)
            record[staleness.FILES] = staleness.written_files(Path(path).parent)
            write_json(Path(path), record)
            # the machine it ran on, beside the record and outside its key and checksums: the
            # bytes are promised the same on any x86-64 CPU with AVX2 (docs/method.md §11)
            write_json(Path(path).with_name(numerics.PLATFORM), numerics.platform())


def entry(run: Callable[[Sequence[str] | None], None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a stage's ``main`` so that bad input exits 2 with one clear line, no traceback."""

    spec = getattr(sys.modules.get(run.__module__), "__spec__", None)
    stage = (spec.name if spec else run.__module__).rsplit(".", 1)[-1]

    def main(argv: Sequence[str] | None = None) -> int:
        busy = toollock.other_tool_message()  # cwd: the workspace, in both tools
        if busy:
            print(f"error: {busy}", file=sys.stderr)
            return 2
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
