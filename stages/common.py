"""What every stage shares: argument parsing, params loading, clean error exits and the
provenance records a job's command line asks for (written by conceptspace/provenance.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from conceptspace import studies, toollock
from conceptspace.io import ArtifactError
from conceptspace.params import Params, ParamsError
from conceptspace.provenance import Record, write_records

PARAMS_FILE = studies.BASE


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
