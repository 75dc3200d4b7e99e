"""Elicit the held-out classes at every checkpoint: naive prompts, overprompting, linear latent
interventions and classifier-free guidance, classified by the probe.

    python -m stages.intervene --run c040 --seed 0 \
        --ckpt-dir results/train/c040/seed0/ckpt --classifier results/fit_classifier/classifier.pt \
        --table results/intervene/c040/seed0/intervene.csv \
        --embeddings results/intervene/c040/seed0/embeddings.csv

The table has one row per (step, method, setting, held-out class): mean P(value 1) and
per-image accuracy per concept, joint accuracy (the product of the accuracies) and count.
``setting`` is the dose (overprompt, linear; docs/method.md §6), the guidance weight w
(guidance), 0 for the naive prompt. Every dose of a checkpoint uses the same sampler noise
(common random numbers), so doses differ only by the intervention; the naive prompt is the
dose-free baseline. ``embeddings.csv`` is the
mechanistic readout: per checkpoint and block, the cosine similarity of the concept
embeddings of single-concept vectors (e.g. blue vs red, blue vs small, blue vs large).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from conceptspace.io import write_with
from conceptspace.measure import classifier, evaluation, interventions, probing
from conceptspace.params import ParamsError
from stages.common import entry, load, parser


def run(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--ckpt-dir", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--embeddings", required=True)
    args = p.parse_args(argv)
    params = load(args)
    ckpts, probe, grid, device = evaluation.prepare(
        params, "intervene", args.run, args.ckpt_dir, args.classifier
    )

    cfg, size, n = params.intervene, params.synthesize.image_size, params.intervene.n
    try:
        plan = interventions.design(grid, cfg)
    except ValueError as e:
        raise ParamsError(f"intervene (run {args.run}): {e}; choose distinct doses") from None
    cond, row_class, scales = interventions.batch(plan, n)
    scales = torch.from_numpy(scales).to(device)
    vectors, pairs = interventions.readout_vectors(grid, cfg.linear.concepts[0])

    rows, emb_rows = [], []
    # progress: a bar on a terminal, none in a job log (one line per checkpoint there)
    bar = tqdm(ckpts, desc=f"intervene {args.run} seed {args.seed}", file=sys.stderr, disable=None)
    for step, path in bar:
        if bar.disable:
            print(f"intervene {args.run} seed {args.seed}: step {step}", file=sys.stderr)
        net, schedule = evaluation.load_on(path, device)
        ident = {"run": args.run, "seed": args.seed, "step": step}
        kw = dict(steps=cfg.sampler_steps, sampler=cfg.sampler, seed=args.seed, image_size=size)
        push = interventions.row_directions(net, grid, row_class, cfg.linear.concepts)
        with interventions.linear_intervention(net, push, scales):
            images = probing.generate(net, schedule, cond, noise_repeat=len(plan), **kw)
        rows += interventions.summarize(grid, plan, classifier.predict(probe, images), n, **ident)
        if "guidance" in cfg.methods:
            for k in grid.held_out_classes:
                h = np.tile(grid.class_mean_cond(k), (n, 1))
                for w in cfg.guidance:
                    images = probing.generate(net, schedule, h, guidance=w, **kw)
                    item = {"class": k, "method": "guidance", "setting": float(w)}
                    probs = classifier.predict(probe, images)
                    rows += interventions.summarize(grid, [item], probs, n, **ident)
        for r in interventions.embedding_similarity(net, vectors, pairs):
            emb_rows.append({**ident, **r})

    table = pd.DataFrame(rows)
    write_with(args.table, lambda tmp: table.to_csv(tmp, index=False, float_format="%.6f"))
    emb = pd.DataFrame(emb_rows)
    write_with(args.embeddings, lambda tmp: emb.to_csv(tmp, index=False, float_format="%.6f"))
    best = table.groupby(["method", "step"]).joint_acc.max().unstack("method")
    print(best.to_string(), file=sys.stderr)


main = entry(run)

if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
