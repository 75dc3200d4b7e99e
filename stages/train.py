"""Train the conditional diffusion model of one sweep point and seed, with dense checkpoints.

    python -m stages.train --run c040 --seed 0 \
        --dataset results/synthesize/c040/seed0/dataset.npz \
        --ckpt-dir results/train/c040/seed0/ckpt \
        --log-dir results/train/c040/seed0/log

Checkpoints land at the square-root spaced steps of ``train.checkpoints`` (known before
training starts) as ``step_XXXXXX.pt``; the log dir gets ``train_log.csv`` (loss per step) and
``checkpoints.csv`` (train/val/held-out loss per checkpoint). Work happens in ``<ckpt-dir>.partial``
and is renamed into place at the end, so the outputs are never half-written; a killed run,
started again, resumes from its last checkpoint there.

A group of up to ``train.ensemble`` runs of the study is trained together as one batched model
(conceptspace/model/ensemble.py) when the five options are repeated, once per run and in the
same order (``--provenance`` too, if given); every run still gets its own outputs, in the same
format, and its own provenance record, the one a lone job of that run writes:

    python -m stages.train \
        --run c040 --seed 0 --dataset .../c040/seed0/dataset.npz \
            --ckpt-dir .../c040/seed0/ckpt --log-dir .../c040/seed0/log \
            --provenance .../c040/seed0/provenance.json \
        --run c080 --seed 0 --dataset .../c080/seed0/dataset.npz \
            --ckpt-dir .../c080/seed0/ckpt --log-dir .../c080/seed0/log \
            --provenance .../c080/seed0/provenance.json

A group of one is a lone run, bit for bit. Both tools run such groups when ``train.ensemble``
is above 1: the study's training jobs are cut into consecutive groups of that size, each one
job (``train_g0``, ``train_g1``, ...; conceptspace/pipeline.py, "Training groups").
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from conceptspace import pipeline
from conceptspace.data.concepts import COND_DIM
from conceptspace.data.dataset import load_dataset, split_arrays
from conceptspace.io import ArtifactError
from conceptspace.model.checkpoints import CheckpointError
from conceptspace.model.ensemble import Member, check_members, train_ensemble
from conceptspace.model.training import TrainConfig, resumable_mismatch, train
from conceptspace.model.unet import UNetConfig
from conceptspace.params import ParamsError
from stages.common import document, entry, load, parser, pick_device, set_threads

# Repeated options, one value per run of the group: (attribute of the parsed args, key).
PER_RUN = (("runs", "run"), ("seeds", "seed"), ("dataset", "dataset"), ("ckpt_dir", "ckpt_dir"))
PER_RUN += (("log_dir", "log_dir"),)


def net_config(params, image_size: int, cond_dim: int = COND_DIM) -> UNetConfig:
    """The U-Net of params; image size and conditioning width come from the dataset (11 for
    shapes, 2 per attribute for folder data)."""
    return UNetConfig(image_size=image_size, cond_dim=cond_dim, **params.train.net.model_dump())


def group_args(args, params, doc: dict) -> list[dict]:
    """One dict per run of the group; refuses a malformed group before any work (``doc``: the
    study's params document, whose training groups a job that writes records must follow)."""
    values = [getattr(args, attr) for attr, _ in PER_RUN]
    if len({len(v) for v in values}) != 1:
        given = ", ".join(
            f"{len(v)} x --{key.replace('_', '-')}"
            for v, (_, key) in zip(values, PER_RUN, strict=True)
        )
        raise ParamsError(
            "give --run, --seed, --dataset, --ckpt-dir and --log-dir once per run of the group, "
            f"in the same order: got {given}"
        )
    keys = [key for _, key in PER_RUN]
    group = [dict(zip(keys, v, strict=True)) for v in zip(*values, strict=True)]
    for g in group:
        params.grid_for(g["run"])
        params.check_seed(g["seed"])
    ids = [(g["run"], g["seed"]) for g in group]
    if len(set(ids)) != len(ids):
        raise ParamsError(f"the group names a run twice: {ids}")
    if args.provenance and len(args.provenance) != len(group):
        raise ParamsError(
            f"give --provenance once per run of the group, in order, or not at all: got "
            f"{len(args.provenance)} for {len(group)} run(s)"
        )
    if len(group) > params.train.ensemble:
        raise ParamsError(
            f"train.ensemble = {params.train.ensemble}: a group of {len(group)} runs was given; "
            "raise train.ensemble or train the runs in smaller groups"
        )
    if args.provenance:
        _check_pipeline_group(ids, doc)
    return group


def _check_pipeline_group(ids: list[tuple[str, int]], doc: dict) -> None:
    """A job that writes provenance records trains exactly one of the study's training groups
    (conceptspace/pipeline.py, "Training groups"), so that each record names the batched model
    its run was trained in; a pipeline file cut for another ``train.ensemble`` is refused."""
    expected = pipeline.group_of(doc, *ids[0])
    if list(expected.members) != ids:
        want = " ".join(f"{r}/seed{s}" for r, s in expected.members)
        raise ParamsError(
            f"train.ensemble = {pipeline.ensemble_size(doc)}: {ids[0][0]}/seed{ids[0][1]} is "
            f"trained in the group {expected.name} ({want}), not as given; the pipeline file "
            "is out of date: regenerate it with `python -m stages.study` (DVC), or run snakemake"
        )


def arg_parser():
    """The stage's options: ``--run/--seed/--dataset/--ckpt-dir/--log-dir`` (and
    ``--provenance``) once per run of the group."""
    p = parser(__doc__, identity=False, group=True)
    # One value per run (load() below checks a single --run/--seed; group_args the group's).
    p.add_argument("--run", dest="runs", action="append", required=True, help="run id")
    p.add_argument("--seed", dest="seeds", action="append", type=int, required=True, help="seed")
    p.add_argument("--dataset", action="append", required=True, help="the run's dataset.npz")
    p.add_argument("--ckpt-dir", action="append", required=True, help="the run's checkpoints")
    p.add_argument("--log-dir", action="append", required=True, help="the run's logs")
    return p


def run(argv=None) -> None:
    args = arg_parser().parse_args(argv)
    params = load(args)
    group = group_args(args, params, document(args))
    device = pick_device(params.train.device)
    data = [split_arrays(load_dataset(g["dataset"])) for g in group]
    set_threads(params.train.threads)

    shapes = {(d["train_images"].shape[-1], d["train_cond"].shape[1]) for d in data}
    if len(shapes) != 1:
        raise ArtifactError(
            f"the group's datasets differ in image size or conditioning width "
            f"{sorted(shapes)}; an ensemble trains one network"
        )
    net_cfg = net_config(params, *shapes.pop())
    cfg, ckpt_steps = TrainConfig.from_section(params.train), params.checkpoint_steps()
    for g in group:
        g["work"] = Path(g["ckpt_dir"]).with_name(Path(g["ckpt_dir"]).name + ".partial")
    members = [
        Member(d, g["work"] / "ckpt", g["work"] / "log", g["seed"], f"{g['run']}/seed{g['seed']}")
        for g, d in zip(group, data, strict=True)
    ]
    try:
        check_members(members, net_cfg)
    except ValueError as e:
        raise ArtifactError(f"cannot train {[m.name for m in members]} together: {e}") from None

    names = ", ".join(f"{g['run']} seed {g['seed']}" for g in group)
    how = "" if len(group) == 1 else f" as one ensemble of {len(group)}"
    print(f"train {names}{how} on {device}, {params.train.threads} thread(s)", file=sys.stderr)
    for g, m in zip(group, members, strict=True):
        discard_unresumable(g, m, net_cfg, cfg, ckpt_steps)
    try:
        if len(group) == 1:
            m = members[0]
            train(
                m.data,
                net_cfg,
                cfg,
                ckpt_steps=ckpt_steps,
                ckpt_dir=m.ckpt_dir,
                log_dir=m.log_dir,
                seed=m.seed,
                device=device,
            )
        else:
            train_ensemble(members, net_cfg, cfg, ckpt_steps=ckpt_steps, device=device)
    except FloatingPointError as e:
        raise ParamsError(
            f"run {names}: {e}; the settings make training diverge: lower train.lr or "
            "train.weight_decay (or keep train.grad_clip on) and run again (docs/method.md "
            "§3.3); the unfinished run is discarded then"
        ) from None
    except (CheckpointError, OSError) as e:  # a full disk while saving a checkpoint or a log
        cause = str(e) if isinstance(e, CheckpointError) else f"cannot write {e.filename} ({e})"
        raise ArtifactError(f"run {names}: {cause}; {_after_write_failure(group)}") from None
    for g in group:
        work = g["work"]
        for src, dst in ((work / "ckpt", Path(g["ckpt_dir"])), (work / "log", Path(g["log_dir"]))):
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            elif dst.exists() or dst.is_symlink():  # a file where the folder belongs
                dst.unlink()
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dst)
        shutil.rmtree(work)


def _after_write_failure(group: list[dict]) -> str:
    """What is left after a failed write and what to do: a work folder without a complete
    checkpoint holds nothing to resume and is removed (it would only take space); one with
    checkpoints is kept, and named, so that a rerun resumes from its last one."""
    kept = []
    for g in group:
        work = g["work"]
        steps = sorted((work / "ckpt").glob("step_*.pt")) if work.is_dir() else []
        if steps:  # atomic saves: every step file there is complete
            kept.append(f"{work} (up to {steps[-1].stem})")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not kept:
        return "nothing half-written was kept; free disk space and run again"
    return (
        "free disk space and run again: training resumes from the last complete checkpoint in "
        + ", ".join(kept)
        + " (remove that folder instead to start afresh)"
    )


def discard_unresumable(g: dict, m: Member, net_cfg, cfg: TrainConfig, ckpt_steps) -> None:
    """Start a run afresh when its unfinished work folder (``<ckpt-dir>.partial``) was written
    with other settings (a changed lr, say): that folder is only ever resumed, never served as
    a result, so nothing current is lost; the run's finished outputs stay until replaced."""
    work = g["work"]
    reason = resumable_mismatch(m.ckpt_dir, ckpt_steps, net_cfg, cfg, m.seed)
    if reason is None:
        return
    print(
        f"{g['run']} seed {g['seed']}: the unfinished run in {work} cannot be resumed ({reason});"
        " discarding it and starting afresh",
        file=sys.stderr,
    )
    shutil.rmtree(work)


main = entry(run)

if __name__ == "__main__":
    sys.exit(main())
