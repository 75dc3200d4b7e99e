"""The renderer against the authors' published generator: class-pair pixel MSE (paper_spec §2.7).

How the reference values were produced (anyone can redo it; nothing of that code is in this
repository):

- Generator: the authors' public generator (github.com/cfpark00/concept-learning, commit
  d62dcd5), ``utils.generate_data(config, seed=42, forgen=True)`` for the ``images_1``
  dataset, i.e. ``generate_images_1(..., test=True)``: every attribute at its class mean,
  object centre uniform in [-0.5, 0.5]^2, 32x32 px, circle mask ``r < size`` smoothed by
  ``scipy.ndimage.gaussian_filter(mask, 1.0)`` (1 px blur), pixel noise 0.001, clip to [0, 1].
  (Importing their ``utils`` needs a stub ``models`` module; nothing else is changed.)
- Settings: their committed run configs
  ``yamls/images_1/2x2_final2/sc4ss4/sep_col=<dc>_sep_size=<ds>/seed=0.yaml`` (2x2 grid
  color x size, class index 2*color + size: 0 red_large, 1 red_small, 2 blue_large,
  3 blue_small), with ``n_samples_train``, ``n_samples_test`` and ``n_samples_train_gen`` set to
  zeros and ``n_samples_test_gen`` to ``[n] * 4``, exactly as their ``scripts/calc_mse_pix.py``.
- Seeds and samples: ``generate_data`` calls ``np.random.seed(42)`` before each class, so all
  four classes share positions (and pixel noise, which therefore cancels in the differences).
  ``n = 128`` (their default) for :data:`AUTHORS_N128` and ``n = 4096`` for
  :data:`AUTHORS_N4096`.
- Value: ``np.mean((x[l == i] - x[l == j]) ** 2)`` over images, channels and pixels, for the
  four pairs of classes that differ in one concept (two size changes, two color changes).

With test=True the authors' generator also puts the non-concept background at its mean, grey
(0.9, 0.9, 0.9); a random background adds its variance to the size-change MSE (+0.7% at
Δcolor 0.8 to +1.7% at Δcolor 0.2 in expectation). Their red and blue size-change MSEs are
therefore equal.
"""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.data.concepts import preset
from conceptspace.data.render import class_pair_mse, render, sample_attributes

SIZE_RED, SIZE_BLUE = "red_large|red_small", "blue_large|blue_small"
COLOR_LARGE, COLOR_SMALL = "red_large|blue_large", "red_small|blue_small"
PAIRS = {SIZE_RED: (0, 1), SIZE_BLUE: (2, 3), COLOR_LARGE: (0, 2), COLOR_SMALL: (1, 3)}

# (Δcolor, Δsize): {pair: MSE}, the authors' generator with n = 128 images per class, seed 42.
AUTHORS_N128 = {
    (0.2, 0.1): {SIZE_RED: 5.3609312e-03, COLOR_LARGE: 4.2095874e-03, COLOR_SMALL: 2.5808543e-03},
    (0.2, 0.4): {SIZE_RED: 4.2973269e-02, COLOR_LARGE: 7.4088448e-03, COLOR_SMALL: 8.8467094e-04},
    (0.4, 0.2): {SIZE_RED: 2.1889642e-02, COLOR_LARGE: 2.0722602e-02, COLOR_SMALL: 7.6428503e-03},
    (0.4, 0.4): {SIZE_RED: 5.5355396e-02, COLOR_LARGE: 2.9635375e-02, COLOR_SMALL: 3.5386840e-03},
    (0.6, 0.3): {SIZE_RED: 5.0351877e-02, COLOR_LARGE: 5.6303028e-02, COLOR_SMALL: 1.2132902e-02},
    (0.8, 0.1): {SIZE_RED: 1.1630495e-02, COLOR_LARGE: 6.7353390e-02, COLOR_SMALL: 4.1293669e-02},
}

# The same with n = 4096 images per class (seed 42), for the comparison with our own sampler.
AUTHORS_N4096 = {
    (0.2, 0.1): {SIZE_RED: 5.3363671e-03, COLOR_LARGE: 4.2093033e-03, COLOR_SMALL: 2.5835505e-03},
    (0.2, 0.4): {SIZE_RED: 4.2926878e-02, COLOR_LARGE: 7.3954314e-03, COLOR_SMALL: 8.7958778e-04},
    (0.4, 0.2): {SIZE_RED: 2.1845317e-02, COLOR_LARGE: 2.0741025e-02, COLOR_SMALL: 7.6716035e-03},
    (0.4, 0.4): {SIZE_RED: 5.5295646e-02, COLOR_LARGE: 2.9581720e-02, COLOR_SMALL: 3.5183511e-03},
    (0.6, 0.3): {SIZE_RED: 5.0358761e-02, COLOR_LARGE: 5.6313787e-02, COLOR_SMALL: 1.2140434e-02},
    (0.8, 0.1): {SIZE_RED: 1.1577204e-02, COLOR_LARGE: 6.7348845e-02, COLOR_SMALL: 4.1336805e-02},
}

TOLERANCE = 5e-3
"""Required agreement with the authors' values (0.5%)."""


def _expected(table: dict, seps: tuple[float, float]) -> dict[str, float]:
    ref = dict(table[seps])
    ref[SIZE_BLUE] = ref[SIZE_RED]  # grey background: red and blue are equally far from it
    return ref


def _authors_positions(n: int) -> np.ndarray:
    """Object centres of the authors' test images: after ``np.random.seed(42)`` their
    generator draws all x, then all y, uniform in [-0.5, 0.5] (no other draw comes first)."""
    rs = np.random.RandomState(42)
    x = rs.uniform(-0.5, 0.5, n)
    y = rs.uniform(-0.5, 0.5, n)
    return np.stack([x, y], axis=1).astype(np.float32)


@pytest.mark.parametrize("seps", sorted(AUTHORS_N128))
def test_same_images_as_the_authors_generator(seps):
    """At the authors' positions our class-mean renders give their MSEs (to float precision:
    mask, 1 px blur, radius in grid units and the image grid are the same)."""
    grid = preset("2x2", color=seps[0], size=seps[1])
    n = 128
    images = []
    for i in range(grid.n_classes):
        values = np.tile(grid.class_bits(i), (n, 1))
        attrs = sample_attributes(grid, values, np.random.default_rng(0), at_mean=True)
        attrs.position = _authors_positions(n)
        images.append(render(attrs, 32, blur_px=1.0, noise=0.0))
    for pair, ref in _expected(AUTHORS_N128, seps).items():
        i, j = PAIRS[pair]
        mse = float(np.mean((images[i] - images[j]) ** 2))
        # measured agreement ~1e-6; the 1e-4 bound leaves room for float32 rounding only
        assert mse == pytest.approx(ref, rel=1e-4), (pair, mse, ref)


@pytest.mark.parametrize("seps", sorted(AUTHORS_N4096))
def test_class_pair_mse_matches_the_authors(seps):
    """Our own measurement (our positions, 4096 images per class) within 0.5% of theirs."""
    grid = preset("2x2", color=seps[0], size=seps[1])
    ours = class_pair_mse(grid, 32, n=4096, blur_px=1.0)
    ref = _expected(AUTHORS_N4096, seps)
    assert set(ours) == set(ref)
    for pair, value in ref.items():
        assert ours[pair] == pytest.approx(value, rel=TOLERANCE), (pair, ours[pair], value)


def test_test_images_have_the_mean_nuisance_background():
    """At class means the non-concept background is grey 0.9 (the authors' test images);
    training draws stay uniform in [0.8, 1] per channel."""
    grid = preset("2x2", color=0.4, size=0.4)
    values = np.tile(grid.class_bits(3), (500, 1))
    test = sample_attributes(grid, values, np.random.default_rng(1), at_mean=True)
    np.testing.assert_array_equal(test.background, np.float32(0.9))
    train = sample_attributes(grid, values, np.random.default_rng(1))
    assert train.background.min() >= 0.8 and train.background.max() <= 1.0
    assert train.background.std() > 0.05
    # same draws either way: positions do not depend on at_mean
    np.testing.assert_array_equal(test.position, train.position)
