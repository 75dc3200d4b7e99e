"""The tiny training runs of the training, ensemble, batched-evaluation and CUDA tests: their
data and their optimisation settings.

Coloured squares on a light background (8x8 px), conditioned on their colour through the
colour entries of the shapes' conditioning vector: enough signal that a few dozen steps move
the loss, small enough that a test trains in seconds.
"""

from __future__ import annotations

import numpy as np

from conceptspace.model.training import TrainConfig

# What every tiny run shares; a test overrides only what it is about (``tiny_config``).
TINY = dict(
    steps=40,
    batch_size=16,
    lr=1e-3,
    weight_decay=0.01,
    grad_clip=0.01,
    p_uncond=0.2,
    ema=0.9,
    log_every=7,
)


def tiny_config(**changes) -> TrainConfig:
    """The tiny runs' ``TrainConfig``, with ``changes`` in place of the shared settings."""
    return TrainConfig(**{**TINY, **changes})


def squares(seed: int, n_train: int = 50, n_val: int = 12, n_held_out: int = 5) -> dict:
    """``{train,val,held_out}_{images,cond}`` arrays, as ``split_arrays`` gives a run's
    dataset; ``seed`` seeds the colours."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", n_train), ("val", n_val), ("held_out", n_held_out)):
        colour = rng.uniform(0.2, 0.8, (n, 3)).astype(np.float32)
        x = np.full((n, 3, 8, 8), 0.9, np.float32)
        x[:, :, 2:6, 2:6] = colour[:, :, None, None]
        cond = np.zeros((n, 11), np.float32)
        cond[:, 4:7] = colour
        data[f"{split}_images"], data[f"{split}_cond"] = x, cond
    return data
