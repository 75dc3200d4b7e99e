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

Record = tuple[str | None, int | None, str]  # (run, seed, path) of a provenance record


def _job_options(
    p: argparse.ArgumentParser, *, identity: bool, group: bool, required: bool = True
) -> None:
    """The options of a job: ``--params``, ``--provenance`` and, for per-run stages, ``--run``
    and ``--seed``; in a stage that takes a group of runs (``group``), each of the last three
    once per run, in order."""
    p.add_argument("--params", default=PARAMS_FILE, help="the study's params (default params.yaml)")
    what = "the job's provenance record (params, code digests, key)"
    once = "; once per run of the group, in order, or not at all" if group else ""
    p.add_argument(
        "--provenance",
        action="append" if group else "store",
        help=f"write {what} here at the end{once}",
    )
    if identity and group:
        p.add_argument("--run", dest="runs", action="append", required=required, help="run id")
        p.add_argument(
            "--seed", dest="seeds", action="append", type=int, required=required, help="seed"
        )
    elif identity:
        p.add_argument("--run", required=required, help="run id (a key of `runs` in params.yaml)")
        p.add_argument("--seed", required=required, type=int, help="seed (one of `seeds`)")


def parser(
    doc: str | None, *, identity: bool = True, group: bool = False
) -> argparse.ArgumentParser:
    """An argument parser with ``--params`` and ``--provenance`` and, for per-run stages,
    ``--run`` and ``--seed``; a stage that takes a group of runs (``group``: stages/train.py,
    whose ``main`` is ``entry(run, group=True)``) takes them once per run."""
    p = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    _job_options(p, identity=identity, group=group)
    return p


def load_document(args: argparse.Namespace) -> tuple[Params, dict]:
    """Load and validate params and, for per-run stages, check the run id and seed. Returns
    the params and the merged document they were validated from."""
    params, doc = studies.load(args.params)
    if getattr(args, "run", None) is not None:
        params.grid_for(args.run)
        params.check_seed(args.seed)
    return params, doc


def load(args: argparse.Namespace) -> Params:
    """The params of :func:`load_document`."""
    return load_document(args)[0]


def records(args: argparse.Namespace) -> list[Record]:
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


class _Unreadable(Exception):
    """A command line that the stage's own parser will refuse."""


class _Reader(argparse.ArgumentParser):
    def error(self, message: str):  # raise where argparse would print the usage and exit
        raise _Unreadable(message)


def asked_records(
    argv: Sequence[str] | None, group: bool = False
) -> tuple[list[Record], dict | ParamsError | None]:
    """The provenance records a job's command line asks for and the params document they
    state, read as the stage reads them (:func:`_job_options`), before the job runs: ([], None)
    when none is asked for (or the stage will refuse the command line), and the
    :class:`ParamsError` in place of the document when the params cannot be read (the stage
    reports that itself, where it loads them)."""
    p = _Reader(add_help=False)
    _job_options(p, identity=True, group=group, required=False)
    try:
        args, _ = p.parse_known_args(argv)
        asked = records(args)
    except (_Unreadable, ValueError):  # ValueError: a group given unevenly (the stage says so)
        return [], None
    if not asked:
        return [], None
    try:
        return asked, studies.load(args.params)[1]
    except ParamsError as e:
        return asked, e


def check_group_records(doc: dict, ids: Sequence[tuple[str, int]]) -> None:
    """A job that writes the records of a group of runs trains exactly one of the study's
    training groups (conceptspace/pipeline.py, "Training groups"), so that each record names
    the batched model its run was trained in; a pipeline file cut for another
    ``train.ensemble`` is refused."""
    expected = pipeline.group_of(doc, *ids[0])
    if list(expected.members) != list(ids):
        want = " ".join(f"{r}/seed{s}" for r, s in expected.members)
        raise ParamsError(
            f"train.ensemble = {pipeline.ensemble_size(doc)}: {ids[0][0]}/seed{ids[0][1]} is "
            f"trained in the group {expected.name} ({want}), not as given; the pipeline file "
            "is out of date: regenerate it with `python -m stages.study` (DVC), or run snakemake"
        )


def write_records(stage: str, doc: dict, asked: Sequence[Record]) -> None:
    """Write the job's provenance records beside its outputs, once they are all in place: the
    params it read, the digests of its code and the keys of the jobs it built on. Each run of
    a group gets the record a lone job of that run writes (``pipeline.job_record``), with the
    size and sha256 of every file in its folder beside the key (conceptspace/staleness.py)."""
    for run, seed, path in asked:
        record = pipeline.job_record(doc, stage, run, seed)
        record[staleness.FILES] = staleness.written_files(Path(path).parent)
        write_json(Path(path), record)
        # the machine it ran on, beside the record and outside its key and checksums: the
        # bytes are promised the same on any x86-64 CPU with AVX2 (docs/method.md §11)
        write_json(Path(path).with_name(numerics.PLATFORM), numerics.platform())


def entry(
    run: Callable[[Sequence[str] | None], None], *, group: bool = False
) -> Callable[[Sequence[str] | None], int]:
    """Wrap a stage's ``main`` so that bad input exits 2 with one clear line, no traceback,
    and the provenance records its command line asks for are written once ``run`` returns
    (``group``: the stage takes a group of runs, as its :func:`parser` does). The records
    state the params document as it was before the job ran."""

    spec = getattr(sys.modules.get(run.__module__), "__spec__", None)
    stage = (spec.name if spec else run.__module__).rsplit(".", 1)[-1]

    def main(argv: Sequence[str] | None = None) -> int:
        busy = toollock.other_tool_message()  # cwd: the workspace, in both tools
        if busy:
            print(f"error: {busy}", file=sys.stderr)
            return 2
        try:
            asked, doc = asked_records(argv, group)
            run(argv)
            if isinstance(doc, ParamsError):  # the params changed while the job ran
                raise doc
            if asked:
                write_records(stage, doc, asked)
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
