"""Underspecified prompts (docs/method.md §7.6): exactly round(p * n) training images of one class
lose one concept's conditioning entries; nothing else changes; params refuse bad specs."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import conceptspace.data.dataset as dataset
from conceptspace.data.concepts import COND_SLICES, ConceptGrid
from conceptspace.params import ParamsError, schema_errors, validate
from conceptspace.sections import Synthesize

GRID = ConceptGrid(("color", "size"), {"color": 0.6, "size": 0.32})
RED_SMALL = GRID.class_of({"color": "red", "size": "small"})
SPEC = {"class": {"color": "red", "size": "small"}, "concept": "color"}


def _cfg(**kw) -> Synthesize:
    base = dict(
        image_size=8,
        n_per_class=37,  # odd counts make rounding matter
        val_fraction=0.2,
        n_held_out=4,
        blur_px=0.5,
        noise=0.001,
        signal_samples=4,
        mask=SPEC,
    )
    return Synthesize.model_validate({**base, **kw})


@pytest.fixture(scope="module")
def unmasked():
    return dataset.synthesize(GRID, _cfg(), seed=3, mask=0.0)


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.75, 1.0, 0.1])
def test_masked_fraction_is_exact(unmasked, p):
    data = dataset.synthesize(GRID, _cfg(), seed=3, mask=p)
    cls_train = (data["class_id"] == RED_SMALL) & (data["split"] == dataset.SPLITS["train"])
    n = int(cls_train.sum())
    assert n == 37 - int(((data["class_id"] == RED_SMALL) & (data["split"] == 1)).sum())
    assert int(data["masked"].sum()) == round(p * n)
    assert not data["masked"][~cls_train].any()  # only that class, only its training split
    # Only the masked rows change, and only the color entries, which become 0.
    diff = data["cond"] != unmasked["cond"]
    assert not diff[~data["masked"]].any()
    color = np.zeros(11, bool)
    color[COND_SLICES["color"]] = True
    assert not diff[:, ~color].any()
    assert (data["cond"][data["masked"]][:, color] == 0).all()
    assert (unmasked["cond"][data["masked"]][:, color] > 0).all()  # they were set before
    for key in ("images", "values", "class_id", "split"):
        np.testing.assert_array_equal(data[key], unmasked[key])
    card = dataset.dataset_card(GRID, _cfg(), data, run="r", seed=3, mask=p)
    if p == 0:
        assert card["mask"] is None
    else:
        assert card["mask"] == {
            "class": "red_small",
            "concept": "color",
            "requested": p,
            "n_masked": round(p * n),
            "n_class": n,
            "fraction": round(p * n) / n,
        }


def test_masking_is_deterministic_and_nested():
    a = dataset.synthesize(GRID, _cfg(), seed=5, mask=0.5)
    b = dataset.synthesize(GRID, _cfg(), seed=5, mask=0.5)
    for key in dataset.ARRAYS:
        np.testing.assert_array_equal(a[key], b[key])
    c = dataset.synthesize(GRID, _cfg(), seed=5, mask=0.75)
    assert (c["masked"] >= a["masked"]).all() and c["masked"].sum() > a["masked"].sum()
    d = dataset.synthesize(GRID, _cfg(), seed=6, mask=0.5)
    assert not np.array_equal(np.flatnonzero(a["masked"]), np.flatnonzero(d["masked"]))


def test_size_mask_nulls_the_radius_only():
    spec = {"class": {"color": "blue", "size": "large"}, "concept": "size"}
    data = dataset.synthesize(GRID, _cfg(mask=spec), seed=0, mask=1.0)
    k = GRID.class_of({"color": "blue", "size": "large"})
    sel = (data["class_id"] == k) & (data["split"] == 0)
    assert (data["masked"] == sel).all()
    assert (data["cond"][sel, COND_SLICES["size"]] == 0).all()
    assert (data["cond"][sel, COND_SLICES["color"]] > 0).any()


def test_masked_dataset_round_trips(tmp_path):
    from conceptspace.io import write_npz

    data = dataset.synthesize(GRID, _cfg(), seed=0, mask=0.5)
    write_npz(tmp_path / "d.npz", **data)
    back = dataset.load_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(back["masked"], data["masked"])
    old = {k: v for k, v in data.items() if k != "masked"}  # written before masking existed
    write_npz(tmp_path / "old.npz", **old)
    assert not dataset.load_dataset(tmp_path / "old.npz")["masked"].any()


# ---- params -----------------------------------------------------------------------------------
def _doc(params_doc, mask=0.5, spec=SPEC):
    doc = copy.deepcopy(params_doc)
    run = next(iter(doc["runs"]))
    doc["runs"][run]["mask"] = mask
    if spec is not None:
        doc["synthesize"]["mask"] = copy.deepcopy(spec)
    return doc, run


def test_valid_mask_params(params_doc):
    doc, run = _doc(params_doc)
    assert schema_errors(doc) == []
    params = validate(doc)
    assert params.mask_for(run) == 0.5
    other = [r for r in params.run_ids if r != run]
    assert all(params.mask_for(r) == 0.0 for r in other)
    assert params.synthesize.mask.class_ == SPEC["class"]
    # mask 0 without a spec is fine (the default)
    doc, _ = _doc(params_doc, mask=0.0, spec=None)
    assert schema_errors(doc) == [] and validate(doc)


# (description, mask, spec, text the message must contain) rejected by the model
BOTH = [
    ("mask above 1", 1.5, SPEC, "mask"),
    ("negative mask", -0.1, SPEC, "mask"),
    ("mask without synthesize.mask", 0.5, None, "synthesize.mask"),
    ("mask concept not in grid", 0.5, {**SPEC, "concept": "background"}, "background"),
    ("mask concept unknown", 0.5, {**SPEC, "concept": "smell"}, "smell"),
    ("mask class incomplete", 0.5, {"class": {"color": "red"}, "concept": "color"}, "size"),
    (
        "mask class unknown value",
        0.5,
        {**SPEC, "class": {"color": "pink", "size": "small"}},
        "pink",
    ),
    ("mask spec lacks concept", 0.5, {"class": SPEC["class"]}, "concept"),
    ("mask spec unknown key", 0.5, {**SPEC, "fraction": 0.5}, "fraction"),
]


@pytest.mark.parametrize("desc,mask,spec,needle", BOTH, ids=[b[0] for b in BOTH])
def test_bad_mask_params_rejected_by_the_model(params_doc, desc, mask, spec, needle):
    doc, _ = _doc(params_doc, mask, spec)
    with pytest.raises(ParamsError) as exc:
        validate(doc)
    assert "(schema)" not in str(exc.value), "the model accepted it"
    assert needle in str(exc.value), str(exc.value)


def test_masking_a_held_out_class_is_rejected_by_the_model(params_doc):
    # Which classes are held out follows from the grid rule: the model checks it, not the schema.
    spec = {"class": {"color": "blue", "size": "small"}, "concept": "color"}
    doc, _ = _doc(params_doc, 0.5, spec)
    assert schema_errors(doc) == []
    with pytest.raises(ParamsError, match="blue_small.*held-out"):
        validate(doc)
