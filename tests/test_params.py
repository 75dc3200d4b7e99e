"""params.yaml: the typed model rejects bad documents naming the offending key and value, and
the JSON schema generated from it is current and agrees with it."""

from __future__ import annotations

import copy

import pytest

from conceptspace.params import (
    SCHEMA_PATH,
    ParamsError,
    load_params,
    read_yaml,
    schema_errors,
    schema_text,
    validate,
)


def _set(doc: dict, path: str, value) -> dict:
    """Copy of ``doc`` with ``path`` (dotted; ``RUN`` = the first run id) set to ``value``."""
    doc = copy.deepcopy(doc)
    path = path.replace("RUN", next(iter(doc["runs"])))
    *head, last = path.split(".")
    node = doc
    for key in head:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()

# (description, key path, value, text that the message must contain)
INVALID = [
    ("color separation pushes a channel outside [0, 1]", "runs.RUN.color", 0.9, "runs.RUN.color"),
    ("negative color separation", "runs.RUN.color", -0.1, "runs.RUN.color"),
    ("size separation drives the small radius to zero", "runs.RUN.size", 0.95, "runs.RUN.size"),
    ("zero size separation", "runs.RUN.size", 0.0, "runs.RUN.size"),
    ("unknown concept in the grid", "grid.concepts", ["color", "smell"], "smell"),
    ("unknown concept in a run", "runs.RUN.smell", 0.2, "smell"),
    ("a run lacks a grid concept", "runs.RUN", {"color": 0.4}, "size"),
    ("non-string run id", "runs", {20: {"color": 0.2, "size": 0.4}}, "20"),
    ("run id with a dot", "runs", {"c0.2": {"color": 0.2, "size": 0.4}}, "c0.2"),
    ("empty sweep", "runs", {}, "runs"),
    ("no seeds", "seeds", [], "seeds"),
    ("duplicate seeds", "seeds", [0, 0], "seeds"),
    ("negative seed", "seeds", [-1], "seeds"),
    (
        "held-out class names a concept not in the grid",
        "grid.held_out",
        [{"color": "blue", "background": "dark"}],
        "background",
    ),
    ("held-out class with an unknown value", "grid.held_out", [{"color": "purple"}], "purple"),
    ("negative count", "synthesize.n_per_class", -5, "synthesize.n_per_class"),
    ("wrong type: string for an int", "synthesize.image_size", "16", "synthesize.image_size"),
    ("wrong type: bool for a number", "synthesize.noise", True, "synthesize.noise"),
    ("wrong type: float for an int", "synthesize.n_held_out", 3.5, "synthesize.n_held_out"),
    ("validation fraction of 1", "synthesize.val_fraction", 1.0, "synthesize.val_fraction"),
    ("unknown section", "sythesize", {"image_size": 16}, "sythesize"),
    ("unknown key in a section", "synthesize.imagesize", 16, "imagesize"),
    ("missing key", "synthesize.blur_px", _DELETE, "blur_px"),
    ("unknown intervention method", "intervene.methods", ["naive", "hack"], "hack"),
    ("empty dose list", "intervene.linear.doses", [], "intervene.linear.doses"),
    (
        "intervention on a concept not in the grid",
        "intervene.linear.concepts",
        ["color", "background"],
        "background",
    ),
    ("guidance without a guidance-trained model", "intervene.methods", ["naive", "cfg"], "cfg"),
    ("guidance without the naive baseline", "intervene.methods", ["cfg"], "naive"),
    ("probe grid lacks a concept", "fit_classifier.separations", [{"color": 0.4}], "size"),
    ("unknown device", "train.device", "tpu", "train.device"),
    ("learning-time threshold above 1", "analyze.thresholds", [0.8, 1.5], "thresholds"),
    ("masked run without synthesize.mask", "runs.RUN.mask", 0.5, "synthesize.mask"),
    ("masked fraction above 1", "runs.RUN.mask", 1.2, "runs.RUN.mask"),
    (
        "mask concept not in the grid",
        "synthesize.mask",
        {"class": {"color": "red", "size": "small"}, "concept": "background"},
        "background",
    ),
    (
        "mask class with an unknown value",
        "synthesize.mask",
        {"class": {"color": "teal", "size": "small"}, "concept": "color"},
        "teal",
    ),
    ("unknown data source", "synthesize.source", "web", "synthesize.source"),
    ("folder source without a folder", "synthesize.source", "folder", "synthesize.folder"),
    ("folder section with shapes data", "synthesize.folder", {"root": "/data/celeba"}, "folder"),
    ("value names with shapes data", "grid.values", {"color": ["r", "b"]}, "grid.values"),
    ("shapes data without probe separations", "fit_classifier.separations", _DELETE, "separations"),
]


def test_committed_params_are_valid(root):
    params = load_params(root / "params.yaml")
    assert params.run_ids and params.seeds
    assert schema_errors(read_yaml(root / "params.yaml")) == []


def test_tiny_params_are_valid(tiny_doc):
    validate(tiny_doc)
    assert schema_errors(tiny_doc) == []


# Relations between two numbers (a multiple of, at most) that JSON Schema cannot state: only
# the typed model rejects these, and the schema is checked to let them through unremarked.
MODEL_ONLY = [
    ("net channels not divisible by groups", "train.net.channels", [16, 30], "channels"),
    ("first checkpoint after the last step", "train.checkpoints.first", 10**6, "first"),
    (
        "image size not divisible by the U-Net's downsampling",
        "synthesize.image_size",
        18,
        "image_size",
    ),
]


@pytest.mark.parametrize("desc,path,value,needle", MODEL_ONLY, ids=[i[0] for i in MODEL_ONLY])
def test_numeric_relations_are_rejected_by_the_model(params_doc, desc, path, value, needle):
    doc = _set(params_doc, path, value)
    assert schema_errors(doc) == []
    with pytest.raises(ParamsError) as exc:
        validate(doc)
    assert needle in str(exc.value), str(exc.value)


@pytest.mark.parametrize("desc,path,value,needle", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_documents_are_rejected_by_the_model(params_doc, desc, path, value, needle):
    doc = _set(params_doc, path, value)
    with pytest.raises(ParamsError) as exc:
        validate(doc)
    assert "(schema)" not in str(exc.value), "the model accepted it"
    assert needle.replace("RUN", next(iter(params_doc["runs"]))) in str(exc.value), str(exc.value)


def test_at_least_twelve_distinct_invalid_documents():
    assert len({(p, repr(v)) for _, p, v, _ in INVALID}) >= 12


VALID = [
    ("2x2x2 grid", "grid", {"concepts": ["color", "size", "background"], "held_out": None}),
    ("explicit held-out class", "grid.held_out", [{"color": "blue", "size": "small"}]),
    ("integer separation", "runs.RUN.size", 0.4),
    ("several seeds", "seeds", [0, 1, 2]),
    ("explicit shapes source", "synthesize.source", "shapes"),
    (
        "mask spec with every run unmasked",
        "synthesize.mask",
        {"class": {"color": "red", "size": "small"}, "concept": "size"},
    ),
    ("explicit unmasked run", "runs.RUN.mask", 0.0),
]


@pytest.mark.parametrize("desc,path,value", VALID, ids=[v[0] for v in VALID])
def test_valid_variants_are_accepted_by_both(params_doc, desc, path, value):
    doc = _set(params_doc, path, value)
    if desc == "2x2x2 grid":
        for seps in [*doc["runs"].values(), *doc["fit_classifier"]["separations"]]:
            seps["background"] = 0.4
    assert schema_errors(doc) == []
    validate(doc)


def test_duplicate_run_id_is_rejected(tmp_path):
    text = "runs:\n  c040: {color: 0.4, size: 0.4}\n  c040: {color: 0.8, size: 0.4}\n"
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match="duplicate key 'c040'"):
        read_yaml(tmp_path / "params.yaml")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_stage_rejects_bad_params_before_writing(tmp_path, params_doc):
    """A stage given invalid params exits 2 with the key and value named, writing nothing."""
    import yaml

    from stages import synthesize

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_set(params_doc, "runs.RUN.color", 0.9)))
    out = tmp_path / "out"
    argv = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--run",
        next(iter(params_doc["runs"])),
        "--seed",
        "0",
        "--dataset",
        str(out / "d.npz"),
        "--card",
        str(out / "c.json"),
        "--samples",
        str(out / "s.png"),
    ]
    assert synthesize.main(argv) == 2
    assert not out.exists()


def test_unknown_run_id_and_seed(root):
    params = load_params(root / "params.yaml")
    with pytest.raises(ParamsError, match="unknown run id 'c999'"):
        params.grid_for("c999")
    with pytest.raises(ParamsError, match="unknown seed 12345"):
        params.check_seed(12345)


def test_a_training_group_is_checked_against_params(tiny_doc):
    params = validate(tiny_doc)  # train.ensemble: 1
    run, seed = next(iter(tiny_doc["runs"])), tiny_doc["seeds"][0]
    params.check_training_group([(run, seed)])
    with pytest.raises(ParamsError, match="unknown run id 'c999'"):
        params.check_training_group([("c999", seed)])
    with pytest.raises(ParamsError, match="names a run twice"):
        params.check_training_group([(run, seed), (run, seed)])
    other = list(tiny_doc["runs"])[1]
    with pytest.raises(ParamsError, match="train.ensemble = 1: a group of 2 runs"):
        params.check_training_group([(run, seed), (other, seed)])


def test_a_sweep_outside_the_probes_training_range_is_refused(params_doc):
    params = validate(params_doc)
    params.check_probe_range()
    low = min(s["color"] for s in params_doc["fit_classifier"]["separations"]) / 2
    run = next(iter(params_doc["runs"]))
    with pytest.raises(ParamsError, match=rf"runs.{run}.color = {low}: outside the probe's"):
        validate(_set(params_doc, "runs.RUN.color", low)).check_probe_range()


ALL_FOUR = [
    {"color": "red", "size": "large"},
    {"color": "red", "size": "small"},
    {"color": "blue", "size": "large"},
    {"color": "blue", "size": "small"},
]


@pytest.mark.parametrize(
    "grid,side",
    [
        ({"concepts": ["color", "size"], "held_out": ALL_FOUR}, "training"),
        ({"concepts": ["color", "size"], "held_out": []}, "held-out"),
        ({"concepts": ["color"], "held_out": None}, "held-out"),
    ],
    ids=["every class held out", "empty held-out list", "one concept, no held-out class"],
)
def test_grid_without_a_class_on_one_side_is_refused(params_doc, grid, side):
    doc = _set(params_doc, "grid", grid)
    if grid["concepts"] == ["color"]:
        for run in doc["runs"].values():
            run.pop("size")
        for seps in doc["fit_classifier"]["separations"]:
            seps.pop("size")
        doc["intervene"]["overprompt"]["concepts"] = doc["intervene"]["linear"]["concepts"] = [
            "color"
        ]
    with pytest.raises(ParamsError, match=f"grid.held_out = .*no {side} class"):
        validate(doc)


def test_committed_schema_is_generated_from_the_model():
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "workflow/schemas/params.schema.yaml is stale: run "
        'python -c "from conceptspace.params import write_schema; write_schema()"'
    )


# Types, ranges, unknown and missing keys: the generated schema rejects these as the model does.
SCHEMA_REJECTS = [
    ("runs.RUN.color", 0.9),
    ("synthesize.image_size", "16"),
    ("synthesize.noise", True),
    ("synthesize.n_held_out", 3.5),
    ("sythesize", {"image_size": 16}),
    ("synthesize.imagesize", 16),
    ("synthesize.blur_px", _DELETE),
    ("intervene.methods", ["naive", "hack"]),
    ("train.device", "tpu"),
    ("analyze.ready_acc", 1.5),
    ("analyze.emergence_persistence", 0),
]


@pytest.mark.parametrize("path,value", SCHEMA_REJECTS, ids=[p for p, _ in SCHEMA_REJECTS])
def test_schema_rejects_types_ranges_and_keys(params_doc, path, value):
    doc = _set(params_doc, path, value)
    assert schema_errors(doc)
    with pytest.raises(ParamsError):
        validate(doc)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (SCHEMA_PATH.parents[2] / "configs").glob("*.yaml"))
)
def test_every_preset_is_valid_for_schema_and_model(root, name):
    from conceptspace.studies import resolve

    doc = resolve(f"configs/{name}", root).document()  # the overlay laid over params.yaml
    assert schema_errors(doc) == []
    validate(doc, source=name)
