"""Masked-prompt sweeps (docs/method.md §7.6): realized fractions from cards, the learning-time
table against p, and the analyze stage's run info."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import conceptspace.analysis.underspecification as U


def test_mask_fraction_from_card():
    assert U.mask_fraction({}) == 0.0
    assert U.mask_fraction({"mask": None}) == 0.0
    card = {"mask": {"class": "red_small", "concept": "color", "requested": 0.5}}
    card["mask"] |= {"n_masked": 7, "n_class": 20, "fraction": 0.35}
    assert U.mask_fraction(card) == 0.35


def _lt_summary(times: dict[str, float], censored=()):
    rows = []
    for run, t in times.items():
        for concept in ("color", "size"):
            rows.append(
                dict(run=run, group="held_out", concept=concept, threshold=0.8)
                | {"class": "blue_small", "held_out": True, "learning_time_mean": t}
                | {"learning_time_std": 0.0, "n_seeds": 1, "n_censored": int(run in censored)}
                | {"mean_is_lower_bound": run in censored, "budget": 5000.0}
            )
        rows.append(rows[-1] | {"group": "train", "learning_time_mean": 1.0})
    return pd.DataFrame(rows)


def test_table_and_relation_follow_the_fraction():
    info = pd.DataFrame({"run": ["p0", "p5", "p10"], U.COLUMN: [0.0, 0.5, 1.0]})
    lt = _lt_summary({"p0": 1000.0, "p5": 2000.0, "p10": 5000.0}, censored=("p10",))
    tab = U.table(lt, info)
    assert list(tab.columns) == U.COLUMNS and len(tab) == 6  # training rows left out
    assert list(tab[tab.concept == "color"][U.COLUMN]) == [0.0, 0.5, 1.0]
    rel = U.relation(tab)
    assert rel["color@0.8"]["spearman_rho"] == pytest.approx(1.0)
    assert rel["color@0.8"]["n_censored"] == 1
    assert U.applies(info) and not U.applies(info.assign(**{U.COLUMN: 0.25}))


def _write_run(root, run, seed, mask):
    import os

    d = {k: root / k / run / f"seed{seed}" for k in ("synthesize", "train", "probe", "intervene")}
    for p in d.values():
        os.makedirs(p, exist_ok=True)
    card = {"grid": {}, "class_names": [], "separations": {"color": 0.4}}
    card |= {"concept_signal": {"color": 0.01}, "mask": mask}
    (d["synthesize"] / "card.json").write_text(json.dumps(card))
    (d["probe"] / "probe.csv").write_text(f"run,step,p1,acc\n{run},1,0.5,0.5\n")
    (d["intervene"] / "intervene.csv").write_text(f"run,step,method,joint_acc\n{run},1,naive,0\n")
    (d["intervene"] / "embeddings.csv").write_text("pair,cosine\na|b,1\n")
    (d["train"] / "log").mkdir()
    (d["train"] / "log" / "checkpoints.csv").write_text("step,val_loss\n1,1\n")


def test_gather_adds_the_realized_fraction_mean_over_seeds(tmp_path):
    from conceptspace.table_files import gather

    masks = {
        ("m0", 0): None,
        ("m0", 1): None,
        ("m5", 0): {"class": "red_small", "concept": "color", "fraction": 0.5},
        ("m5", 1): {"class": "red_small", "concept": "color", "fraction": 0.45},
    }
    for (run, seed), mask in masks.items():
        _write_run(tmp_path, run, seed, mask)
    params = SimpleNamespace(run_ids=["m0", "m5"], seeds=[0, 1])
    args = SimpleNamespace(
        **{k: str(tmp_path / k) for k in ("synthesize", "train", "probe", "intervene")}
    )
    info = gather(params, args)["run_info"].set_index("run")
    assert info.loc["m0", U.COLUMN] == 0.0
    assert info.loc["m5", U.COLUMN] == pytest.approx(0.475)
    assert np.isclose(info.loc["m5", "sep_color"], 0.4)
