"""Real images in a CelebA-style folder as a concept dataset (docs/method.md §7.2).

The layout is CelebA's (nothing is downloaded; point ``synthesize.folder.root`` at a copy):

    <root>/img_align_celeba/000001.jpg ...       (any format PIL reads: jpg, png, ...)
    <root>/list_attr_celeba.txt                   line 1: number of images
                                                  line 2: the attribute names
                                                  then:   000001.jpg -1 1 ... (values +-1)

Two (or more) binary attributes of the table are the concepts of an *attribute grid*
(:class:`conceptspace.data.concepts.ConceptGrid` with ``values``): value index 1 = attribute +1.
Images are resized to ``image_size`` square without cropping (bilinear, as the paper's
``Resize((64, 64))``), pixel values in [0, 1]. The paper's augmentation (colour jitter,
horizontal flips) is not applied.

Every problem with the folder (missing, malformed table, table rows without an image file,
an attribute that is not in the table, a class without images) raises
:class:`~conceptspace.io.ArtifactError` naming the file and the fix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conceptspace.data.concepts import ConceptGrid
from conceptspace.io import ArtifactError

KEY = "synthesize.folder"


@dataclass(frozen=True)
class AttributeTable:
    """The parsed attribute table: ``files[i]`` has attribute ``names[j]`` iff ``table[i, j]``."""

    path: Path
    names: tuple[str, ...]
    files: tuple[str, ...]
    table: np.ndarray  # [N, n_attributes] bool

    def values(self, attributes: tuple[str, ...]) -> np.ndarray:
        """Value indices ``[N, len(attributes)]`` int8 (1 = attribute present)."""
        missing = [a for a in attributes if a not in self.names]
        if missing:
            raise ArtifactError(
                f"{self.path}: no attribute {missing} in the table (grid.concepts name "
                f"attributes of it; it has {list(self.names)})"
            )
        cols = [self.names.index(a) for a in attributes]
        return self.table[:, cols].astype(np.int8)


def read_attribute_table(path: str | Path) -> AttributeTable:
    """Parse ``list_attr_celeba.txt`` (whitespace-separated), checking its shape and values."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: attribute table not found (see {KEY}.attributes)")
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        raise ArtifactError(f"{path}: needs a count line and an attribute-name line")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise ArtifactError(
            f"{path}: line 1 must be the number of images, got {lines[0]!r}"
        ) from None
    names = tuple(lines[1].split())
    if not names or len(set(names)) != len(names):
        raise ArtifactError(f"{path}: line 2 must list distinct attribute names")
    rows = [ln.split() for ln in lines[2:] if ln.strip()]
    if len(rows) != count:
        raise ArtifactError(f"{path}: line 1 announces {count} images, the table has {len(rows)}")
    bad = next((i for i, r in enumerate(rows) if len(r) != len(names) + 1), None)
    if bad is not None:
        raise ArtifactError(
            f"{path}: line {bad + 3} has {len(rows[bad]) - 1} values for {len(names)} attributes"
        )
    files = tuple(r[0] for r in rows)
    if len(set(files)) != len(files):
        raise ArtifactError(f"{path}: an image is listed twice")
    try:
        raw = np.array([r[1:] for r in rows], dtype=np.int64).reshape(len(rows), len(names))
    except ValueError:
        raise ArtifactError(f"{path}: attribute values must be -1 or 1") from None
    if not np.isin(raw, (-1, 1)).all():
        raise ArtifactError(f"{path}: attribute values must be -1 or 1")
    return AttributeTable(path, names, files, raw == 1)


@dataclass(frozen=True)
class ImageFolder:
    """A CelebA-style folder, checked on opening: its table and the image files it lists."""

    root: Path
    image_dir: Path
    attributes: AttributeTable

    @classmethod
    def open(
        cls,
        root: str | Path,
        images: str = "img_align_celeba",
        attributes: str = "list_attr_celeba.txt",
    ) -> ImageFolder:
        root = Path(root)
        if not root.is_dir():
            raise ArtifactError(f"{KEY}.root = {str(root)!r}: no such folder")
        image_dir = root / images
        if not image_dir.is_dir():
            raise ArtifactError(f"{image_dir}: image folder not found (see {KEY}.images)")
        table = read_attribute_table(root / attributes)
        present = set(os.listdir(image_dir))
        missing = [f for f in table.files if f not in present]
        if missing:
            raise ArtifactError(
                f"{table.path}: {len(missing)} listed image(s) are not in {image_dir}, "
                f"e.g. {missing[:3]}; the table and the images do not match"
            )
        return cls(root, image_dir, table)

    @classmethod
    def from_params(cls, cfg) -> ImageFolder:
        """From the ``synthesize.folder`` section (:class:`conceptspace.params.Folder`)."""
        return cls.open(cfg.root, cfg.images, cfg.attributes)

    def class_ids(self, grid: ConceptGrid) -> np.ndarray:
        """Class index of every listed image under ``grid`` (row-major over its concepts)."""
        values = self.attributes.values(grid.concepts)
        return np.ravel_multi_index(values.T, (2,) * len(grid.concepts)).astype(np.int64)

    def counts(self, grid: ConceptGrid) -> dict[str, int]:
        ids = self.class_ids(grid)
        return {grid.class_name(k): int((ids == k).sum()) for k in range(grid.n_classes)}

    def load(self, index: np.ndarray, image_size: int) -> np.ndarray:
        """Images ``index`` of the table, resized: ``[N, 3, S, S]`` float32 in [0, 1], laid out
        like rendered images (``[c, x, y]`` with y upward, see ``plotting.to_display``)."""
        from PIL import Image

        out = np.empty((len(index), 3, image_size, image_size), dtype=np.float32)
        for j, i in enumerate(np.asarray(index, dtype=np.int64)):
            path = self.image_dir / self.attributes.files[i]
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB").resize((image_size, image_size), Image.BILINEAR)
                    a = np.asarray(im, dtype=np.float32)
            except OSError as e:
                raise ArtifactError(f"{path}: cannot be read as an image ({e})") from None
            # The renderer's layout: first spatial axis x (columns), second y (rows, upward).
            out[j] = a[::-1].transpose(2, 1, 0) / np.float32(255)
        return out


def _pick(ids: np.ndarray, k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random table indices of class ``k``, sorted (so loading order is fixed)."""
    members = np.flatnonzero(ids == k)
    return np.sort(rng.choice(members, size=n, replace=False))


def select(
    grid: ConceptGrid, ids: np.ndarray, n_per_class: int, n_held_out: int, rng: np.random.Generator
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], int]:
    """Table indices per class: training classes balanced to the smallest (capped at
    ``n_per_class``), held-out classes up to ``n_held_out`` each, kept aside.

    Returns ``(train {class: indices}, held_out {class: indices}, n per training class)``.
    A class with no image at all is an error.
    """
    counts = {k: int((ids == k).sum()) for k in range(grid.n_classes)}
    empty = [grid.class_name(k) for k, c in counts.items() if c == 0]
    if empty:
        raise ArtifactError(
            f"class(es) {empty} have no image in the folder ({KEY}); counts per class: "
            f"{ {grid.class_name(k): c for k, c in counts.items()} }"
        )
    n = min(n_per_class, *(counts[k] for k in grid.train_classes))
    train = {k: _pick(ids, k, n, rng) for k in grid.train_classes}
    held = {k: _pick(ids, k, min(n_held_out, counts[k]), rng) for k in grid.held_out_classes}
    return train, held, n


def mean_image_signal(
    grid: ConceptGrid, images: np.ndarray, values: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """Concept signal of real images: per concept, the pixel MSE between the mean images of
    its two values; per pair of classes differing in one concept, the MSE between their mean
    images (keys ``"<class>|<class>"``, like :func:`conceptspace.data.render.class_pair_mse`)."""
    signal = {}
    for j, c in enumerate(grid.concepts):
        m0 = images[values[:, j] == 0].mean(axis=0)
        m1 = images[values[:, j] == 1].mean(axis=0)
        signal[c] = float(np.mean((m0 - m1) ** 2))
    ids = np.ravel_multi_index(values.T.astype(np.int64), (2,) * len(grid.concepts))
    means = {k: images[ids == k].mean(axis=0) for k in range(grid.n_classes) if (ids == k).any()}
    pairs = {}
    for i in means:
        for k in means:
            diff = np.array(grid.class_bits(i)) != np.array(grid.class_bits(k))
            if i < k and diff.sum() == 1:
                key = f"{grid.class_name(i)}|{grid.class_name(k)}"
                pairs[key] = float(np.mean((means[i] - means[k]) ** 2))
    return signal, pairs
