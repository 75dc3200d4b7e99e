"""Concept datasets: the training set of one sweep point and seed, and its dataset card.

The arrays (one npz, see :data:`ARRAYS`):

==========  ======================  ==================================================
name        shape, dtype            meaning
==========  ======================  ==================================================
images      [N, 3, S, S] float32    rendered (or folder) images in [0, 1]
cond        [N, K] float32          conditioning vectors: 11-d actual sampled attributes
                                    (shapes) or one-hot codes, K = 2 n_concepts (folder)
values      [N, n_concepts] int8    concept value index per concept (grid order)
class_id    [N] int16               class index (row-major over the concepts)
split       [N] int8                0 train, 1 validation, 2 held-out test (class means)
masked      [N] bool                the mask concept's entries of cond are nulled (0)
==========  ======================  ==================================================

Two sources (``synthesize.source``): rendered shapes, and real images of a CelebA-style
folder (:mod:`conceptspace.data.folder`: training classes balanced to the smallest, capped at
``n_per_class``; ``n_held_out`` images of each held-out class kept aside for the held-out loss).

Underspecified prompts (docs/method.md §7.6): with ``runs.<id>.mask = p`` exactly ``round(p * n)``
of the ``n`` *training-split* images of the class ``synthesize.mask.class`` get the entries of
``synthesize.mask.concept`` replaced by the null value 0 (what a concept outside the grid
gets). They are drawn from their own random stream, as the first ``round(p * n)`` of one fixed
permutation: the images masked at a smaller ``p`` are also masked at a larger one, and masking
leaves images, labels and splits unchanged. Validation and held-out images are never masked.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from conceptspace.data.concepts import ConceptGrid
from conceptspace.data.folder import ImageFolder, mean_image_signal, select
from conceptspace.data.render import class_pair_mse, concept_signal, render_classes
from conceptspace.io import ArtifactError, read_json, read_npz
from conceptspace.sections import Mask, Synthesize

ARRAYS = ("images", "cond", "values", "class_id", "split", "masked")
REQUIRED = ARRAYS[:-1]  # datasets written before masking existed have no ``masked``
SPLITS = {"train": 0, "val": 1, "held_out": 2}
MASK_STREAM = 0x3A5C  # mixed into the seed: masking never moves the data's own draws


def synthesize(
    grid: ConceptGrid, cfg: Synthesize, seed: int, *, mask: float = 0.0
) -> dict[str, np.ndarray]:
    """The dataset of one concept grid and seed (same inputs give identical bytes).

    Shapes: training classes get ``cfg.n_per_class`` images with attributes drawn within
    their class ranges, split at random into train and validation; every held-out class gets
    ``cfg.n_held_out`` images at its class means, for the held-out loss during training.
    Folder: see :func:`from_folder`. ``mask``: the fraction of ``cfg.mask.class``'s training
    images whose ``cfg.mask.concept`` entries are nulled (see :func:`apply_mask`).
    """
    data = from_folder(grid, cfg, seed) if cfg.source == "folder" else _render(grid, cfg, seed)
    data["masked"] = apply_mask(grid, data, cfg.mask, mask, seed)
    return data


def apply_mask(
    grid: ConceptGrid, data: dict[str, np.ndarray], spec: Mask | None, p: float, seed: int
) -> np.ndarray:
    """Null the ``spec.concept`` entries of ``cond`` (in place) for exactly ``round(p * n)``
    of the ``n`` training-split images of class ``spec.class``; returns the ``masked`` flags."""
    masked = np.zeros(len(data["class_id"]), dtype=bool)
    if p == 0:
        return masked
    if spec is None:
        raise ValueError(f"mask = {p} needs a mask spec (synthesize.mask)")
    k = grid.class_of(spec.class_)
    members = np.flatnonzero((data["class_id"] == k) & (data["split"] == SPLITS["train"]))
    n_masked = round(p * len(members))
    rng = np.random.default_rng([seed, MASK_STREAM])
    masked[rng.permutation(members)[:n_masked]] = True
    data["cond"][np.ix_(masked, np.arange(grid.cond_dim)[grid.cond_slice(spec.concept)])] = 0.0
    return masked


def mask_summary(
    grid: ConceptGrid, data: dict[str, np.ndarray], spec: Mask | None, p: float
) -> dict | None:
    """The card's ``mask`` entry: ``None`` without masking, else class, concept, requested
    fraction, number masked, training images of the class and the exact fraction."""
    if spec is None or p == 0:
        return None
    k = grid.class_of(spec.class_)
    n_class = int(((data["class_id"] == k) & (data["split"] == SPLITS["train"])).sum())
    n_masked = int(data["masked"].sum())
    return {
        "class": grid.class_name(k),
        "concept": spec.concept,
        "requested": float(p),
        "n_masked": n_masked,
        "n_class": n_class,
        "fraction": n_masked / n_class if n_class else 0.0,
    }


def from_folder(grid: ConceptGrid, cfg: Synthesize, seed: int) -> dict[str, np.ndarray]:
    """Real images of a CelebA-style folder (``cfg.folder``), as the same arrays.

    Training classes are balanced to the smallest of them, capped at ``cfg.n_per_class``,
    and split at random into train and validation; each held-out class keeps up to
    ``cfg.n_held_out`` of its images aside (split 2) for the held-out loss. The conditioning
    vector is the one-hot code of the image's attribute values.
    """
    folder = ImageFolder.from_params(cfg.folder)
    ids = folder.class_ids(grid)
    rng = np.random.default_rng(seed)
    train, held, _ = select(grid, ids, cfg.n_per_class, cfg.n_held_out, rng)
    index = np.concatenate([*train.values(), *held.values()])
    n_train = sum(len(v) for v in train.values())
    split = np.full(len(index), SPLITS["held_out"], dtype=np.int8)
    split[:n_train] = SPLITS["train"]
    n_val = int(round(cfg.val_fraction * n_train))
    split[rng.permutation(n_train)[:n_val]] = SPLITS["val"]
    values = grid.all_bits()[ids[index]].astype(np.int8)
    return {
        "images": folder.load(index, cfg.image_size),
        "cond": grid.codes(values),
        "values": values,
        "class_id": ids[index].astype(np.int16),
        "split": split,
    }


def _render(grid: ConceptGrid, cfg: Synthesize, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    train_ids = np.repeat(np.array(grid.train_classes), cfg.n_per_class)
    images, cond, values = render_classes(
        grid, train_ids, cfg.image_size, rng, blur_px=cfg.blur_px, noise=cfg.noise
    )
    split = np.zeros(len(train_ids), dtype=np.int8)
    n_val = int(round(cfg.val_fraction * len(train_ids)))
    split[rng.permutation(len(train_ids))[:n_val]] = SPLITS["val"]

    held_ids = np.repeat(np.array(grid.held_out_classes, dtype=np.int64), cfg.n_held_out)
    h_images, h_cond, h_values = render_classes(
        grid, held_ids, cfg.image_size, rng, at_mean=True, blur_px=cfg.blur_px, noise=cfg.noise
    )
    return {
        "images": np.concatenate([images, h_images]),
        "cond": np.concatenate([cond, h_cond]),
        "values": np.concatenate([values, h_values]),
        "class_id": np.concatenate([train_ids, held_ids]).astype(np.int16),
        "split": np.concatenate([split, np.full(len(held_ids), SPLITS["held_out"], np.int8)]),
    }


def dataset_card(
    grid: ConceptGrid,
    cfg: Synthesize,
    data: dict[str, np.ndarray],
    *,
    run: str,
    seed: int,
    mask: float = 0.0,
) -> dict:
    """Counts per class and split, separations, measured concept signals, held-out classes,
    the masking actually done (``mask``: ``None`` or see :func:`mask_summary`).

    Folder data: ``concept_signal`` is the pixel MSE between the mean images of a concept's
    two values and ``class_pair_mse`` the MSE between class-mean images (training and
    held-out images of the dataset), since there are no renders to match.
    """
    names = grid.class_names
    counts: dict[str, dict[str, int]] = {}
    for split_name, code in SPLITS.items():
        c = Counter(data["class_id"][data["split"] == code].tolist())
        counts[split_name] = {names[k]: int(v) for k, v in sorted(c.items())}
    if cfg.source == "folder":
        signal, pairs = mean_image_signal(grid, data["images"], data["values"])
    else:
        kw = dict(n=cfg.signal_samples, blur_px=cfg.blur_px)
        signal = concept_signal(grid, cfg.image_size, **kw)
        pairs = class_pair_mse(grid, cfg.image_size, **kw)
    card = {
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
        "concept_signal": signal,
        "class_pair_mse": pairs,
        "source": cfg.source,
        "cond_dim": int(data["cond"].shape[1]),
        "mask": mask_summary(grid, data, cfg.mask, mask),
    }
    if cfg.folder is not None:
        card["folder"] = {"root": str(cfg.folder.root)}
    return card


def load_dataset(path: str | Path) -> dict[str, np.ndarray]:
    """Read a dataset npz, checking that every array is there with consistent lengths."""
    data = read_npz(path, required=REQUIRED)
    if "masked" not in data:
        data["masked"] = np.zeros(len(data["class_id"]), dtype=bool)
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
    """Training inputs by split: ``{train,val,held_out}_{images,cond}``."""
    out = {}
    for name, code in SPLITS.items():
        sel = data["split"] == code
        out[f"{name}_images"] = data["images"][sel]
        out[f"{name}_cond"] = data["cond"][sel]
    return out
