"""Every experiment preset under configs/ is an overlay that makes a valid study over
params.yaml, and each runs end to end as its own study (`snakemake --config study=<name>`, into
results/<name>/) at a reduced scale (its design kept, its size shrunk to the tiny params), with
its own figures in `snakemake --report`, leaving the default study's params untouched."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conceptspace import studies
from conceptspace.params import validate
from tests.conftest import ROOT, copy_project
from tests.test_folder import make_folder

PRESETS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))

# What a preset's reduced run must show in its report, beyond the figures of every study.
PRESET_FIGURES = {
    "three_concepts": ("trajectories_3d", "distance_vs_learning_time"),
    "guidance": ("guidance",),
    "underspecification": ("underspecification",),
    "celeba": (),  # run on a synthetic CelebA-format folder (tests/test_folder.make_folder)
    "size_sweep": ("across_seeds",),  # the verdicts read on size, the swept concept
    # the paper's scale on one GPU; reduced, its four runs still train as one ensemble (train_g0)
    "paper_slice": (),
}
# The default design with other runs, seeds or scale (tests/test_workflow.py runs the default
# design on tiny params): paper.yaml at the original scale, reference.yaml more separations
# and seeds, smoke.yaml the tiny params themselves, unseen_seeds.yaml other seeds only,
# long_budget.yaml a longer schedule.
SWEEPS = {"long_budget", "paper", "reference", "smoke", "unseen_seeds"}

# Keys that set a study's size, not its design: a reduced run takes them from the tiny params.
SCALE_KEYS = {
    "synthesize": ("image_size", "n_per_class", "val_fraction", "n_held_out", "signal_samples"),
    "train": ("net", "steps", "batch_size", "checkpoints", "device", "threads"),
    "fit_classifier": ("n_per_class", "n_test", "steps", "batch_size", "width", "threads"),
    "probe": ("n_train", "n_held_out", "sampler_steps", "threads"),
    "intervene": ("n", "sampler_steps", "threads"),
}


def reduced(preset: dict, tiny: dict) -> dict:
    """The preset's design at the tiny params' scale (same runs, grid, methods, masks)."""
    doc = copy.deepcopy(preset)
    for section, keys in SCALE_KEYS.items():
        for key in keys:
            if key in tiny[section]:
                doc[section][key] = copy.deepcopy(tiny[section][key])
    doc["seeds"] = tiny["seeds"]
    doc["analyze"]["persistence"] = tiny["analyze"]["persistence"]
    return doc


def _sh(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _preset(name: str) -> dict:
    """The preset's study: its overlay laid over params.yaml."""
    return studies.resolve(name, ROOT).document()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_a_valid_overlay(name):
    over = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert over == studies.overlay_of(base, _preset(name)), "states keys it does not change"
    assert validate(_preset(name)).run_ids


@pytest.mark.parametrize("name", sorted(PRESET_FIGURES))
def test_reduced_preset_is_valid(name, tiny_doc):
    validate(reduced(_preset(name), tiny_doc), source=f"configs/{name}.yaml (reduced)")


def test_every_experiment_preset_has_a_run_test():
    assert set(PRESETS) - SWEEPS == set(PRESET_FIGURES)


@pytest.mark.workflow
@pytest.mark.parametrize("name", sorted(PRESET_FIGURES))
def test_preset_runs_end_to_end_with_its_figures_in_the_report(name, tiny_doc, tmp_path):
    doc = reduced(_preset(name), tiny_doc)
    if doc["synthesize"].get("source") == "folder":
        doc["synthesize"]["folder"]["root"] = str(make_folder(tmp_path / "celeba"))
    root = copy_project(tmp_path / "project", tiny_doc)
    overlay = studies.overlay_of(tiny_doc, doc)
    (root / "configs" / f"{name}.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    params_before = (root / "params.yaml").read_bytes()
    _sh(root, "snakemake", "-j", "2", "--config", f"study={name}")
    assert (root / "params.yaml").read_bytes() == params_before
    assert not (root / "results" / "default").exists()
    recorded = yaml.safe_load((root / "results" / name / "params.yaml").read_text())
    assert recorded.pop("study")["overlay"] == f"configs/{name}.yaml"
    assert recorded == doc
    metrics = json.loads((root / f"results/{name}/analyze/metrics.json").read_text())
    assert set(metrics["phenomena"]) >= {"signal_order", "memorization", "hidden_capability"}
    if name == "size_sweep":
        assert metrics["across_seeds"]["concept"] == "size"
    figs = root / f"results/{name}/analyze/figures"
    for fig in PRESET_FIGURES[name]:
        assert (figs / f"{fig}.png").stat().st_size > 0, fig
    _sh(root, "snakemake", "--config", f"study={name}", "--report", "report.html")
    html = (root / "report.html").read_text(errors="ignore")
    for fig in ("trajectories", *PRESET_FIGURES[name]):
        assert f"{fig}.png" in html, fig
