"""What Snakemake shows by itself stays readable (docs/pipeline.md, "What each tool shows by
itself"): every job's box in `snakemake --dag` names its run and seed, so that no two boxes
read alike, and `snakemake --lint` has nothing to say. Both on a tiny study with two seeds,
in a copy of the project; neither runs a job."""

from __future__ import annotations

import copy
import re
import subprocess

import pytest

from tests.conftest import THIRD_RUN, copy_project

pytestmark = pytest.mark.workflow

LABEL = re.compile(r'^\s*\d+\[label = "([^"]*)"', re.M)


def _run(root, *cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True)


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory, tiny_doc):
    doc = copy.deepcopy(tiny_doc)
    doc["seeds"] = [0, 1]
    return copy_project(tmp_path_factory.mktemp("two_seeds"), doc)


def dag_boxes(root) -> list[tuple[str, dict[str, str]]]:
    """The boxes of `snakemake --dag`: each one's rule and the wildcards written on it."""
    out = _run(root, "snakemake", "--dag")
    assert out.returncode == 0, out.stderr
    boxes = []
    for label in LABEL.findall(out.stdout):
        rule, *lines = label.split("\\n")
        boxes.append((rule, dict(line.split(": ", 1) for line in lines)))
    return boxes


def test_every_box_names_its_run_and_seed(two_seeds, tiny_doc):
    boxes = dag_boxes(two_seeds)
    per_run = [(rule, w) for rule, w in boxes if rule not in {"all", "analyze", "fit_classifier"}]
    expected = {(r, str(s)) for r in tiny_doc["runs"] for s in (0, 1)}
    for rule in ("synthesize", "train", "probe", "intervene"):
        shown = {tuple(w.values()) for r, w in per_run if r == rule}
        assert shown == expected, (rule, shown)
    # the training boxes name them by the training rule's own wildcards (rules/train.smk)
    assert {tuple(w) for r, w in per_run if r == "train"} == {("train_run", "train_seed")}
    # no two boxes read alike
    labels = [(rule, tuple(sorted(w.items()))) for rule, w in boxes]
    assert len(labels) == len(set(labels))


def test_grouped_training_boxes_are_the_groups(tmp_path, tiny_doc):
    """train.ensemble: 2 over three runs: the jobs train_g0 and train_g1, each its own box, and
    the probe boxes below them name their run and seed."""
    doc = copy.deepcopy(tiny_doc)
    runs = {**doc["runs"], **THIRD_RUN}
    doc["runs"] = {r: runs[r] for r in sorted(runs)}
    doc["train"]["ensemble"] = 2
    boxes = dag_boxes(copy_project(tmp_path, doc))
    assert sorted(rule for rule, _ in boxes if rule.startswith("train")) == ["train_g0", "train_g1"]
    probes = {(w["run"], w["seed"]) for rule, w in boxes if rule == "probe"}
    assert probes == {(r, "0") for r in runs}


def test_lint_has_nothing_to_say(two_seeds):
    out = _run(two_seeds, "snakemake", "--lint")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Lints for" not in out.stdout + out.stderr
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr
