"""Elicit the held-out classes at every checkpoint: naive prompts, overprompting, linear latent
interventions and classifier-free guidance, classified by the probe.

    python -m stages.intervene --run c040 --seed 0 \
        --ckpt-dir results/train/c040/seed0/ckpt --classifier results/fit_classifier/classifier.pt \
        --table results/intervene/c040/seed0/intervene.csv \
        --embeddings results/intervene/c040/seed0/embeddings.csv

The table has one row per (step, method, setting, held-out class): mean P(value 1) and
per-image accuracy per concept, joint accuracy (the product of the accuracies) and count.
``setting`` is a number: k (overprompt), s (linear), the guidance weight w (guidance), 0 for
the naive prompt. Every setting of a
checkpoint uses the same sampler noise (common random numbers), so settings differ only by
the intervention; the naive prompt is the setting-free baseline. ``embeddings.csv`` is the
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
from conceptspace.measure import classifier, interventions, probing
from stages.common import entry, load, parser, pick_device, set_threads
from stages.probe import expected_checkpoints, load_classifier_for, load_on


def design(grid, cfg) -> list[dict]:
    """The batched settings of one checkpoint: held-out class x (method, setting)."""
    plan = []
    for k in grid.held_out_classes:
        if "naive" in cfg.methods:
            plan.append(
                {
                    "class": k,
                    "method": "naive",
                    "setting": 0.0,
                    "cond": grid.class_mean_cond(k),
                    "scale": 0.0,
                }
            )
        if "overprompt" in cfg.methods:
            for s in cfg.overprompt.settings:
                h = interventions.overprompt(grid, k, cfg.overprompt.concept, s)
                plan.append(
                    {
                        "class": k,
                        "method": "overprompt",
                        "setting": float(s),
                        "cond": h,
                        "scale": 0.0,
                    }
                )
        if "linear" in cfg.methods:
            value = grid.class_bits(k)[grid.concepts.index(cfg.linear.concept)]
            sign = 1.0 if value == 1 else -1.0  # push towards the class's own value
            for s in cfg.linear.settings:
                plan.append(
                    {
                        "class": k,
                        "method": "linear",
                        "setting": float(s),
                        "cond": grid.class_mean_cond(k),
                        "scale": sign * s,
                    }
                )
    return plan


def summarize(grid, plan_rows, probs_by_row, n, **identity) -> list[dict]:
    rows = []
    for i, item in enumerate(plan_rows):
        p = probs_by_row[i * n : (i + 1) * n]
        bits = grid.class_bits(item["class"])
        row = {
            **identity,
            "method": item["method"],
            "setting": item["setting"],
            "class": grid.class_name(item["class"]),
        }
        joint = 1.0
        for j, concept in enumerate(grid.concepts):
            acc = float(((p[:, j] > 0.5).astype(int) == bits[j]).mean())
            row[f"p_{concept}"] = float(p[:, j].mean())
            row[f"acc_{concept}"] = acc
            joint *= acc
        row["joint_acc"] = joint
        row["count"] = n
        rows.append(row)
    return rows


def readout_vectors(grid, concept: str):
    """Single-concept vectors and the pairs to compare, e.g. blue|red, blue|small, blue|large."""
    names = {}
    for c in grid.concepts:
        for v, name in enumerate(grid.value_names(c)):
            names[name] = grid.mean_cond({c: v})
    held = grid.class_bits(grid.held_out_classes[0])[grid.concepts.index(concept)]
    main = grid.value_names(concept)[held]
    pairs = [(main, grid.value_names(concept)[1 - held])]
    pairs += [(main, name) for c in grid.concepts if c != concept for name in grid.value_names(c)]
    return names, pairs


def run(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--ckpt-dir", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--embeddings", required=True)
    args = p.parse_args(argv)
    params = load(args)
    ckpts = expected_checkpoints(params, args.ckpt_dir)
    probe, grid = load_classifier_for(params, args.run, args.classifier)
    device = pick_device(params.intervene.device, "intervene.device")
    probe = probe.to(device)
    set_threads(params.intervene.threads)

    cfg, size, n = params.intervene, params.synthesize.image_size, params.intervene.n
    plan = design(grid, cfg)
    cond = np.repeat(np.stack([it["cond"] for it in plan]), n, axis=0)
    scales = torch.tensor(np.repeat([it["scale"] for it in plan], n), dtype=torch.float32)
    scales = scales.to(device)
    v1, v0 = interventions.single_concept_vectors(grid, cfg.linear.concept)
    vectors, pairs = readout_vectors(grid, cfg.linear.concept)

    rows, emb_rows = [], []
    for step, path in tqdm(ckpts, desc=f"intervene {args.run} seed {args.seed}", file=sys.stderr):
        net, schedule = load_on(path, device)
        ident = {"run": args.run, "seed": args.seed, "step": step}
        kw = dict(steps=cfg.sampler_steps, seed=args.seed, image_size=size)
        with interventions.linear_intervention(net, v1, v0, scales):
            images = probing.generate(net, schedule, cond, noise_repeat=len(plan), **kw)
        rows += summarize(grid, plan, classifier.predict(probe, images), n, **ident)
        if "guidance" in cfg.methods:
            for k in grid.held_out_classes:
                h = np.tile(grid.class_mean_cond(k), (n, 1))
                for w in cfg.guidance:
                    images = probing.generate(net, schedule, h, guidance=w, **kw)
                    item = {"class": k, "method": "guidance", "setting": float(w)}
                    rows += summarize(grid, [item], classifier.predict(probe, images), n, **ident)
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
