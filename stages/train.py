"""Train the conditional diffusion model of one sweep point and seed, with dense checkpoints.

    python -m stages.train --run c040 --seed 0 \
        --dataset results/synthesize/c040/seed0/dataset.npz \
        --ckpt-dir results/train/c040/seed0/ckpt --log-dir results/train/c040/seed0/log

Checkpoints land at the square-root spaced steps of ``train.checkpoints`` as ``step_XXXXXX.pt``;
the log dir gets ``train_log.csv`` (loss per step) and ``checkpoints.csv`` (train/val/held-out
loss per checkpoint). Outputs are never half-written, and a killed run started again resumes
from its last checkpoint (conceptspace/model/ensemble.py, ``TrainingJob``).

Up to ``train.ensemble`` runs train together as one batched model when the five options (and
``--provenance``, if given) are repeated, once per run and in the same order; each run gets
its own outputs and the record a lone job of it writes, and a group of one is a lone run, bit
for bit. Both tools run such groups (``train_g0``, ...) when ``train.ensemble`` is above 1
(conceptspace/pipeline.py, "Training groups").
"""

from __future__ import annotations

import sys

from conceptspace.data.concepts import COND_DIM
from conceptspace.data.dataset import load_dataset, split_arrays
from conceptspace.devices import pick_device, set_threads
from conceptspace.model.ensemble import TrainingJob
from conceptspace.model.training import TrainConfig
from conceptspace.model.unet import UNetConfig
from conceptspace.params import ParamsError
from conceptspace.provenance import check_group_records
from stages import common

# Repeated options, one value per run of the group: (attribute of the parsed args, key).
PER_RUN = (("runs", "run"), ("seeds", "seed"), ("dataset", "dataset"), ("ckpt_dir", "ckpt_dir"))
PER_RUN += (("log_dir", "log_dir"),)


def net_config(params, image_size: int, cond_dim: int = COND_DIM) -> UNetConfig:
    """The U-Net of params at this image size and conditioning width."""
    return UNetConfig.from_section(params.train.net, image_size, cond_dim)


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
    if args.provenance and len(args.provenance) != len(group):
        raise ParamsError(
            f"give --provenance once per run of the group, in order, or not at all: got "
            f"{len(args.provenance)} for {len(group)} run(s)"
        )
    ids = [(g["run"], g["seed"]) for g in group]
    params.check_training_group(ids)
    if args.provenance:
        check_group_records(doc, ids)
    return group


def arg_parser():
    """The stage's options, each once per run of the group (:func:`group_args`)."""
    p = common.parser(__doc__, group=True)
    p.add_argument("--dataset", action="append", required=True, help="the run's dataset.npz")
    p.add_argument("--ckpt-dir", action="append", required=True, help="the run's checkpoints")
    p.add_argument("--log-dir", action="append", required=True, help="the run's logs")
    return p


def run(argv=None) -> None:
    args = arg_parser().parse_args(argv)
    params, doc = common.load_document(args)
    group = group_args(args, params, doc)
    device = pick_device(params.train.device)
    data = [split_arrays(load_dataset(g["dataset"])) for g in group]
    set_threads(params.train.threads)

    dirs = [[g[k] for g in group] for k in ("ckpt_dir", "log_dir")]
    job = TrainingJob.plan(params.train.net, [(g["run"], g["seed"]) for g in group], data, *dirs)
    cfg, ckpt_steps = TrainConfig.from_section(params.train), params.checkpoint_steps()
    how = "" if len(group) == 1 else f" as one ensemble of {len(group)}"
    print(f"train {job.label}{how} on {device}, {params.train.threads} thread(s)", file=sys.stderr)
    try:
        job.train(cfg, ckpt_steps, device)
    except FloatingPointError as e:
        raise ParamsError(
            f"run {job.label}: {e}; the settings make training diverge: lower train.lr or "
            "train.weight_decay (or keep train.grad_clip on) and run again (docs/method.md "
            "§3.3); the unfinished run is discarded then"
        ) from None


main = common.entry(run, group=True)

if __name__ == "__main__":
    sys.exit(main())
