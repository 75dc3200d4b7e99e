"""Smoke tests of the figures beyond two concepts on synthetic sweeps (files exist, PNG + PDF).

``python -m tests.test_figures_extra [outdir]`` renders them (default ``/tmp/figcheck_extra``)
for a visual check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import conceptspace.analysis.concept_distance as CD
import conceptspace.analysis.curves as CV
import conceptspace.analysis.dynamics_model as DM
import conceptspace.analysis.guidance as G
import conceptspace.analysis.trajectories as TJ
import conceptspace.analysis.underspecification as U
import conceptspace.figures.extensions as FX
from tests.test_concept_distance import EXACT, cube_sweep
from tests.test_guidance import guidance_table


def render_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    probe, _, _ = cube_sweep(runs=("r1", "r2"), shift={"r2": 300.0})
    traj = TJ.trajectories(probe, sigma=1.0)
    dist = CD.distance_to_time(probe, traj, EXACT)
    conv = dict(zip(dist["run"], dist["convergence_step"], strict=False))
    FX.cube_trajectory_figure(traj, conv, out / "trajectories_3d.png")
    FX.distance_time_figure(dist, CD.relation(dist), out / "distance_vs_learning_time.png")

    table = guidance_table({0.0: (np.inf, 500.0), 1.0: (800.0, 500.0), 3.0: (400.0, 300.0)})
    table["p_color"] = table.groupby("setting")["p_color"].transform(
        lambda s: np.clip(s * 0.9 + 0.05, 0, 1)
    )
    targets = pd.DataFrame(
        {"run": ["r"], "class": ["blue_small"], "target_color": [1], "target_size": [1]}
    )
    FX.guidance_figure(
        G.trajectories(table, targets, sigma=1.0),
        G.learning_times(table, 0.8, sigma=1.0, k=2),
        out / "guidance.png",
    )

    fits, curves, _ = DM.fit_held_out(traj[traj["run"] == "r1"], fit_c0=True)
    FX.dynamics_fit_figure(curves, fits, out / "dynamics_model_fit.png")

    frac = {"r1": 0.0, "r2": 0.5}
    lt = CV.summarize_over_seeds(CV.learning_times(probe, (0.8,), sigma=0.0, k=1))
    info = pd.DataFrame({"run": list(frac), U.COLUMN: list(frac.values())})
    FX.underspecification_figure(
        U.table(lt, info), traj, frac, out / "underspecification.png", threshold=0.8
    )
    return sorted(out.glob("*.png"))


def test_every_figure_is_written(tmp_path):
    pngs = render_all(tmp_path)
    names = {p.stem for p in pngs}
    assert names == {
        "trajectories_3d",
        "distance_vs_learning_time",
        "guidance",
        "dynamics_model_fit",
        "underspecification",
    }
    for p in pngs:
        assert p.stat().st_size > 10_000 and p.with_suffix(".pdf").exists()


def test_cube_figure_needs_three_concepts(tmp_path):
    probe, _, _ = cube_sweep(runs=("r1",))
    traj = TJ.trajectories(probe, sigma=0.0).drop(columns=["background", "target_background"])
    with pytest.raises(ValueError, match="three concepts"):
        FX.cube_trajectory_figure(traj, {}, tmp_path / "x.png")


if __name__ == "__main__":
    for p in render_all(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/figcheck_extra")):
        print(p)
