"""benchmarks/gpu_check.py: end to end at a tiny size on the CPU, and its arithmetic."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check as G  # noqa: E402


def test_tiny_check_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "check.json"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--tiny", "--device", "cpu"]
    r = subprocess.run([*cmd, "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = r.stdout
    assert re.search(r"tests/test_cuda.py: \d+ skipped", text)  # every CUDA test, skipped
    for needle in (
        "training step of a lone run",
        "probe stage",
        "runs at once",
        "K processes sharing the device",
        "one K-model ensemble",
        "projected wall time, paper's colour sweep (2 runs x 30 steps, 3 checkpoints",
        "recommended for the paper network",
        "resources: {gpu:",
        "train: {ensemble:",
    ):
        assert needle in text, needle
    record = json.loads(out.read_text())
    assert record["tiny"] and record["tests"]["ok"]
    bad = {k: v for k, v in record["cells"].items() if not isinstance(v, dict)}
    assert not bad, bad
    for k in (1, 2):
        for a in ("processes", "ensemble"):
            assert record["cells"][f"runs/paper/{a}/{k}"]["model_steps_per_s"] > 0
    proj = record["projection"]["paper"]
    assert proj["best"]["total_s"] > proj["eval_and_checkpoints_s"] > 0
    assert proj["one_run_per_process"]["k"] == 1
    assert proj["best"]["total_s"] <= proj["one_run_per_process"]["total_s"] * 1.0001
    assert "no runs-at-once measurement of the default network" in text  # tiny: paper only


def test_best_arrangement_and_profile_settings():
    ens_wins = {"processes": {1: 10.0, 4: 30.0, 16: 32.0}, "ensemble": {1: 8.0, 4: 35.0, 16: 80.0}}
    assert G.best_arrangement(ens_wins) == ("ensemble", 16)
    lines = "\n".join(G.profile_lines("ensemble", 16))
    assert "resources: {gpu: 1}" in lines and "train: {ensemble: 16}" in lines
    close = {"processes": {1: 10.0, 4: 30.0}, "ensemble": {4: 79.0, 16: 80.0}}
    assert G.best_arrangement(close) == ("ensemble", 4)  # within 5%: the smaller K
    procs_win = {"processes": {1: 10.0, 4: 50.0, 16: None}, "ensemble": {1: 8.0, 4: 35.0}}
    assert G.best_arrangement(procs_win) == ("processes", 4)
    lines = "\n".join(G.profile_lines("processes", 4))
    assert "resources: {gpu: 4}" in lines and "train: {ensemble: 1}" in lines
    with pytest.raises(ValueError):
        G.best_arrangement({"processes": {1: None}})


def test_training_time_and_projection():
    rates = {1: 10.0, 4: 40.0, 16: 80.0}
    assert G.rate_at(rates, 8) == pytest.approx(40 + 40 * 4 / 12)
    assert G.rate_at(rates, 32) == 80.0
    # 100 runs, 16 at a time: 6 full groups, then 4 runs at the K = 4 rate.
    expected = 6 * 20_000 * 16 / 80 + 20_000 * 4 / 40
    assert G.training_seconds(100, 20_000, 16, rates) == pytest.approx(expected)
    counts = {"runs": 100, "steps": 20_000, "checkpoints": 60, "fit_classifier_steps": 10_000}
    costs = {
        "checkpoint": {"eval_s": 0.1, "save_s": 0.2, "load_s": 0.05},
        "eval": {"probe": {"s_per_ckpt": 0.5}, "intervene": {"s_per_ckpt": 1.0}},
        "fit_classifier": {"s_per_step": 0.001},
    }
    table = {"processes": {1: 10.0, 4: 20.0}, "ensemble": rates}
    proj = G.project(counts, table, costs)
    common = 100 * 60 * (0.3 + 1.5 + 0.1) + 10.0
    assert proj["eval_and_checkpoints_s"] == pytest.approx(common)
    assert proj["best"]["arrangement"] == "ensemble" and proj["best"]["k"] == 16
    assert proj["best"]["total_s"] == pytest.approx(expected + common)
    assert proj["one_run_per_process"]["train_s"] == pytest.approx(100 * 20_000 / 10.0)


def test_study_overlays_merge_over_params_yaml():
    base = {"runs": {"a": 1, "b": 2}, "train": {"steps": 10, "net": {"channels": [1]}}}
    out = G.merge(base, {"runs": {"c": 3}, "train": {"net": {"channels": [2, 3]}}})
    assert out == {"runs": {"c": 3}, "train": {"steps": 10, "net": {"channels": [2, 3]}}}
    paper = G.load_study(ROOT / "configs" / "paper.yaml")
    counts = G.study_counts(paper)
    assert counts["runs"] == 100 and counts["steps"] == 20_000 and counts["checkpoints"] == 60
    assert counts["probe_images"] == 3 * 32 + 32 and counts["intervene_images"] == 10 * 64


def test_missing_packages_get_a_clear_error(tmp_path, monkeypatch):
    assert G.missing_modules(["json", "no_such_module_xyz"]) == ["no_such_module_xyz"]
    cmd = G.install_command(["pydantic"], tmp_path, tmp_path / "deps")
    assert cmd[1:4] == ["-m", "pip", "install"] and "--no-index" in cmd
    assert cmd[cmd.index("--find-links") + 1] == str(tmp_path) and cmd[-1] == "pydantic"
    monkeypatch.setattr(G, "NEEDED", {"no_such_module_xyz": "no-such-dist"})
    with pytest.raises(SystemExit, match="holds no wheels"):
        G.ensure_packages(tmp_path)


def test_a_study_of_few_runs_is_not_given_a_larger_group():
    table = {"processes": {1: 40.0, 4: 150.0, 16: 230.0}, "ensemble": {1: 20.0, 4: 70.0, 16: 255.0}}
    assert G.best_arrangement(table) == ("ensemble", 16)
    assert G.best_arrangement(table, n_runs=4) == ("processes", 4)  # 4 runs: K <= 4
    assert G.best_arrangement(table, n_runs=1) == ("processes", 1)


def test_a_saved_record_replays_to_the_same_report(tmp_path):
    """The committed H200 record (README, "One GPU, many runs") prints its table, projection
    and settings again without a device."""
    saved = ROOT / "benchmarks" / "gpu_check_h200.json"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--replay", str(saved)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "NVIDIA H200" in r.stdout and "6 passed" in r.stdout
    assert "projected wall time, paper's colour sweep (100 runs x 20,000 steps" in r.stdout
    assert "recommended for the paper network: one 16-model ensemble per process" in r.stdout
    assert "recommended for the default network: 4 processes sharing the device" in r.stdout
    # the record's numbers, recomputed: 100 runs, 16 at a time at the K = 16 rate, the last 4
    # at the K = 4 rate
    rec = json.loads(saved.read_text())
    rate = {k: rec["cells"][f"runs/paper/ensemble/{k}"]["model_steps_per_s"] for k in (4, 16)}
    train_h = (6 * 16 * 20_000 / rate[16] + 4 * 20_000 / rate[4]) / 3600
    assert f"training {int(train_h)} h {round((train_h % 1) * 60):02d} min" in r.stdout


def test_ensemble_scaling_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "scaling.json"
    cmd = [sys.executable, "benchmarks/gpu_scaling.py", "--tiny", "--device", "cpu", "--ks", "1,2"]
    r = subprocess.run([*cmd, "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    record = json.loads(out.read_text())
    for net in ("default", "paper"):
        assert set(record["rates"][net]) == {"1", "2"}
        assert all(v["model_steps_per_s"] > 0 for v in record["rates"][net].values())
    assert record["paper_training"]["k"] in (1, 2) and "paper's colour sweep" in r.stdout
