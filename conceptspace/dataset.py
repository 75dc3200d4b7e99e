"""Concept datasets: the training set of one sweep point and seed, and its dataset card.

The arrays (one npz, see :data:`ARRAYS`):

==========  ======================  ==================================================
name        shape, dtype            meaning
==========  ======================  ==================================================
images      [N, 3, S, S] float32    rendered images in [0, 1]
cond        [N, 11] float32         conditioning vectors (actual sampled attributes)
values      [N, n_concepts] int8    concept value index per concept (grid order)
class_id    [N] int16               class index (row-major over the concepts)
split       [N] int8                0 train, 1 validation, 2 held-out test (class means)
==========  ======================  ==================================================
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from .concepts import ConceptGrid
from .io import ArtifactError, read_json, read_npz
from .params import Synthesize
from .render import class_pair_mse, concept_signal, render_classes

ARRAYS = ("images", "cond", "values", "class_id", "split")
SPLITS = {"train": 0, "val": 1, "heldout": 2}


def synthesize(grid: ConceptGrid, cfg: Synthesize, seed: int) -> dict[str, np.ndarray]:
    """Render the dataset of one concept grid and seed (same inputs give identical bytes).

    Training classes get ``cfg.n_per_class`` images with attributes drawn within their class
    ranges, split at random into train and validation; every held-out class gets
    ``cfg.n_heldout`` images at its class means, for the held-out loss during training.
    """
    rng = np.random.default_rng(seed)
    train_ids = np.repeat(np.array(grid.train_classes), cfg.n_per_class)
    images, cond, values = render_classes(
        grid, train_ids, cfg.image_size, rng, blur_px=cfg.blur_px, noise=cfg.noise
    )
    split = np.zeros(len(train_ids), dtype=np.int8)
    n_val = int(round(cfg.val_fraction * len(train_ids)))
    split[rng.permutation(len(train_ids))[:n_val]] = SPLITS["val"]

    held_ids = np.repeat(np.array(grid.held_out_classes, dtype=np.int64), cfg.n_heldout)
    h_images, h_cond, h_values = render_classes(
        grid, held_ids, cfg.image_size, rng, at_mean=True, blur_px=cfg.blur_px, noise=cfg.noise
    )
    return {
        "images": np.concatenate([images, h_images]),
        "cond": np.concatenate([cond, h_cond]),
        "values": np.concatenate([values, h_values]),
        "class_id": np.concatenate([train_ids, held_ids]).astype(np.int16),
        "split": np.concatenate([split, np.full(len(held_ids), SPLITS["heldout"], np.int8)]),
    }


def dataset_card(
    grid: ConceptGrid, cfg: Synthesize, data: dict[str, np.ndarray], *, run: str, seed: int
) -> dict:
    """Counts per class and split, separations, measured concept signals, held-out classes."""
    names = grid.class_names
    counts: dict[str, dict[str, int]] = {}
    for split_name, code in SPLITS.items():
        c = Counter(data["class_id"][data["split"] == code].tolist())
        counts[split_name] = {names[k]: int(v) for k, v in sorted(c.items())}
    kw = dict(n=cfg.signal_samples, blur_px=cfg.blur_px)
    return {
        "run": run,
        "seed": seed,
        "grid": grid.to_dict(),
        "image_size": cfg.image_size,
        "n_images": int(len(data["class_id"])),
        "class_names": names,
        "train_classes": [names[i] for i in grid.train_classes],
        "held_out_classes": [names[i] for i in grid.held_out_classes],
        "counts": counts,
        "separations": dict(grid.separations),
        "concept_signal": concept_signal(grid, cfg.image_size, **kw),
        "class_pair_mse": class_pair_mse(grid, cfg.image_size, **kw),
    }


def load_dataset(path: str | Path) -> dict[str, np.ndarray]:
    """Read a dataset npz, checking that every array is there with consistent lengths."""
    data = read_npz(path, required=ARRAYS)
    n = {k: len(data[k]) for k in ARRAYS}
    if len(set(n.values())) != 1:
        raise ArtifactError(f"{path}: arrays have different lengths {n}")
    return data


def load_card(path: str | Path) -> dict:
    card = read_json(path)
    for key in ("grid", "concept_signal", "class_names"):
        if key not in card:
            raise ArtifactError(f"{path}: dataset card lacks {key!r}")
    return card


def split_arrays(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Training inputs by split: ``{train,val,heldout}_{images,cond}``."""
    out = {}
    for name, code in SPLITS.items():
        sel = data["split"] == code
        out[f"{name}_images"] = data["images"][sel]
        out[f"{name}_cond"] = data["cond"][sel]
    return out
