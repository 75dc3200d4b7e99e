"""The concept probe: shapes, determinism, known accuracy on ground-truth renders (against an
ideal-observer bound), position invariance, and its artifact contract (load errors, refusal
to measure grids it was not trained for)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from conceptspace.data.concepts import preset
from conceptspace.data.render import render, sample_attributes
from conceptspace.io import ArtifactError
from conceptspace.measure.classifier import (
    FORMAT,
    ClassifierConfig,
    ConceptClassifier,
    check_compatible,
    classifier_meta,
    evaluate,
    fit,
    load_classifier,
    make_classifier_data,
    predict,
    save_classifier,
)

SIZE = 16
TRAIN_COLORS = (0.15, 0.8)
EVAL_COLORS = (0.15, 0.4, 0.8)


def _grids(colors, size=0.4):
    return [preset("2x2", color=c, size=size) for c in colors]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(one_thread):
    """One probe on color separations {0.15, 0.8}, size 0.4, 16 px, with the default config
    but 1,000 steps instead of 2,000 (about 17 s on one idle core)."""
    return fit(_grids(TRAIN_COLORS), SIZE, ClassifierConfig(steps=1000), progress=False)


def _tiny_cfg(seed=0):
    return ClassifierConfig(width=8, steps=12, batch_size=16, n_per_class=8, seed=seed)


def _oracle_accuracy(grid, concept, kind, noise, n=512, seed=7):
    """Accuracy of an ideal observer that knows every attribute except the concept's value.

    For each image it compares two known Gaussians (the image and its counterfactual with the
    concept flipped, same jitter), so its accuracy ``mean Phi(|d| / 2 noise)`` bounds from above
    the accuracy of any classifier that must also infer position, background and jitter.
    """
    if noise == 0:
        return 1.0
    k = grid.concepts.index(concept)
    values = np.repeat(grid.all_bits(), n, axis=0)
    flipped = values.copy()
    flipped[:, k] = 1 - flipped[:, k]
    pair = []
    for v in (values, flipped):
        attrs = sample_attributes(grid, v, np.random.default_rng(seed), at_mean=kind == "mean")
        pair.append(render(attrs, SIZE, noise=0.0))
    d = np.sqrt(((pair[0] - pair[1]) ** 2).reshape(len(values), -1).sum(1))
    return float(norm.cdf(d / (2 * noise)).mean())


# ---- network and data -----------------------------------------------------------------------
@pytest.mark.parametrize("size", [8, 16, 32])
def test_shapes(size):
    probe = ConceptClassifier(3, width=8)
    x = torch.rand(5, 3, size, size)
    assert probe(x).shape == (5, 3, 2)
    p = predict(probe, x.numpy(), batch_size=2)
    assert p.shape == (5, 3) and p.dtype == np.float32
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p, torch.softmax(probe(x), -1)[..., 1].detach().numpy(), atol=1e-6)
    assert predict(probe, np.zeros((0, 3, size, size), np.float32)).shape == (0, 3)


def test_make_classifier_data():
    grids = _grids(TRAIN_COLORS)
    images, values, gi = make_classifier_data(grids, 8, 3, blur_px=1.0, noise=1e-3, seed=0)
    assert images.shape == (24, 3, 8, 8) and images.dtype == np.float32
    assert values.dtype == np.int64 and values.shape == (24, 2)
    np.testing.assert_array_equal(gi, np.repeat([0, 1], 12))
    np.testing.assert_array_equal(values[:12], np.repeat(grids[0].all_bits(), 3, axis=0))
    again = make_classifier_data(grids, 8, 3, blur_px=1.0, noise=1e-3, seed=0)[0]
    np.testing.assert_array_equal(images, again)
    with pytest.raises(ValueError, match="same concepts"):
        make_classifier_data([grids[0], preset("2x2x2")], 8, 3, blur_px=1.0, noise=1e-3, seed=0)


def test_fit_is_deterministic():
    grids = _grids(TRAIN_COLORS)
    state = torch.get_rng_state()
    a, hist = fit(grids, 8, _tiny_cfg(), progress=False)
    b, _ = fit(grids, 8, _tiny_cfg(), progress=False)
    c, _ = fit(grids, 8, _tiny_cfg(seed=1), progress=False)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    assert not a.training
    assert hist[-1]["step"] == 12 and np.isfinite(hist[-1]["loss"])


# ---- known behaviour ------------------------------------------------------------------------
def _accuracy_failures(probe):
    """Rows of evaluate() below the requirement: >= 99% at noise 0 and on class-mean renders
    (the brief's requirement), and on random renders under noise >= min(99%, ideal observer -
    2 points): at color separation 0.15 small objects under noise 0.05-0.08 are intrinsically
    ambiguous (ideal observer ~98-99%), so 99% is not reachable there by any classifier."""
    rows = evaluate(
        probe, _grids(EVAL_COLORS), SIZE, noise_levels=(0.0, 0.05, 0.08), n_per_class=256
    )
    assert len(rows) == 3 * 2 * 3 * 2
    assert {r["n"] for r in rows} == {4 * 256}
    failures = []
    for r in rows:
        need = 0.99
        if r["noise"] > 0 and r["kind"] == "random":
            grid = preset("2x2", **r["separations"])
            need = min(0.99, _oracle_accuracy(grid, r["concept"], r["kind"], r["noise"]) - 0.02)
        if r["accuracy"] < need:
            failures.append((r["separations"], r["kind"], r["noise"], r["concept"], r["accuracy"]))
    return failures


def test_probe_accuracy_on_ground_truth_renders(fitted):
    probe, history = fitted
    assert [h["step"] for h in history] == list(range(100, 1001, 100))
    assert history[-1]["loss"] < 0.1 * history[0]["loss"]
    assert not _accuracy_failures(probe)


@pytest.mark.slow
def test_default_config_accuracy(one_thread):
    """The same requirement for the full default config (2,000 steps, about 33 s on one core)."""
    probe, _ = fit(_grids(TRAIN_COLORS), SIZE, ClassifierConfig(), progress=False)
    assert not _accuracy_failures(probe)


def test_predictions_do_not_depend_on_position(fitted):
    """Moving the shape changes no prediction at the class means, and no confident prediction
    (probability within 0.2 of 0 or 1) at random attributes. A random radius or colour near the
    boundary between two classes gives a probability near 0.5 that a move may push across, as
    the pixel grid renders the shape a little differently (e.g. radius 0.503 of a small shape:
    0.68 at one position, 0.17 at another); most predictions must be confident, so the check
    cannot pass on an undecided probe."""
    probe, _ = fitted
    rng = np.random.default_rng(3)
    for grid in _grids(EVAL_COLORS):
        for at_mean in (True, False):
            values = np.repeat(grid.all_bits(), 16, axis=0)
            attrs = sample_attributes(grid, values, rng, at_mean=at_mean)
            p = predict(probe, render(attrs, SIZE, noise=0.0))
            base = p > 0.5
            confident = np.ones_like(base) if at_mean else np.abs(p - 0.5) > 0.3
            if at_mean:
                np.testing.assert_array_equal(base, values == 1)
            assert confident.mean() >= 0.9, (grid.separations, confident.mean())
            for _ in range(4):
                attrs.position = rng.uniform(-0.5, 0.5, size=attrs.position.shape).astype(
                    np.float32
                )
                moved = predict(probe, render(attrs, SIZE, noise=0.0)) > 0.5
                flipped = int(((moved != base) & confident).sum())
                assert flipped == 0, (grid.separations, at_mean, flipped)


# ---- artifacts ------------------------------------------------------------------------------
def _saved(tmp_path):
    grids = _grids(TRAIN_COLORS)
    probe = ConceptClassifier(2, width=8)
    meta = classifier_meta(grids, SIZE, _tiny_cfg(), accuracy=np.float32(0.5))
    path = tmp_path / "classifier.pt"
    save_classifier(path, probe, meta)
    return path, probe


def test_save_load_roundtrip(tmp_path):
    path, probe = _saved(tmp_path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["n_concepts"] == 2 and raw["width"] == 8
    loaded, meta = load_classifier(path)
    assert meta["concepts"] == ["color", "size"] and meta["image_size"] == SIZE
    assert meta["separation_range"] == {"color": [0.15, 0.8], "size": [0.4, 0.4]}
    assert meta["train_separations"][1] == {"color": 0.8, "size": 0.4}
    assert meta["config"]["width"] == 8 and meta["file"] == str(path)
    x = np.random.default_rng(0).random((4, 3, SIZE, SIZE), dtype=np.float32)
    np.testing.assert_array_equal(predict(loaded, x), predict(probe, x))
    assert not list(tmp_path.glob(".tmp*"))  # no temporaries left behind


def test_load_errors_name_the_file(tmp_path):
    path, _ = _saved(tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file" * 10)
    other = tmp_path / "other.pt"
    torch.save({"format": "conceptspace.ckpt.v1"}, other)
    missing = tmp_path / "missing.pt"
    for bad in (truncated, garbage, other, missing):
        with pytest.raises(ArtifactError, match=bad.name):
            load_classifier(bad)


def test_check_compatible(tmp_path):
    path, _ = _saved(tmp_path)
    _, meta = load_classifier(path)
    ok = ["color", "size"]
    for c in EVAL_COLORS:
        check_compatible(meta, ok, SIZE, {"color": c, "size": 0.4})
    with pytest.raises(ArtifactError, match="classifier.pt.*background"):
        check_compatible(meta, ["color", "size", "background"], SIZE, {"color": 0.4})
    with pytest.raises(ArtifactError, match="classifier.pt.*32 px"):
        check_compatible(meta, ok, 32, {"color": 0.4, "size": 0.4})
    with pytest.raises(ArtifactError, match=r"classifier.pt: color separation 0.1 .*\[0.15, 0.8\]"):
        check_compatible(meta, ok, SIZE, {"color": 0.1, "size": 0.4})
    with pytest.raises(ArtifactError, match="size separation 0.2 "):
        check_compatible(meta, ok, SIZE, {"color": 0.4, "size": 0.2})
    meta.pop("file")  # a meta dict that never came from a file still gets a clear message
    with pytest.raises(ArtifactError, match="^probe: color separation 0.9"):
        check_compatible(meta, ok, SIZE, {"color": 0.9, "size": 0.4})


def test_split_per_class_is_disjoint_capped_and_seeded():
    from conceptspace.measure.classifier import split_per_class

    ids = np.repeat([0, 1, 2], [10, 3, 50])
    train, test = split_per_class(ids, n_train=20, n_test=4, seed=0)
    assert not set(train) & set(test)
    assert [int((ids[test] == k).sum()) for k in range(3)] == [4, 1, 4]  # at most half a class
    assert [int((ids[train] == k).sum()) for k in range(3)] == [6, 2, 20]
    again = split_per_class(ids, n_train=20, n_test=4, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, test), again, strict=True))
    other = split_per_class(ids, n_train=20, n_test=4, seed=1)
    assert not np.array_equal(test, other[1])


def test_fit_arrays_learns_given_images():
    """A probe fitted on given (non-rendered) arrays reads their two attributes."""
    from conceptspace.measure.classifier import ClassifierConfig, evaluate_arrays, fit_arrays

    rng = np.random.default_rng(0)
    values = rng.integers(0, 2, size=(256, 2))
    images = rng.uniform(0, 0.2, size=(256, 3, 8, 8)).astype(np.float32)
    images[:, 0] += 0.7 * values[:, 0, None, None]
    images[:, 1, :, 4:] += 0.7 * values[:, 1, None, None]
    cfg = ClassifierConfig(width=8, steps=150, batch_size=32, lr=3e-3, noise_max=0.05, seed=0)
    probe, history = fit_arrays(images[:192], values[:192], 2, cfg, progress=False)
    rows = evaluate_arrays(probe, images[192:], values[192:], ["a", "b"], noise_levels=(0.0,))
    assert [r["concept"] for r in rows] == ["a", "b"] and all(r["n"] == 64 for r in rows)
    assert min(r["accuracy"] for r in rows) >= 0.95, rows
    assert history[-1]["loss"] < history[0]["loss"]


def test_classifier_config_is_the_params_section():
    """The library takes the fit_classifier section itself: each shared field once, by name."""
    from pathlib import Path

    from conceptspace.params import load_params

    fc = load_params(Path(__file__).resolve().parent.parent / "params.yaml").fit_classifier
    cfg = ClassifierConfig.from_section(fc)
    for name in (
        "width",
        "steps",
        "batch_size",
        "lr",
        "noise_max",
        "n_per_class",
        "n_test",
        "seed",
    ):
        assert getattr(cfg, name) == getattr(fc, name), name
    assert cfg.weight_decay == ClassifierConfig().weight_decay  # not a params key
