"""Real images in a CelebA-style folder (docs/method.md §7.2): the loader, its errors, the params,
and the pipeline on a tiny synthetic folder whose pixels encode two attributes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import conceptspace.data.dataset as dataset
from conceptspace.data.concepts import ConceptGrid
from conceptspace.data.folder import ImageFolder, read_attribute_table
from conceptspace.io import ArtifactError
from conceptspace.measure.classifier import load_classifier
from conceptspace.params import ParamsError, schema_errors, validate
from conceptspace.sections import Synthesize
from tests.conftest import copy_project

ATTRS = ("5_o_Clock_Shadow", "Male", "Young", "Smiling", "Bald")  # CelebA-like, extra columns
VALUES = {"Male": ("female", "male"), "Smiling": ("neutral", "smiling")}
GRID = ConceptGrid(
    ("Male", "Smiling"), held_out=({"Male": "female", "Smiling": "smiling"},), values=VALUES
)
# images per (Male, Smiling): female neutral, female smiling (held out), male neutral, male smiling
COUNTS = {(0, 0): 40, (0, 1): 24, (1, 0): 30, (1, 1): 45}


def make_folder(root: Path, counts=COUNTS, size: int = 16, seed: int = 0) -> Path:
    """A CelebA-format folder: red = Male, green in the upper half = Smiling, plus noise."""
    rng = np.random.default_rng(seed)
    img_dir = root / "img_align_celeba"
    img_dir.mkdir(parents=True)
    rows = []
    combos = [c for c, n in counts.items() for _ in range(n)]
    for i in rng.permutation(len(combos)):
        male, smiling = combos[i]
        name = f"{len(rows) + 1:06d}.png"
        a = rng.uniform(0.1, 0.3, size=(size, size, 3))
        a[:, :, 0] += 0.6 * male
        a[: size // 2, :, 1] += 0.6 * smiling  # PIL rows: top half
        Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).save(img_dir / name)
        other = rng.choice([-1, 1], size=3)
        vals = [other[0], 2 * male - 1, other[1], 2 * smiling - 1, other[2]]
        rows.append(name + " " + " ".join(f"{v:2d}" for v in vals))
    (root / "list_attr_celeba.txt").write_text(
        f"{len(rows)}\n" + " ".join(ATTRS) + "\n" + "\n".join(rows) + "\n"
    )
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("celeba"))


def _cfg(root, **kw) -> Synthesize:
    base = dict(
        image_size=8,
        n_per_class=1000,
        val_fraction=0.25,
        n_held_out=10,
        blur_px=0.5,
        noise=0.001,
        signal_samples=4,
        source="folder",
        folder={"root": str(root)},
    )
    return Synthesize.model_validate({**base, **kw})


# ---- the loader --------------------------------------------------------------------------------
def test_table_and_counts(folder):
    table = read_attribute_table(folder / "list_attr_celeba.txt")
    assert table.names == ATTRS and len(table.files) == sum(COUNTS.values())
    counts = ImageFolder.open(folder).counts(GRID)
    assert counts == {
        "female_neutral": 40,
        "female_smiling": 24,
        "male_neutral": 30,
        "male_smiling": 45,
    }


def test_dataset_is_balanced_held_out_kept_aside_and_coded(folder):
    data = dataset.synthesize(GRID, _cfg(folder), seed=0)
    held = GRID.class_of({"Male": "female", "Smiling": "smiling"})
    assert GRID.held_out_classes == [held]
    training = data["split"] < 2
    # balanced to the smallest training class (male_neutral: 30), capped by n_per_class
    for k in GRID.train_classes:
        assert int(((data["class_id"] == k) & training).sum()) == 30
    assert not (data["class_id"][training] == held).any()
    assert (
        int((data["split"] == 2).sum()) == 10
        and (data["class_id"][data["split"] == 2] == held).all()
    )
    assert int((data["split"] == 1).sum()) == round(0.25 * 90)
    # one-hot codes [1 - a1, a1, 1 - a2, a2]
    v = data["values"].astype(np.float32)
    np.testing.assert_array_equal(
        data["cond"], np.stack([1 - v[:, 0], v[:, 0], 1 - v[:, 1], v[:, 1]], axis=1)
    )
    np.testing.assert_array_equal(GRID.all_bits()[data["class_id"]], data["values"])
    # pixels: red = Male; green in the upper half (y upward: the end of the y axis) = Smiling
    img = data["images"]
    assert img.shape == (len(v), 3, 8, 8) and img.dtype == np.float32
    np.testing.assert_array_equal(img[:, 0].mean(axis=(1, 2)) > 0.5, v[:, 0] == 1)
    np.testing.assert_array_equal(img[:, 1, :, 4:].mean(axis=(1, 2)) > 0.5, v[:, 1] == 1)
    assert (img[:, 1, :, :4].mean(axis=(1, 2)) < 0.5).all()
    # deterministic, and capped by n_per_class
    again = dataset.synthesize(GRID, _cfg(folder), seed=0)
    for key in dataset.ARRAYS:
        np.testing.assert_array_equal(again[key], data[key])
    small = dataset.synthesize(GRID, _cfg(folder, n_per_class=12), seed=1)
    assert int((small["split"] < 2).sum()) == 3 * 12
    card = dataset.dataset_card(GRID, _cfg(folder), data, run="ms", seed=0)
    assert card["source"] == "folder" and card["cond_dim"] == 4 and card["mask"] is None
    assert card["held_out_classes"] == ["female_smiling"]
    assert card["concept_signal"]["Male"] > 0.05 and card["concept_signal"]["Smiling"] > 0.01


def test_masking_folder_data_nulls_the_code(folder):
    spec = {"class": {"Male": "male", "Smiling": "smiling"}, "concept": "Smiling"}
    data = dataset.synthesize(GRID, _cfg(folder, mask=spec), seed=0, mask=0.5)
    k = GRID.class_of(spec["class"])
    n = int(((data["class_id"] == k) & (data["split"] == 0)).sum())
    assert int(data["masked"].sum()) == round(0.5 * n)
    np.testing.assert_array_equal(data["cond"][data["masked"]], [[0, 1, 0, 0]] * round(0.5 * n))


def test_grid_codes_and_overprompt():
    k = GRID.class_of({"Male": "female", "Smiling": "smiling"})
    np.testing.assert_array_equal(GRID.class_mean_cond(k), [1, 0, 0, 1])
    assert GRID.cond_dim == 4 and GRID.class_names[k] == "female_smiling"
    # prompt + k * (code(value) - code(other)) on the concept's entries, not clipped
    np.testing.assert_allclose(GRID.overprompt_cond(k, "Male", 2.0), [3, -2, 0, 1])
    np.testing.assert_allclose(GRID.overprompt_cond(k, "Smiling", 1.0), [1, 0, -1, 2])
    assert ConceptGrid.from_dict(GRID.to_dict()) == GRID


# ---- bad input ---------------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(ArtifactError, match="synthesize.folder.root.*no such folder"):
        dataset.synthesize(GRID, _cfg(tmp_path / "nope"), seed=0)


def test_unknown_attribute(folder):
    grid = ConceptGrid(
        ("Male", "Wearing_Hat"), values={"Male": ("f", "m"), "Wearing_Hat": ("nohat", "hat")}
    )
    with pytest.raises(ArtifactError, match=r"no attribute \['Wearing_Hat'\]"):
        dataset.synthesize(grid, _cfg(folder), seed=0)


def test_table_lists_a_missing_image(tmp_path):
    root = make_folder(tmp_path / "f", counts={c: 3 for c in COUNTS})
    os.remove(root / "img_align_celeba" / "000002.png")
    with pytest.raises(ArtifactError, match="1 listed image.*000002.png.*do not match"):
        ImageFolder.open(root)


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda ls: ["99", *ls[1:]], "announces 99 images"),
        (lambda ls: [*ls[:2], ls[2] + " 1", *ls[3:]], "line 3 has 6 values"),
        (
            lambda ls: [*ls[:2], ls[2].replace("-1", "0", 1).replace(" 1", " 0", 1), *ls[3:]],
            "-1 or 1",
        ),
        (lambda ls: ["twelve", *ls[1:]], "line 1 must be the number"),
    ],
)
def test_malformed_table(tmp_path, edit, needle):
    root = make_folder(tmp_path / "f", counts={c: 3 for c in COUNTS})
    path = root / "list_attr_celeba.txt"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(ArtifactError, match=needle):
        ImageFolder.open(root)


def test_empty_class(tmp_path):
    root = make_folder(tmp_path / "f", counts={**COUNTS, (1, 0): 0})
    with pytest.raises(ArtifactError, match=r"\['male_neutral'\] have no image"):
        dataset.synthesize(GRID, _cfg(root), seed=0)


# ---- params --------------------------------------------------------------------------------------
def folder_doc(tiny_doc: dict, root: Path) -> dict:
    """Tiny params for folder data (Male x Smiling, female smiling held out)."""
    doc = copy.deepcopy(tiny_doc)
    doc["runs"] = {"ms": {}, "ms_mask": {"mask": 0.5}}
    doc["grid"] = {
        "concepts": ["Male", "Smiling"],
        "held_out": [{"Male": "female", "Smiling": "smiling"}],
        "values": {k: list(v) for k, v in VALUES.items()},
    }
    doc["synthesize"].update(
        source="folder",
        folder={"root": str(root)},
        mask={"class": {"Male": "male", "Smiling": "smiling"}, "concept": "Smiling"},
        n_held_out=6,
    )
    del doc["fit_classifier"]["separations"]
    doc["fit_classifier"].update(n_per_class=16, n_test=6)
    doc["intervene"]["overprompt"]["concepts"] = ["Male"]
    doc["intervene"]["linear"]["concepts"] = ["Male"]
    return doc


def test_folder_params_are_valid(tiny_doc, tmp_path):
    doc = folder_doc(tiny_doc, tmp_path)
    assert schema_errors(doc) == []
    params = validate(doc)
    grid = params.grid_for("ms")
    assert grid == GRID and params.mask_for("ms_mask") == 0.5
    # default value names: no<attribute>, <attribute> (lower case, no underscores)
    doc["grid"] = {"concepts": ["Male", "Black_Hair"], "held_out": None}
    doc["synthesize"]["mask"] = None
    doc["runs"] = {"ms": {}}
    params = validate(doc)
    assert params.grid_for("ms").class_names == [
        "nomale_noblackhair",
        "nomale_blackhair",
        "male_noblackhair",
        "male_blackhair",
    ]


# Relations between the names of a folder grid: only the model checks them.
MODEL_ONLY = [
    ("held-out value not a value name", "grid.held_out", [{"Male": "woman"}], "woman"),
    ("held-out concept not in the grid", "grid.held_out", [{"Bald": "bald"}], "Bald"),
    ("value names for another attribute", "grid.values", {"Bald": ["nobald", "bald"]}, "Bald"),
    ("value names repeat", "grid.values", {"Male": ["no", "yes"], "Smiling": ["no", "yes"]}, "no"),
    (
        "intervention on another attribute",
        "intervene.linear",
        {"concepts": ["Bald"], "doses": [1.0]},
        "Bald",
    ),
    (
        "mask of the held-out class",
        "synthesize.mask",
        {"class": {"Male": "female", "Smiling": "smiling"}, "concept": "Male"},
        "held-out",
    ),
]


@pytest.mark.parametrize("desc,key,value,needle", MODEL_ONLY, ids=[m[0] for m in MODEL_ONLY])
def test_folder_name_relations_rejected_by_the_model(tiny_doc, tmp_path, desc, key, value, needle):
    doc = folder_doc(tiny_doc, tmp_path)
    section, name = key.split(".")
    doc[section][name] = value
    assert schema_errors(doc) == []
    with pytest.raises(ParamsError, match=needle):
        validate(doc)


BOTH = [
    ("folder without its section", ("synthesize", "folder"), None, "synthesize.folder"),
    (
        "folder data with probe separations",
        ("fit_classifier", "separations"),
        [{"color": 0.4}],
        "separations",
    ),
    (
        "value name with an underscore",
        ("grid", "values"),
        {"Male": ["no_male", "male"], "Smiling": ["a", "b"]},
        "no_male",
    ),
    ("a run with a separation", ("runs", "ms"), {"color": 0.4}, "color"),
]


@pytest.mark.parametrize("desc,key,value,needle", BOTH, ids=[b[0] for b in BOTH])
def test_bad_folder_params_rejected_by_the_model(tiny_doc, tmp_path, desc, key, value, needle):
    doc = folder_doc(tiny_doc, tmp_path)
    if value is None:
        del doc[key[0]][key[1]]
    else:
        doc[key[0]][key[1]] = value
    with pytest.raises(ParamsError) as exc:
        validate(doc)
    assert "(schema)" not in str(exc.value) and needle in str(exc.value), str(exc.value)


# ---- the pipeline --------------------------------------------------------------------------------
def _sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and out.returncode:
        raise AssertionError(f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


@pytest.fixture(scope="module")
def folder_project(tmp_path_factory, tiny_doc, folder):
    root = copy_project(tmp_path_factory.mktemp("folder_sm"), folder_doc(tiny_doc, folder))
    _sh(root, "snakemake", "-j", "2", "--until", "probe")
    return root


@pytest.mark.workflow
def test_pipeline_on_folder_data_through_probe(folder_project):
    res = folder_project / "results/default"
    card = json.loads((res / "synthesize/ms_mask/seed0/card.json").read_text())
    assert card["mask"]["class"] == "male_smiling" and card["mask"]["concept"] == "Smiling"
    assert card["counts"]["held_out"] == {"female_smiling": 6}
    probe, meta = load_classifier(res / "fit_classifier/classifier.pt")
    assert meta["concepts"] == ["Male", "Smiling"] and probe.n_concepts == 2
    metrics = json.loads((res / "fit_classifier/metrics.json").read_text())
    assert set(metrics["accuracy_by_class"]) == set(GRID.class_names)
    from conceptspace.model.checkpoints import load_model

    net, _, _ = load_model(next((res / "train/ms/seed0/ckpt").glob("step_*.pt")))
    assert net.cfg.cond_dim == 4
    import pandas as pd

    table = pd.read_csv(res / "probe/ms/seed0/probe.csv")
    assert set(table["class"]) == set(GRID.class_names)
    assert set(table["concept"]) == {"Male", "Smiling"}


@pytest.mark.workflow
def test_interventions_and_analysis_on_folder_data(folder_project):
    """intervene and analyze on folder data: the whole pipeline runs."""
    out = _sh(folder_project, "snakemake", "-j", "2", check=False)
    assert out.returncode == 0, out.stderr[-3000:]
