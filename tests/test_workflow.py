"""The whole pipeline on tiny params under both tools, in temporary copies of the project:
Snakemake and DVC produce byte-identical artifacts, repeated runs are identical, and bad
params stop both tools with the same message before anything is written."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import copy_project

pytestmark = pytest.mark.workflow

# Artifacts whose bytes must not depend on the tool that made them (figures are excluded:
# matplotlib embeds nothing variable in PNGs, but font hinting may differ between hosts).
DETERMINISTIC = ("*.npz", "*.json", "*.csv", "*.parquet", "*.pt")


def _sh(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(cmd, cwd=cwd, check=check, capture_output=True, text=True, env=env)


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for pattern in DETERMINISTIC:
        for p in sorted((root / "results").rglob(pattern)):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def snakemake_copy(tmp_path_factory, tiny_doc):
    root = copy_project(tmp_path_factory.mktemp("sm"), tiny_doc)
    _sh(root, "snakemake", "-j", "2")
    return root


@pytest.fixture(scope="module")
def dvc_copy(tmp_path_factory, tiny_doc):
    root = copy_project(tmp_path_factory.mktemp("dvc"), tiny_doc)
    _sh(root, "dvc", "repro")
    return root


def test_both_tools_make_identical_artifacts(snakemake_copy, dvc_copy):
    a, b = _digests(snakemake_copy), _digests(dvc_copy)
    assert a and a.keys() == b.keys()
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, differ


def test_datasets_are_made(snakemake_copy, tiny_doc):
    for run in tiny_doc["runs"]:
        for seed in tiny_doc["seeds"]:
            d = snakemake_copy / "results" / "default" / "synthesize" / run / f"seed{seed}"
            assert (d / "dataset.npz").stat().st_size > 0
            assert (d / "samples.png").stat().st_size > 0


def test_repeated_run_is_identical(snakemake_copy):
    before = _digests(snakemake_copy)
    _sh(snakemake_copy, "snakemake", "-j", "2", "--forceall", "--until", "synthesize")
    after = _digests(snakemake_copy)
    assert {k: v for k, v in after.items() if "synthesize" in k} == {
        k: v for k, v in before.items() if "synthesize" in k
    }


def test_bad_params_same_message_in_both_tools(tmp_path, tiny_doc):
    doc = copy.deepcopy(tiny_doc)
    run = next(iter(doc["runs"]))
    doc["runs"][run]["color"] = 0.95
    root = copy_project(tmp_path, doc)
    sm = _sh(root, "snakemake", "-j", "1", check=False)
    dvc = _sh(root, "dvc", "repro", check=False)
    needle = f"runs.{run}.color = 0.95"
    assert sm.returncode != 0 and needle in sm.stdout + sm.stderr
    assert dvc.returncode != 0 and needle in dvc.stdout + dvc.stderr
    assert not (root / "results").exists() or not any((root / "results").rglob("*.npz"))


def test_report_has_the_figures(snakemake_copy):
    out = _sh(snakemake_copy, "snakemake", "--report", "report.html")
    assert "Missing metadata" not in out.stdout + out.stderr  # Snakemake ran every job here
    html = (snakemake_copy / "report.html").read_text(errors="ignore")
    for name in ("trajectories", "learning_times", "capability"):
        assert name in html
    # the front page names the study and shows its summary (workflow/report/workflow.rst)
    assert "This report is the study" in html and "results/default/analyze/summary.md" in html
    assert "# Study summary" in html
    assert "results/default/analyze/headline.json" in html  # the metrics caption


def test_report_of_jobs_snakemake_did_not_run(dvc_copy):
    """Jobs DVC ran have no Snakemake records: the report warns once per file until
    `snakemake --touch --forceall` records them, which leaves the study up to date."""
    before = _sh(dvc_copy, "snakemake", "--report", "report.html")
    assert "Missing metadata" in before.stdout + before.stderr
    _sh(dvc_copy, "snakemake", "--touch", "--forceall", "-j", "1")
    after = _sh(dvc_copy, "snakemake", "--report", "report.html")
    assert "Missing metadata" not in after.stdout + after.stderr
    assert "# Study summary" in (dvc_copy / "report.html").read_text(errors="ignore")
    dry = _sh(dvc_copy, "snakemake", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    assert "Data and pipelines are up to date." in _sh(dvc_copy, "dvc", "status").stdout


def test_metrics_name_the_three_phenomena(snakemake_copy):
    import json

    metrics = json.loads((snakemake_copy / "results/default/analyze/metrics.json").read_text())
    assert set(metrics["phenomena"]) == {"signal_order", "memorization", "hidden_capability"}
    # None: not applicable (e.g. training classes never recognisable at the tiny scale)
    assert all(v is None or isinstance(v, bool) for v in metrics["phenomena"].values())


def test_slurm_profile_dry_run(snakemake_copy):
    out = _sh(
        snakemake_copy,
        "snakemake",
        "--workflow-profile",
        "workflow/profiles/slurm",
        "--dry-run",
        "--forceall",
    )
    assert "train" in out.stdout


def test_dvc_remote_round_trip_and_snakemake_touch(dvc_copy, tmp_path):
    """dvc push to a local directory remote, wipe cache and outputs, dvc pull: identical
    artifacts; then `snakemake --touch` makes Snakemake consider them up to date."""
    before = _digests(dvc_copy)
    remote = tmp_path / "remote"
    _sh(dvc_copy, "dvc", "remote", "add", "-d", "local", str(remote))
    _sh(dvc_copy, "dvc", "push")
    import shutil

    shutil.rmtree(dvc_copy / ".dvc" / "cache")
    for p in (dvc_copy / "results").rglob("*"):  # what DVC's cache holds (figures are in git)
        if p.is_file() and (p.suffix in (".npz", ".pt") or p.name == "samples.png"):
            p.unlink()
    _sh(dvc_copy, "dvc", "pull")
    assert _digests(dvc_copy) == before
    _sh(dvc_copy, "snakemake", "--touch", "-j", "1")
    dry = _sh(dvc_copy, "snakemake", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
