"""Concept grids and the renderer: class layout, attribute ranges, pixel statistics, the
measured concept signal, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from conceptspace.data.concepts import ConceptGrid, preset
from conceptspace.data.render import (
    concept_signal,
    conditioning,
    object_mask,
    render,
    render_classes,
    sample_attributes,
)


def test_2x2_classes_and_split():
    g = preset("2x2", color=0.2, size=0.4)
    assert g.class_names == ["red_large", "red_small", "blue_large", "blue_small"]
    assert g.train_classes == [0, 1, 2] and g.held_out_classes == [3]
    # naive prompt of the held-out class (docs/method.md §2.5 worked example)
    np.testing.assert_allclose(g.class_mean_cond(3)[4:8], [0.4, 0.4, 0.6, 0.25], atol=1e-6)


def test_2x2x2_split_and_explicit_held_out():
    g = preset("2x2x2")
    assert [g.class_name(i) for i in g.train_classes] == [
        "red_large_light",
        "red_large_dark",
        "red_small_light",
        "blue_large_light",
    ]
    g2 = ConceptGrid(
        ("color", "size"),
        {"color": 0.4, "size": 0.4},
        held_out=({"color": "blue", "size": "large"},),
    )
    assert g2.held_out_classes == [2]


def test_attribute_ranges():
    g = preset("2x2", color=0.1, size=0.4)
    rng = np.random.default_rng(0)
    a = sample_attributes(g, np.array([[0, 0]] * 4000 + [[0, 1]] * 4000), rng)
    big, small = a.radius[:4000], a.radius[4000:]
    assert big.min() >= 0.5 - 1e-6 and big.max() <= 0.8 + 1e-6  # docs/method.md §2.4 example
    assert small.min() >= 0.1 - 1e-6 and small.max() <= 0.4 + 1e-6
    np.testing.assert_allclose(a.color[:, 0].min(), 0.55 - 0.0125, atol=1e-3)
    assert (np.abs(a.position) <= 0.5).all()
    assert (a.background >= 0.8).all() and (a.background <= 1.0).all()


def test_pixel_statistics_of_a_clean_render():
    g = preset("2x2", color=0.4, size=0.4)
    a = sample_attributes(g, np.array([[1, 0]]), np.random.default_rng(0), at_mean=True)
    a.position[:] = 0.0
    a.background[:] = 1.0
    img = render(a, 32, blur_px=0.0, noise=0.0)[0]
    # centre pixel is the blue mean, corners are the background
    np.testing.assert_allclose(img[:, 15, 15], [0.3, 0.3, 0.7], atol=1e-6)
    np.testing.assert_allclose(img[:, 0, 0], [1.0, 1.0, 1.0], atol=1e-6)
    # object area matches a circle of radius 0.65 grid units (pitch 2/31)
    area_px = object_mask(a, 32)[0].sum()
    assert abs(area_px - np.pi * (0.65 * 31 / 2) ** 2) / area_px < 0.03


def test_triangle_has_the_area_of_the_circle():
    g = ConceptGrid(("shape", "size"), {"size": 0.4})
    a = sample_attributes(g, np.array([[0, 0], [1, 0]]), np.random.default_rng(0), at_mean=True)
    a.position[:] = 0.0
    m = object_mask(a, 64)
    assert abs(m[0].sum() - m[1].sum()) / m[0].sum() < 0.03
    assert not np.array_equal(m[0], m[1])


def test_conditioning_holds_actual_values():
    g = preset("2x2", color=0.4, size=0.4)
    a = sample_attributes(g, np.array([[0, 1]] * 5), np.random.default_rng(1))
    h = conditioning(g, a)
    assert h.shape == (5, 11)
    np.testing.assert_array_equal(h[:, 4:7], a.color)
    np.testing.assert_array_equal(h[:, 7], a.radius)
    assert (h[:, :4] == 0).all() and (h[:, 8:] == 0).all()


def test_renders_are_deterministic_and_in_range():
    g = preset("2x2", color=0.4, size=0.4)
    ids = np.repeat([0, 1, 2], 50)
    x1 = render_classes(g, ids, 16, np.random.default_rng(3))
    x2 = render_classes(g, ids, 16, np.random.default_rng(3))
    for a, b in zip(x1, x2, strict=True):
        assert a.tobytes() == b.tobytes()
    assert x1[0].dtype == np.float32 and x1[0].min() >= 0 and x1[0].max() <= 1


SEPS = [0.1, 0.2, 0.3, 0.4, 0.6, 0.8]


@pytest.mark.parametrize("concept,max_sep", [("color", 0.8), ("size", 0.6)])
def test_concept_signal_grows_strictly_with_separation(concept, max_sep):
    seps = [s for s in SEPS if s <= max_sep]
    assert len(seps) >= 5
    signals = []
    for s in seps:
        g = preset("2x2", **{concept: s})
        signals.append(concept_signal(g, 16, n=64)[concept])
    assert all(b > a for a, b in zip(signals, signals[1:], strict=False)), signals


def test_color_signal_ignores_the_size_separation():
    """The color signal does not move when only the size separation changes."""
    color = [
        concept_signal(preset("2x2", color=0.4, size=s), 16, n=64)["color"]
        for s in (0.1, 0.2, 0.4, 0.6)
    ]
    # sampling noise of the measurement: spread over reseeded measurements at a fixed config
    g = preset("2x2", color=0.4, size=0.4)
    noise = np.std([concept_signal(g, 16, n=64, seed=s)["color"] for s in range(5)])
    assert np.ptp(color) <= noise, (color, noise)
