"""Vectorised renderer of the shapes dataset (docs/method.md §2.1-2.7).

An image is one object (circle, or equilateral triangle of equal area) on a background:
``pixel = m * object_rgb + (1 - m) * background_rgb`` with ``m`` the object mask smoothed by a
Gaussian of ``blur_px`` pixels, plus i.i.d. pixel noise, clipped to [0, 1]. The coordinate grid
has ``image_size`` points from -1 to 1 on each axis; the first spatial array axis is "x".

Mask, blur (``scipy.ndimage`` Gaussian, reflecting borders, sigma in pixels), the radius in grid
units and the grid itself are those of the authors' public generator
(github.com/cfpark00/concept-learning): at the same positions our 32 px class-mean images give
their class-pair MSEs to float precision (tests/test_render_reference.py). One known
deviation: their triangle has edges of slope +-2 (an isosceles triangle, base = height =
side, 15.5% more area than the circle) although its side is computed for an equal-area
equilateral one; we draw the equal-area equilateral triangle (docs/method.md §2.1). It
matters only for grids with the shape concept.

Everything is computed for the whole batch at once (no Python loop over images), in float32.
All randomness comes from one :class:`numpy.random.Generator`, drawn in a fixed order and in
amounts that do not depend on whether attributes are sampled or set to class means, so the
same seed gives byte-identical images on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d

from conceptspace.data.concepts import (
    COND_DIM,
    COND_SLICES,
    FIXED_COLOR,
    NUISANCE_BG,
    SIZE_CENTER,
    SIZE_FLOOR,
    ConceptGrid,
)

TRIANGLE_SCALE = float(np.sqrt(4 * np.pi / np.sqrt(3)))
"""Side of the equilateral triangle with the area of a unit circle."""


@dataclass
class Attributes:
    """Per-image attributes, arrays with leading dimension N."""

    shape: np.ndarray  # [N] int, 0 circle / 1 triangle
    position: np.ndarray  # [N, 2] object centre (x, y) in grid units
    color: np.ndarray  # [N, 3] object RGB
    radius: np.ndarray  # [N] radius in grid units
    background: np.ndarray  # [N, 3] background RGB
    values: np.ndarray | None = None  # [N, n_concepts] concept values (attribute grids only)

    def __len__(self) -> int:
        return len(self.radius)


def _concept_column(grid: ConceptGrid, values: np.ndarray, concept: str) -> np.ndarray | None:
    if concept not in grid.concepts:
        return None
    return values[:, grid.concepts.index(concept)].astype(np.float32)


def sample_attributes(
    grid: ConceptGrid,
    values: np.ndarray,
    rng: np.random.Generator,
    *,
    at_mean: bool = False,
) -> Attributes:
    """Draw attributes for images whose concept values are ``values``.

    :param values: ``[N, n_concepts]`` concept value indices (0 or 1). Fractional values
        interpolate linearly between the two class means (0.5 = the midpoint), which the
        concept-signal measurement uses; shape must stay integer.
    :param at_mean: put every attribute exactly at its mean ("test" images, docs/method.md §2.3):
        concept attributes at their class means and, when background is not a concept, the
        nuisance background at the grey mean of its range, (0.9, 0.9, 0.9). Only the
        position stays random. This is what the authors' public generator
        (github.com/cfpark00/concept-learning) does for test images, and it sets the
        class-pair MSE of a size change (§2.7): a random background adds its variance to
        ``(object - background)^2``, which raised that MSE by 0.7-1.7% in expectation (up to
        3% with 128 images).

    An attribute grid (real images) has no attributes to draw: the result only carries
    ``values``, so that :func:`conditioning` gives their one-hot codes (no randomness used).
    """
    values = np.asarray(values, dtype=np.float32).reshape(len(values), len(grid.concepts))
    n = len(values)
    if grid.one_hot:
        return Attributes(
            shape=np.zeros(n, dtype=np.int64),
            position=np.zeros((n, 2), dtype=np.float32),
            color=np.broadcast_to(np.float32(FIXED_COLOR), (n, 3)).copy(),
            radius=np.full(n, SIZE_CENTER, dtype=np.float32),
            background=np.ones((n, 3), dtype=np.float32),
            values=values,
        )
    # Fixed draw order and amounts: position, color jitter, size jitter, background jitter.
    position = rng.uniform(-0.5, 0.5, size=(n, 2)).astype(np.float32)
    u_color = rng.uniform(-1.0, 1.0, size=(n, 3)).astype(np.float32)
    u_size = rng.uniform(0.0, 1.0, size=n).astype(np.float32)
    u_bg = rng.uniform(-1.0, 1.0, size=(n, 3)).astype(np.float32)
    jitter = 0.0 if at_mean else 1.0

    v = _concept_column(grid, values, "color")
    if v is None:
        color = np.broadcast_to(np.float32(FIXED_COLOR), (n, 3)).copy()
    else:
        red, blue = grid.color_mean(0), grid.color_mean(1)
        color = red + v[:, None] * (blue - red) + jitter * grid.half_range("color") * u_color

    v = _concept_column(grid, values, "size")
    if v is None:
        radius = np.full(n, SIZE_CENTER, dtype=np.float32)
    else:
        mean = grid.size_mean(0) + v * (grid.size_mean(1) - grid.size_mean(0))
        lo = np.maximum(mean - grid.half_range("size"), SIZE_FLOOR)
        hi = mean + grid.half_range("size")
        radius = np.where(at_mean, mean, lo + u_size * (hi - lo))

    v = _concept_column(grid, values, "background")
    if v is None:
        lo, hi = NUISANCE_BG
        if at_mean:  # the nuisance background is an attribute too: at its mean, grey (lo+hi)/2
            background = np.full((n, 3), (lo + hi) / 2, dtype=np.float32)
        else:
            background = lo + (u_bg + 1) / 2 * (hi - lo)
    else:
        light, dark = grid.background_mean(0), grid.background_mean(1)
        background = (
            light + v[:, None] * (dark - light) + jitter * grid.half_range("background") * u_bg
        )

    v = _concept_column(grid, values, "shape")
    shape = np.zeros(n, dtype=np.int64) if v is None else v.astype(np.int64)
    return Attributes(
        shape=shape,
        position=position,
        color=np.asarray(color, dtype=np.float32),
        radius=np.asarray(radius, dtype=np.float32),
        background=np.asarray(background, dtype=np.float32),
    )


@lru_cache(maxsize=16)
def _blur_matrix(size: int, sigma: float) -> np.ndarray:
    """``[size, size]`` matrix A with ``A @ x`` = 1-D Gaussian filter of x (reflect borders)."""
    return gaussian_filter1d(np.eye(size), sigma, axis=0, mode="reflect").astype(np.float32)


def object_mask(attrs: Attributes, image_size: int) -> np.ndarray:
    """Binary object masks, ``[N, S, S]`` float32 (1 inside the object)."""
    grid = np.linspace(-1.0, 1.0, image_size, dtype=np.float32)
    dx = grid[None, :, None] - attrs.position[:, 0, None, None]  # [N, S, 1] along axis 1 ("x")
    dy = grid[None, None, :] - attrs.position[:, 1, None, None]  # [N, 1, S] along axis 2 ("y")
    r = attrs.radius[:, None, None]
    circle = dx**2 + dy**2 < r**2
    if not attrs.shape.any():
        return circle.astype(np.float32)
    # Equilateral triangle of area pi r^2, centroid at the object centre, a vertex pointing +y.
    # Inside iff the point is within the inradius of the centroid along all three edge normals.
    inradius = TRIANGLE_SCALE * r / (2 * np.sqrt(3))
    inside = np.ones_like(circle)
    for angle in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6):
        inside &= dx * np.float32(np.cos(angle)) + dy * np.float32(np.sin(angle)) <= inradius
    return np.where(attrs.shape[:, None, None] == 1, inside, circle).astype(np.float32)


def render(
    attrs: Attributes,
    image_size: int,
    rng: np.random.Generator | None = None,
    *,
    blur_px: float = 1.0,
    noise: float = 1e-3,
) -> np.ndarray:
    """Render images, ``[N, 3, S, S]`` float32 in [0, 1].

    :param rng: source of the pixel noise; required when ``noise > 0``.
    """
    mask = object_mask(attrs, image_size)
    if blur_px > 0:
        a = _blur_matrix(image_size, float(blur_px))
        mask = a @ mask @ a.T  # separable Gaussian blur, batched as two matmuls
    # pixel = bg + m * (color - bg), one channel at a time: numpy broadcasts a [N, 1, 1] factor
    # over contiguous [N, S, S] planes several times faster than over a [N, 3, S, S] block.
    img = np.empty((len(attrs), 3, image_size, image_size), dtype=np.float32)
    diff = attrs.color - attrs.background
    for c in range(3):
        np.multiply(mask, diff[:, c, None, None], out=img[:, c])
        img[:, c] += attrs.background[:, c, None, None]
    if noise > 0:
        if rng is None:
            raise ValueError("render() needs an rng when noise > 0")
        img += np.float32(noise) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0, out=img)


def conditioning(grid: ConceptGrid, attrs: Attributes) -> np.ndarray:
    """The 11-d conditioning vectors of rendered images, ``[N, 11]`` float32.

    Active concepts carry the attribute values actually used to render each image; entries of
    concepts outside the grid (and position, which is never conditioned on) are zero. For an
    attribute grid: the one-hot codes of ``attrs.values``, ``[N, 2 n_concepts]``.
    """
    if grid.one_hot:
        if attrs.values is None:
            raise ValueError("attribute grid: these attributes carry no concept values")
        return grid.codes(attrs.values)
    h = np.zeros((len(attrs), COND_DIM), dtype=np.float32)
    if "shape" in grid.concepts:
        h[np.arange(len(attrs)), attrs.shape] = 1.0
    if "color" in grid.concepts:
        h[:, COND_SLICES["color"]] = attrs.color
    if "size" in grid.concepts:
        h[:, COND_SLICES["size"]] = attrs.radius[:, None]
    if "background" in grid.concepts:
        h[:, COND_SLICES["background"]] = attrs.background
    return h


def render_classes(
    grid: ConceptGrid,
    class_ids: np.ndarray,
    image_size: int,
    rng: np.random.Generator,
    *,
    at_mean: bool = False,
    blur_px: float = 1.0,
    noise: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render images of the given classes: returns ``(images, cond, values)``.

    ``images`` ``[N, 3, S, S]``, ``cond`` ``[N, 11]``, ``values`` ``[N, n_concepts]`` int8.
    """
    values = grid.all_bits()[np.asarray(class_ids)]
    attrs = sample_attributes(grid, values, rng, at_mean=at_mean)
    images = render(attrs, image_size, rng, blur_px=blur_px, noise=noise)
    return images, conditioning(grid, attrs), values.astype(np.int8)


def concept_signal(
    grid: ConceptGrid, image_size: int, *, n: int = 128, seed: int = 42, blur_px: float = 1.0
) -> dict[str, float]:
    """Measured concept signal: pixel MSE between matched images differing in one concept.

    For concept k, ``n`` pairs of noise-free images share position and nuisance background and
    have every other concept at the midpoint of its two class means; they differ only in k
    (value 0 vs 1, at the class means). The midpoint makes the signal of one concept
    independent of the other concepts' separations (shape, being categorical, stays at circle).
    """
    signal = {}
    n_c = len(grid.concepts)
    for k, concept in enumerate(grid.concepts):
        base = np.array([0.0 if c == "shape" else 0.5 for c in grid.concepts], dtype=np.float32)
        pair = []
        for value in (0, 1):
            values = np.tile(base, (n, 1)).reshape(n, n_c)
            values[:, k] = value
            attrs = sample_attributes(grid, values, np.random.default_rng(seed), at_mean=True)
            pair.append(render(attrs, image_size, blur_px=blur_px, noise=0.0))
        signal[concept] = float(np.mean((pair[0] - pair[1]) ** 2))
    return signal


def class_pair_mse(
    grid: ConceptGrid, image_size: int, *, n: int = 128, seed: int = 42, blur_px: float = 1.0
) -> dict[str, float]:
    """The authors' variant (§2.7): MSE between class-mean renders of classes differing in one
    concept, with positions matched by reseeding (the nuisance background is at its grey mean,
    as in the authors' test images). Keys ``"<class>|<class>"``."""
    renders = {}
    for i in range(grid.n_classes):
        rng = np.random.default_rng(seed)
        values = np.tile(grid.class_bits(i), (n, 1))
        attrs = sample_attributes(grid, values, rng, at_mean=True)
        renders[i] = render(attrs, image_size, blur_px=blur_px, noise=0.0)
    out = {}
    for i in range(grid.n_classes):
        for j in range(i + 1, grid.n_classes):
            diff = np.array(grid.class_bits(i)) != np.array(grid.class_bits(j))
            if diff.sum() == 1:
                key = f"{grid.class_name(i)}|{grid.class_name(j)}"
                out[key] = float(np.mean((renders[i] - renders[j]) ** 2))
    return out
