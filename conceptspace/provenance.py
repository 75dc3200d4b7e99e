"""A job's provenance records (``provenance.json`` beside its outputs): each holds the job's
:func:`conceptspace.pipeline.job_record` (the params it read, the digests of its code and the
keys of the jobs it built on) with the size and sha256 of every file in its folder beside the
key (conceptspace/staleness.py), and ``platform.json`` beside it names the machine it ran on.
The stages write them once a job's outputs are all in place (stages/common.py: ``entry``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from conceptspace import numerics, pipeline, staleness
from conceptspace.io import write_json
from conceptspace.params import ParamsError

Record = tuple[str | None, int | None, str]  # (run, seed, path) of a provenance record


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
