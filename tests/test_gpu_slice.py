"""benchmarks/gpu_slice.py: end to end at a tiny size on the CPU (the slice's design over the
tiny params, its four runs as one ensemble, every stage with the pipeline's own commands in a
scratch copy, one archive back), and the arithmetic that sizes the slice and projects."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conceptspace import studies
from conceptspace.params import validate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_slice as S  # noqa: E402

RUNS = ("c020", "c040", "c060", "c080")


@pytest.mark.workflow
def test_tiny_slice_runs_end_to_end_on_cpu(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    ours = ROOT / "results" / "paper_slice"
    before = sorted(ours.rglob("*")) if ours.exists() else []
    cmd = [sys.executable, "benchmarks/gpu_slice.py", "--tiny", "--device", "cpu"]
    cmd += ["--skip-tests", "--out", str(out), "--work", str(work), "--jobs", "2"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for needle in ("ensemble step", "GFLOP", "probe sampling", "projection, tiny params"):
        assert needle in r.stdout, needle

    record = json.loads((out / "gpu_slice.json").read_text())
    assert record["flops_per_model_step"] > 0
    for mode in ("eager", "graph", "fast"):
        for k in (1, 2):
            cell = record["step"][f"{mode}/{k}"]
            assert cell["model_steps_per_s"] > 0 and cell["tflops"] > 0, (mode, k)
    assert "at least 2 runs" in record["step"]["fast_cl/1"]  # refused, kept as data
    assert record["step"]["fast_cl/2"]["model_steps_per_s"] > 0
    assert record["eval_batched"]["speedup"] > 0
    sl = record["slice"]
    assert not sl["failures"] and sl["trained_runs"] == 4 and len(sl["waves"]) == 4
    assert record["projection"]["eager"]["total_s"] > 0

    with tarfile.open(out / "gpu_slice.tar.gz") as tar:
        names = set(tar.getnames())
        params = yaml.safe_load(tar.extractfile("paper_slice/params.yaml").read())
        metrics = json.loads(tar.extractfile("paper_slice/analyze/metrics.json").read())
    assert "gpu_slice.json" in names and "paper_slice/analyze/figures/trajectories.png" in names
    for run in RUNS:
        assert f"paper_slice/train/{run}/seed0/log/checkpoints.csv" in names
        assert f"paper_slice/probe/{run}/seed0/probe.csv" in names
    assert not [n for n in names if n.endswith((".pt", ".npz"))]  # no checkpoints or datasets
    assert params["train"]["ensemble"] == 4 and sorted(params["runs"]) == list(RUNS)
    assert {"signal_order", "memorization", "hidden_capability"} <= set(metrics["phenomena"])
    after = sorted(ours.rglob("*")) if ours.exists() else []
    assert after == before  # the repository's study folder is untouched (a scratch copy ran)


def test_slice_is_sized_to_the_time_left():
    """At the measured H200 rate of a 4-model ensemble (58 model-steps/s) and 1.5 s per run
    and checkpoint, 200 s hold about 1,800 steps and 13 checkpoints; a fast step holds all."""
    steps, count = S.size_slice(58.3, 1.5, 200.0, 4)
    assert (steps, count) == (1778, 13)
    assert S.size_slice(1e6, 0.01, 1000.0, 4) == (20000, 60)
    assert S.size_slice(None, 1.5, 200.0, 4) == (200, 8)


def test_resized_slice_is_a_valid_study():
    over = S.slice_overlay(False, 1740, 13)
    assert over["train"]["steps"] == 1740
    assert over["train"]["checkpoints"] == {"first": 44, "count": 13}  # the preset's 500/20,000
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    doc = validate(studies.merge(base, over), source="resized slice")
    assert len(doc.checkpoint_steps()) == 13 and doc.checkpoint_steps()[-1] == 1740
    assert S.slice_overlay(False, None, None) == yaml.safe_load(
        (ROOT / "configs" / "paper_slice.yaml").read_text()
    )


def test_projection_scales_the_measured_figures():
    record = {
        "step": {
            "eager/4": {"k": 4, "mode": "eager", "model_steps_per_s": 50.0},
            "eager/16": {"k": 16, "mode": "eager", "model_steps_per_s": 100.0},
            "graph/16": {"k": 16, "mode": "graph", "model_steps_per_s": 200.0},
            "fast/64": "failed: OutOfMemoryError",
        },
        "slice": {"eval_s_per_run_ckpt": 0.5, "ckpt_s_per_run_ckpt": 0.1, "fixed_s": 60.0},
        "eval_batched": {"speedup": 2.0},
    }
    counts = {"runs": 100, "steps": 20000, "checkpoints": 60}
    proj = S.projection(record, counts)
    assert proj["eager"]["k"] == 16 and proj["eager"]["train_s"] == 20000.0
    assert proj["eager"]["eval_and_checkpoints_s"] == pytest.approx(3600.0)
    assert proj["graph"]["total_s"] == pytest.approx(10000 + 3600 + 60)
    assert not proj["graph"]["meets_goal"] and "fast" not in proj
    assert proj["batched_eval"]["eval_and_checkpoints_s"] == pytest.approx(100 * 60 * 0.35)
