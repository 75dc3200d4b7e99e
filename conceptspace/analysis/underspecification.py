"""Underspecified prompts: held-out learning against the masked fraction (docs/method.md §7.6).

A run may mask one concept in a fraction p of one training class's prompts (``runs.<id>.mask``;
the synthesize card records the realized fraction, ``mask.fraction``). When a sweep holds more
than one distinct fraction, :func:`table` lines up the held-out classes' learning times (per
concept, pooled over held-out classes, mean over seeds) against p and :func:`relation` gives
their rank correlation with p (a censored time counts as later than any measured one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

COLUMN = "mask_fraction"
COLUMNS = [
    "run",
    COLUMN,
    "concept",
    "threshold",
    "learning_time_mean",
    "learning_time_std",
    "n_censored",
    "mean_is_lower_bound",
    "budget",
]


def mask_fraction(card: dict) -> float:
    """Realized masked fraction of a synthesize card: ``mask.fraction``, 0 when null/absent."""
    mask = card.get("mask")
    if mask is None:
        return 0.0
    return float(mask["fraction"])


def applies(run_info: pd.DataFrame) -> bool:
    """More than one distinct masked fraction in the sweep."""
    return COLUMN in run_info and run_info[COLUMN].round(9).nunique() > 1


def table(lt_summary: pd.DataFrame, run_info: pd.DataFrame) -> pd.DataFrame:
    """Held-out learning times (group ``held_out`` of ``summarize_over_seeds``) with each run's
    masked fraction, sorted by fraction: the columns of :data:`COLUMNS`."""
    held = lt_summary[lt_summary["group"] == "held_out"]
    frac = run_info.drop_duplicates("run").set_index("run")[COLUMN]
    out = held.assign(**{COLUMN: held["run"].map(frac)}).dropna(subset=[COLUMN])
    return out.sort_values([COLUMN, "concept", "threshold", "run"])[COLUMNS].reset_index(drop=True)


def relation(tab: pd.DataFrame) -> dict:
    """``{"<concept>@<threshold>": {n, n_censored, spearman_rho, spearman_p}}``: does learning
    get later as more prompts are masked (rho > 0)? NaN with fewer than 3 points."""
    out = {}
    for (concept, thr), g in tab.groupby(["concept", "threshold"], sort=True):
        x = g[COLUMN].to_numpy(float)
        cens = g["mean_is_lower_bound"].to_numpy(bool)
        y = np.where(cens, np.inf, g["learning_time_mean"].to_numpy(float))
        rho = p = float("nan")
        if x.size >= 3 and np.unique(x).size > 1 and np.unique(y).size > 1:
            res = stats.spearmanr(x, y)
            rho, p = float(res.statistic), float(res.pvalue)
        out[f"{concept}@{thr:g}"] = {
            "n": int(x.size),
            "n_censored": int(cens.sum()),
            "spearman_rho": rho,
            "spearman_p": p,
        }
    return out
