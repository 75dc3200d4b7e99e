"""Concept distance at training convergence against learning time (docs/method.md §7.1).

For every run and held-out class (any number of concepts; the paper's case is 2x2x2):

1. *training convergence*: the first checkpoint at which every training class has smoothed
   per-image accuracy ``>= analyze.convergence_acc`` on every concept, sustained for ``k``
   checkpoints (the paper uses soft accuracy > 0.95; here the repository's per-image accuracy
   with the learning-time smoothing). If the training classes never get there, the last
   checkpoint is used and ``converged`` is False;
2. *geometric concept distance*: the Euclidean distance, in concept space, from the held-out
   class's (seed-averaged, smoothed) trajectory at that checkpoint to its target corner;
3. *class-learned time*: the first sustained checkpoint at which all the class's concepts are
   above the learning-time threshold (:func:`analysis.joint_learning_time`); censored at the
   budget when it never happens (the paper drops such classes; we keep and mark them).

:func:`relation` then asks whether a larger distance means a later learning time.
Everything is averaged over seeds first (curves, then one measurement), as in the paper.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

import conceptspace.analysis.curves as CV
import conceptspace.analysis.fits as FT
import conceptspace.analysis.trajectories as TJ

COLUMNS = [
    "run",
    "class",
    "n_novel",
    "threshold",
    "convergence_step",
    "converged",
    "distance",
    "learning_time",
    "censored",
    "budget",
]


def accuracy_curves(probe: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean per-image accuracy, wide: ``run, class, held_out, step, <concept>...``."""
    concepts = list(pd.unique(probe["concept"]))
    keys = ["run", "class", "held_out", "step"]
    wide = probe.groupby(keys + ["concept"], sort=True)["acc"].mean().unstack("concept")
    wide = wide[concepts].reset_index()
    wide.columns.name = None
    return wide


def convergence_step(
    curves: pd.DataFrame, concepts: list[str], *, accuracy: float, sigma: float, k: int
) -> tuple[float, bool]:
    """Training convergence of one run's :func:`accuracy_curves`: ``(step, converged)``."""
    train = curves[~curves["held_out"].astype(bool)]
    worst = []
    for _, g in train.groupby("class", sort=True):
        g = g.sort_values("step")
        worst.append(CV.smooth(g[concepts].to_numpy(float), sigma, axis=0).min(axis=1))
        steps = g["step"].to_numpy()
    t = CV.first_sustained_crossing(steps, np.min(worst, axis=0), accuracy, k)
    return (float(steps[-1]), False) if t is None else (float(t), True)


def distance_to_time(probe: pd.DataFrame, traj: pd.DataFrame, analyze) -> pd.DataFrame:
    """One row per (run, held-out class) with the columns of :data:`COLUMNS`.

    ``probe``: the probe table; ``traj``: seed-averaged :func:`analysis.trajectories`;
    ``analyze``: the ``analyze`` params (``convergence_acc``, ``lt_sigma``, ``persistence``,
    ``thresholds[0]``).
    ``n_novel`` counts the concepts on which the class differs from the base class.
    """
    concepts = TJ.concepts_of(traj)
    thr = float(analyze.thresholds[0])
    curves = accuracy_curves(probe)
    rows = []
    for run, c_run in curves.groupby("run", sort=False):
        conv, converged = convergence_step(
            c_run,
            concepts,
            accuracy=analyze.convergence_acc,
            sigma=analyze.lt_sigma,
            k=analyze.persistence,
        )
        t_run = traj[traj["run"] == run]
        held = c_run[c_run["held_out"].astype(bool)]
        for cls, g in held.groupby("class", sort=True):
            g = g.sort_values("step")
            steps = g["step"].to_numpy(float)
            t, cens = CV.joint_learning_time(
                steps,
                g[concepts].to_numpy(float),
                thr,
                sigma=analyze.lt_sigma,
                k=analyze.persistence,
            )
            at = t_run[(t_run["class"] == cls) & (t_run["step"] == conv)]
            xy = at[concepts].to_numpy(float)[0]
            target = at[[f"target_{c}" for c in concepts]].to_numpy(float)[0]
            rows.append(
                {
                    "run": run,
                    "class": cls,
                    "n_novel": int(target.sum()),
                    "threshold": thr,
                    "convergence_step": conv,
                    "converged": converged,
                    "distance": float(np.linalg.norm(xy - target)),
                    "learning_time": t,
                    "censored": cens,
                    "budget": float(steps[-1]),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def relation(table: pd.DataFrame) -> dict:
    """Does a larger distance at convergence mean a later learning time?

    * ``spearman_rho``/``spearman_p`` over all points, a censored time counting as later than
      every measured one (+inf; ranks only);
    * ``slope`` (steps per concept-space unit), ``intercept``, ``r2``: least squares of
      learning time on distance over the uncensored points (``n_fit`` of them).

    NaN (JSON None) where there are too few points (< 3 for the rank correlation, < 2 distinct
    distances for the line). ``positive`` is True when rho > 0 with p < 0.05.
    """
    x = table["distance"].to_numpy(float)
    y = table["learning_time"].to_numpy(float)
    cens = table["censored"].to_numpy(bool)
    rho = p = float("nan")
    y_rank = np.where(cens, np.inf, y)
    if x.size >= 3 and np.unique(y_rank).size > 1 and np.unique(x).size > 1:
        res = stats.spearmanr(x, y_rank)
        rho, p = float(res.statistic), float(res.pvalue)
    slope, intercept, r2, _ = FT.ols(x[~cens], y[~cens])
    return {
        "n": int(x.size),
        "n_censored": int(cens.sum()),
        "n_fit": int((~cens).sum()),
        "spearman_rho": rho,
        "spearman_p": p,
        "slope": slope,
        "intercept": intercept,
        "r2": r2,
        "positive": bool(np.isfinite(rho) and rho > 0 and p < 0.05),
    }
