"""Distance at training convergence vs class-learned time (docs/method.md §7.1) on a synthetic
2x2x2 sweep whose answers follow from its construction."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import conceptspace.analysis.concept_distance as CD
import conceptspace.analysis.curves as CV
import conceptspace.analysis.trajectories as TJ
from conceptspace.analysis.tables import analyze_study

CONCEPTS = ("color", "size", "background")
NAMES = {"color": ("red", "blue"), "size": ("large", "small"), "background": ("light", "dark")}
STEPS = np.arange(200, 6001, 200)
TRAIN_AT = 1000.0  # training classes learn here
WIDTH = 150.0
# held-out class (bits) -> step at which all its novel concepts are learned (inf = never)
HELD_AT = {(0, 1, 1): 2000.0, (1, 0, 1): 2600.0, (1, 1, 0): 3200.0, (1, 1, 1): np.inf}


def _sig(step, at):
    return 1.0 / (1.0 + np.exp(-(step - at) / WIDTH))


def cube_sweep(runs=("r1", "r2"), seeds=(0,), shift: dict | None = None):
    """Probe, intervention tables and run info of a 2x2x2 sweep. On each concept a class's
    P(value 1) moves from 0 to its target: training classes at TRAIN_AT, held-out classes at
    HELD_AT (+ ``shift[run]``) on their novel concepts; base-valued concepts stay at 0."""
    shift = shift or {}
    probe, interv, info = [], [], []
    for run in runs:
        for seed in seeds:
            for bits in itertools.product((0, 1), repeat=3):
                held = sum(bits) > 1
                name = "_".join(NAMES[c][b] for c, b in zip(CONCEPTS, bits, strict=True))
                at = HELD_AT[bits] + shift.get(run, 0.0) if held else TRAIN_AT
                learned = _sig(STEPS, at) if np.isfinite(at) else np.zeros(STEPS.size)
                for c, b in zip(CONCEPTS, bits, strict=True):
                    p1 = learned * b
                    acc = p1 if b else 1.0 - p1
                    for s, p, a in zip(STEPS, p1, acc, strict=True):
                        probe.append(
                            {
                                "run": run,
                                "seed": seed,
                                "step": int(s),
                                "class": name,
                                "held_out": held,
                                "concept": c,
                                "target": b,
                                "p1": p,
                                "acc": a,
                                "count": 32,
                            }
                        )
                if held:
                    for s, v in zip(STEPS, learned, strict=True):
                        row = {"run": run, "seed": seed, "step": int(s), "method": "naive"}
                        row.update({"setting": 0.0, "class": name, "count": 32})
                        for c, b in zip(CONCEPTS, bits, strict=True):
                            row[f"p_{c}"] = v * b
                            row[f"acc_{c}"] = v if b else 1.0
                        row["joint_acc"] = v
                        interv.append(row)
        info.append(
            {"run": run, **{f"sep_{c}": 0.4 for c in CONCEPTS}}
            | {f"signal_{c}": 0.01 for c in CONCEPTS}
        )
    return pd.DataFrame(probe), pd.DataFrame(interv), pd.DataFrame(info)


EXACT = SimpleNamespace(
    sigma=0.0,
    lt_sigma=0.0,
    thresholds=[0.8],
    persistence=1,
    saturation_tol=0.01,
    capability_threshold=0.8,
    convergence_acc=0.95,
    ready_acc=0.75,
    turn_margin=0.25,
    emergence_sigma=1.0,
    emergence_persistence=1,
)
"""Analyze params without smoothing, so times are exact checkpoint steps."""


def _first_step_at_least(x):
    return float(STEPS[np.searchsorted(STEPS, x)])


def test_convergence_distance_and_learning_time_have_known_values():
    probe, _, _ = cube_sweep(runs=("r1",))
    traj = TJ.trajectories(probe, sigma=0.0)
    table = CD.distance_to_time(probe, traj, EXACT).set_index("class")

    # training accuracy sig(step - 1000) >= 0.95 from 1000 + 150 ln 19 = 1441.7 on
    conv = _first_step_at_least(TRAIN_AT + WIDTH * np.log(19))
    assert conv == 1600.0
    assert (table["convergence_step"] == conv).all() and table["converged"].all()
    for bits, at in HELD_AT.items():
        name = "_".join(NAMES[c][b] for c, b in zip(CONCEPTS, bits, strict=True))
        row = table.loc[name]
        n = sum(bits)
        assert row["n_novel"] == n
        # novel coordinates sit at sig(conv - at), the others at their target 0
        lag = 1.0 if not np.isfinite(at) else 1.0 - _sig(conv, at)
        assert row["distance"] == pytest.approx(np.sqrt(n) * lag, rel=1e-6)
        if np.isfinite(at):  # sig >= 0.8 from at + 150 ln 4 on
            assert row["learning_time"] == _first_step_at_least(at + WIDTH * np.log(4))
            assert not row["censored"]
        else:
            assert row["censored"] and row["learning_time"] == STEPS[-1]


def test_training_that_never_converges_uses_the_budget():
    probe, _, _ = cube_sweep(runs=("r1",))
    train = ~probe["held_out"]
    probe.loc[train & (probe["class"] == "blue_large_light"), "acc"] = 0.9  # never 0.95
    traj = TJ.trajectories(probe, sigma=0.0)
    table = CD.distance_to_time(probe, traj, EXACT)
    assert (table["convergence_step"] == STEPS[-1]).all() and not table["converged"].any()


def test_relation_is_positive_when_later_classes_are_farther():
    probe, _, _ = cube_sweep(runs=("r1", "r2"), shift={"r2": 300.0})
    traj = TJ.trajectories(probe, sigma=0.0)
    rel = CD.relation(CD.distance_to_time(probe, traj, EXACT))
    assert rel["n"] == 8 and rel["n_censored"] == 2 and rel["n_fit"] == 6
    assert rel["spearman_rho"] > 0.8 and rel["positive"]
    assert rel["slope"] > 0


def test_relation_known_line_and_too_few_points():
    t = pd.DataFrame(
        {
            "distance": [0.1, 0.2, 0.3, 0.9],
            "learning_time": [1000.0, 2000.0, 3000.0, 5000.0],
            "censored": [False, False, False, True],
        }
    )
    rel = CD.relation(t)
    assert rel["slope"] == pytest.approx(10_000.0) and rel["intercept"] == pytest.approx(0.0)
    assert rel["r2"] == pytest.approx(1.0) and rel["spearman_rho"] == pytest.approx(1.0)
    few = CD.relation(t.iloc[:2])
    assert np.isnan(few["spearman_rho"]) and not few["positive"]


def test_decreasing_relation_is_not_positive():
    t = pd.DataFrame(
        {
            "distance": [0.1, 0.2, 0.3, 0.4],
            "learning_time": [4000.0, 3000.0, 2000.0, 1000.0],
            "censored": [False] * 4,
        }
    )
    rel = CD.relation(t)
    assert rel["spearman_rho"] == pytest.approx(-1.0) and not rel["positive"]


def test_joint_learning_time_waits_for_the_worst_concept():
    steps = np.arange(1, 11) * 100
    acc = np.stack([np.where(steps >= 300, 1.0, 0.0), np.where(steps >= 700, 1.0, 0.0)], 1)
    assert CV.joint_learning_time(steps, acc, 0.8, sigma=0, k=2) == (700.0, False)
    assert CV.joint_learning_time(steps, acc[:, 0], 0.8, sigma=0, k=2) == (300.0, False)
    assert CV.joint_learning_time(steps, acc * 0.5, 0.8, sigma=0, k=1) == (1000.0, True)


def test_study_on_three_concepts_does_not_fake_two_concept_verdicts():
    probe, interv, info = cube_sweep(runs=("r1", "r2"), shift={"r2": 300.0})
    frames, metrics = analyze_study(probe, interv, info, EXACT)
    mem = metrics["phenomena_detail"]["memorization"]
    assert mem["holds"] is None and mem["applicable"] is False
    assert metrics["phenomena"]["memorization"] is None
    t = metrics["runs"]["r1"]["trajectory"]
    assert t["nearest_class"] is None and len(t["by_class"]) == 4
    # the class novel in size and background only (red) memorizes a red training class
    assert t["by_class"]["red_small_dark"]["nearest_class"].startswith("red")
    extra, m2 = frames, metrics
    assert len(extra["concept_distance"]) == 8
    assert m2["concept_distance"]["relation"]["positive"] is True
    # the ODE is fitted only to classes novel in exactly two concepts
    assert set(extra["dynamics_fit"]["class"]) == {
        "red_small_dark",
        "blue_large_dark",
        "blue_small_light",
    }
    assert {s["class"] for s in m2["dynamics_model"]["skipped"]} == {"blue_small_dark"}
    assert m2["guidance"]["applicable"] is False
    assert m2["underspecification"]["applicable"] is False
