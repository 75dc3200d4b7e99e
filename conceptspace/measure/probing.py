"""Probing checkpoints: where does each checkpoint put each class in concept space?

At every checkpoint the same prompts and the same sampler noise are used, so differences
between checkpoints come from the model alone. A prompt set holds, per training class,
``n_train`` conditioning vectors with attributes sampled within the class ranges and, per
held-out class, ``n_held_out`` copies of its class-mean vector (the naive prompt).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from conceptspace.data.concepts import ConceptGrid
from conceptspace.data.render import conditioning, sample_attributes
from conceptspace.model.diffusion import sample

PROMPT_STREAM = 7_919  # mixed into the seed so prompts differ from the dataset's draws


def prompt_set(
    grid: ConceptGrid, n_train: int, n_held_out: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed prompts of every class: ``(cond [P, 11] float32, class_id [P] int64)``."""
    rng = np.random.default_rng([seed, PROMPT_STREAM])
    conds, ids = [], []
    for k in range(grid.n_classes):
        if grid.is_held_out(k):
            conds.append(np.tile(grid.class_mean_cond(k), (n_held_out, 1)))
            ids.append(np.full(n_held_out, k))
        else:
            values = np.tile(grid.class_bits(k), (n_train, 1))
            conds.append(conditioning(grid, sample_attributes(grid, values, rng)))
            ids.append(np.full(n_train, k))
    return np.concatenate(conds).astype(np.float32), np.concatenate(ids).astype(np.int64)


def generate(
    net: torch.nn.Module,
    schedule: torch.nn.Module,
    cond: np.ndarray,
    *,
    steps: int,
    seed: int,
    image_size: int,
    **sample_kwargs,
) -> np.ndarray:
    """Sample one image per conditioning vector with a sampler seeded by ``seed``:
    ``[P, 3, S, S]`` float32, raw z_0 (unclipped, as the probe was trained to expect).

    All prompts go through the sampler as one batch on the network's device; the sampler noise
    comes from a CPU generator whatever the device, so CUDA and CPU samples differ only by
    floating-point rounding."""
    gen = torch.Generator().manual_seed(seed)
    z = sample(
        net,
        schedule,
        torch.from_numpy(cond).to(next(net.parameters()).device),
        steps=steps,
        generator=gen,
        image_shape=(3, image_size, image_size),
        **sample_kwargs,
    )
    return z.cpu().numpy()


def concept_table(
    grid: ConceptGrid, probs: np.ndarray, class_id: np.ndarray, **identity
) -> pd.DataFrame:
    """Tidy rows, one per (class, concept): mean P(value 1) and per-image accuracy.

    :param probs: ``[P, n_concepts]`` probe output P(concept value index 1) per image.
    :param identity: constant columns put first (run, seed, step, ...).
    """
    rows = []
    for k in np.unique(class_id):
        sel = class_id == k
        bits = grid.class_bits(int(k))
        for j, concept in enumerate(grid.concepts):
            p1 = probs[sel, j]
            pred = (p1 > 0.5).astype(int)
            rows.append(
                {
                    **identity,
                    "class": grid.class_name(int(k)),
                    "held_out": grid.is_held_out(int(k)),
                    "concept": concept,
                    "target": bits[j],
                    "p1": float(p1.mean()),
                    "acc": float((pred == bits[j]).mean()),
                    "count": int(sel.sum()),
                }
            )
    return pd.DataFrame(rows)
