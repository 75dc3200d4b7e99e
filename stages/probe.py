"""Probe every checkpoint of a run: generate images for fixed prompts and classify them.

    python -m stages.probe --run c040 --seed 0 \
        --ckpt-dir results/train/c040/seed0/ckpt --classifier results/fit_classifier/classifier.pt \
        --table results/probe/c040/seed0/probe.csv \
        --samples results/probe/c040/seed0/samples.npz \
        --grid results/probe/c040/seed0/samples.png

For each checkpoint, all classes' prompts (training classes: attributes sampled within their
ranges; held-out classes: class means) go through the sampler as one batch with the same
sampler noise; the probe classifies the images. The table has one row per (step, class,
concept): mean P(concept value 1), per-image accuracy and count. ``samples.npz`` keeps 8
images per class per checkpoint (for figures); the PNG shows them at the first, middle and
last checkpoints.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from conceptspace.figures.style import sample_grid
from conceptspace.io import write_npz, write_with
from conceptspace.measure import classifier, evaluation, probing
from stages.common import entry, load, parser

N_SHOW = 8


def run(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--ckpt-dir", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--grid", required=True)
    args = p.parse_args(argv)
    params = load(args)
    ckpts, probe, grid, device = evaluation.prepare(
        params, "probe", args.run, args.ckpt_dir, args.classifier
    )

    cfg, size = params.probe, params.synthesize.image_size
    cond, class_id = probing.prompt_set(grid, cfg.n_train, cfg.n_held_out, seed=args.seed)
    show = np.concatenate([np.flatnonzero(class_id == k)[:N_SHOW] for k in range(grid.n_classes)])
    tables, shown = [], []
    # progress: a bar on a terminal, none in a job log (one line per checkpoint there)
    bar = tqdm(ckpts, desc=f"probe {args.run} seed {args.seed}", file=sys.stderr, disable=None)
    for step, path in bar:
        if bar.disable:
            print(f"probe {args.run} seed {args.seed}: step {step}", file=sys.stderr)
        net, schedule = evaluation.load_on(path, device)
        images = probing.generate(
            net,
            schedule,
            cond,
            steps=cfg.sampler_steps,
            sampler=cfg.sampler,
            seed=args.seed,
            image_size=size,
        )
        probs = classifier.predict(probe, images)
        tables.append(
            probing.concept_table(grid, probs, class_id, run=args.run, seed=args.seed, step=step)
        )
        shown.append(images[show].astype(np.float16))

    table = pd.concat(tables, ignore_index=True)
    steps = np.array([s for s, _ in ckpts])
    shown = np.stack(shown)  # [n_ckpt, n_classes * N_SHOW, 3, S, S]
    write_with(args.table, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))
    write_npz(args.samples, steps=steps, images=shown, class_id=class_id[show])
    picks = sorted({0, len(steps) // 2, len(steps) - 1})
    rows, labels = [], []
    for k, name in enumerate(grid.class_names):
        for i in picks:
            rows.append(shown[i][class_id[show] == k].astype(np.float32))
            labels.append(f"{name} @ {steps[i]}")
    title = f"{args.run} seed {args.seed}: samples over training"
    sample_grid(rows, labels, args.grid, title=title)
    last = table[table.step == steps[-1]]
    print(last.to_string(index=False), file=sys.stderr)


main = entry(run)

if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
