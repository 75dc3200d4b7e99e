"""Guidance-weight analyses (docs/method.md §7.3) on intervention tables with known curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import conceptspace.analysis.guidance as G

STEPS = np.arange(100, 2001, 100)


def guidance_table(learn_at: dict[float, tuple[float, float]], seeds=(0, 1)) -> pd.DataFrame:
    """Guidance rows of one run and class: at weight w, color / size accuracy jumps to 1 at the
    given steps (inf = never); plus a naive row that must be ignored."""
    rows = []
    for seed in seeds:
        for w, (tc, ts) in learn_at.items():
            for s in STEPS:
                a_c, a_s = float(s >= tc), float(s >= ts)
                rows.append(
                    dict(run="r", seed=seed, step=int(s), method="guidance", setting=float(w))
                    | {"class": "blue_small", "p_color": a_c, "acc_color": a_c}
                    | {"p_size": a_s, "acc_size": a_s, "joint_acc": a_c * a_s, "count": 8}
                )
            rows.append(
                dict(run="r", seed=seed, step=100, method="naive", setting=0.0)
                | {"class": "blue_small", "p_color": 0, "acc_color": 0, "p_size": 0}
                | {"acc_size": 0, "joint_acc": 0, "count": 8}
            )
    return pd.DataFrame(rows)


def test_learning_times_per_weight_and_concept():
    table = guidance_table({0.0: (np.inf, 500.0), 1.0: (800.0, 500.0), 3.0: (400.0, 300.0)})
    lt = G.learning_times(table, 0.8, sigma=0.0, k=2).set_index(["w", "concept"])
    assert list(G.weights_of(table)) == [0.0, 1.0, 3.0]
    assert lt.loc[(1.0, "color"), "learning_time"] == 800.0
    assert lt.loc[(1.0, "all"), "learning_time"] == 800.0
    assert lt.loc[(3.0, "all"), "learning_time"] == 400.0
    assert lt.loc[(0.0, "size"), "learning_time"] == 500.0
    assert lt.loc[(0.0, "all"), "censored"] and lt.loc[(0.0, "all"), "learning_time"] == 2000.0
    s = G.summary(lt.reset_index())
    assert s["weights"] == [0.0, 1.0, 3.0]
    assert s["learning_times"]["r"]["blue_small"]["all"]["3"] == {"step": 400.0, "censored": False}


def test_trajectories_per_weight_are_seed_means_with_targets():
    table = guidance_table({1.0: (800.0, 500.0)})
    table.loc[table["seed"] == 1, "p_color"] = 0.5  # seed mean = (a + 0.5) / 2
    targets = pd.DataFrame({"run": ["r"], "class": ["blue_small"], "target_color": [1]})
    tr = G.trajectories(table, targets, sigma=0.0)
    assert list(tr.columns) == ["run", "class", "w", "step", "color", "size", "target_color"]
    g = tr.set_index("step")
    assert g.loc[700, "color"] == pytest.approx(0.25) and g.loc[800, "color"] == pytest.approx(0.75)
    assert g.loc[500, "size"] == 1.0 and (tr["target_color"] == 1).all()


def test_no_cfg_rows_gives_empty_frames():
    table = guidance_table({1.0: (800.0, 500.0)})
    naive = table[table["method"] == "naive"]
    assert G.learning_times(naive, 0.8).empty and G.trajectories(naive).empty
    assert list(G.learning_times(naive, 0.8).columns) == G.LT_COLUMNS
