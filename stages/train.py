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
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from conceptspace.data.concepts import COND_DIM
from conceptspace.data.dataset import load_dataset, split_arrays
from conceptspace.model.training import TrainConfig, train
from conceptspace.model.unet import UNetConfig
from stages.common import entry, load, parser, pick_device, set_threads


def net_config(params, image_size: int, cond_dim: int = COND_DIM) -> UNetConfig:
    """The U-Net of params; image size and conditioning width come from the dataset (11 for
    shapes, 2 per attribute for folder data)."""
    return UNetConfig(image_size=image_size, cond_dim=cond_dim, **params.train.net.model_dump())


def train_config(params) -> TrainConfig:
    t = params.train
    return TrainConfig(
        steps=t.steps,
        batch_size=t.batch_size,
        lr=t.lr,
        weight_decay=t.weight_decay,
        grad_clip=t.grad_clip or None,
        p_cfg=t.p_uncond,
    )


def run(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--ckpt-dir", required=True)
    p.add_argument("--log-dir", required=True)
    args = p.parse_args(argv)
    params = load(args)
    device = pick_device(params.train.device)
    data = split_arrays(load_dataset(args.dataset))
    set_threads(params.train.threads)

    ckpt_dir, log_dir = Path(args.ckpt_dir), Path(args.log_dir)
    work = ckpt_dir.with_name(ckpt_dir.name + ".partial")
    print(
        f"train {args.run} seed {args.seed} on {device}, {params.train.threads} thread(s)",
        file=sys.stderr,
    )
    train(
        data,
        net_config(params, data["train_images"].shape[-1], data["train_cond"].shape[1]),
        train_config(params),
        ckpt_steps=params.checkpoint_steps(),
        ckpt_dir=work / "ckpt",
        log_dir=work / "log",
        seed=args.seed,
        device=device,
    )
    for src, dst in ((work / "ckpt", ckpt_dir), (work / "log", log_dir)):
        if dst.exists():
            shutil.rmtree(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)
    shutil.rmtree(work)


main = entry(run)

if __name__ == "__main__":
    sys.exit(main())
