"""benchmarks/bench_leads.py: the checkpoints it adds past the budget and its simulated
evaluation designs."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_leads as B  # noqa: E402

from conceptspace.sections import checkpoint_steps  # noqa: E402


def _params(first=200, steps=6500, count=24):
    checkpoints = SimpleNamespace(first=first, count=count)
    return SimpleNamespace(train=SimpleNamespace(steps=steps, checkpoints=checkpoints))


def test_extra_checkpoints_continue_the_square_root_spacing_to_the_new_budget():
    params = _params()
    extra = B.extra_steps(params, 9000)
    assert extra == [6974, 7465, 7973, 8497, 9000]
    sched = checkpoint_steps(200, 6500, 24)
    spacing = (np.sqrt(6500) - np.sqrt(200)) / 23
    gaps = np.diff(np.sqrt([sched[-1], *extra[:-1]]))
    assert np.allclose(gaps, spacing, atol=0.02)  # the schedule's spacing in √step, continued
    assert B.extra_steps(params, 6600) == [6600]  # short of the next one: only the new end


def _table(truth: dict[tuple[str, float], float], steps=(100, 200)) -> pd.DataFrame:
    rows = [
        {"run": "c020", "seed": 0, "step": s, "method": m, "setting": d, "class": "blue_small",
         "joint_acc": p, "count": 64}
        for s in steps
        for (m, d), p in truth.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def test_every_dose_is_redrawn_with_the_design_s_images():
    truth = {("naive", 0.0): 0.5, ("linear", 0.5): 0.25, ("linear", 1.0): 1.0}
    t = B.simulate(_table(truth), (None, 128), np.random.default_rng(0))
    assert len(t) == 6 and (t["count"] == 128).all()
    assert np.allclose(t["joint_acc"] * 128, np.round(t["joint_acc"] * 128))
    assert (t.loc[t["setting"] == 1.0, "joint_acc"] == 1.0).all()  # a sure curve stays sure


def test_choose_then_confirm_keeps_the_naive_prompt_and_one_dose_per_method():
    truth = {
        ("naive", 0.0): 0.5,
        ("overprompt", 0.5): 0.0,
        ("overprompt", 1.0): 1.0,
        ("linear", 0.5): 1.0,
        ("linear", 1.0): 0.0,
    }
    t = B.simulate(_table(truth), (32, 256), np.random.default_rng(0))
    assert sorted(t["method"]) == ["linear", "linear", "naive", "naive", "overprompt", "overprompt"]
    assert (t["count"] == 256).all()
    chosen = t[t["method"] != "naive"].set_index("method")["setting"]
    assert (chosen["overprompt"] == 1.0).all() and (chosen["linear"] == 0.5).all()
    assert (t.loc[t["method"] != "naive", "joint_acc"] == 1.0).all()
