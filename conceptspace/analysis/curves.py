"""Curves along training: smoothing, sustained threshold crossings, learning times.

docs/method.md §5.1-§5.3. Pure functions: numpy arrays and pandas tables in, numbers and tables
out; no file I/O, no plotting. The input is the tidy table of the ``probe`` stage, one row per
(run, seed, step, class, concept): ``run, seed, step, class, held_out, concept, target, p1,
acc, count``; ``p1`` is the mean over images of P(value index 1) (e.g. P(blue), P(small)),
``acc`` the share of images whose concept the probe classifier reads as the class's value.

Conventions used throughout the analysis package:

* Smoothing is along the *checkpoint index*, not along the step axis (as in the paper), with a
  Gaussian of width ``sigma`` checkpoints (``mode="nearest"``, ``truncate=6``).
* A "crossing" is *sustained*: ``k`` consecutive checkpoints at or above the threshold; the
  reported step is the first checkpoint of that run of ``k``.
* A curve that never crosses is *censored*: its time is reported as the last checkpoint step
  (the training budget) with ``censored=True``. That value is a lower bound, not a measurement.
* Seed aggregation (``aggregate_seeds=True``) averages the *curves* over seeds first and then
  measures one time; such tables have a column ``n_seeds`` instead of ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d

#: values of the ``group`` column of :func:`learning_times`
GROUP_CLASS = "class"
GROUP_HELD_OUT = "held_out"
GROUP_TRAIN = "train"


# --------------------------------------------------------------------------------------------
# Curves: smoothing and sustained threshold crossings
# --------------------------------------------------------------------------------------------


def smooth(y: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """Gaussian-smooth ``y`` along ``axis`` (the checkpoint index).

    Uses ``gaussian_filter1d(mode="nearest", truncate=6)`` as the authors' analysis does, so
    the ends are not pulled towards zero. ``sigma`` is in checkpoints; ``sigma <= 0`` returns an
    unsmoothed float copy. Input must be finite (NaNs would spread over the kernel width).
    """
    y = np.asarray(y, dtype=float)
    if sigma <= 0:
        return y.copy()
    return gaussian_filter1d(y, float(sigma), axis=axis, mode="nearest", truncate=6.0)


def _first_sustained_index(values: np.ndarray, threshold: float, k: int) -> int | None:
    """Index of the first element of the first run of ``k`` values ``>= threshold``.

    NaN never counts as above. A run shorter than ``k`` that reaches the end of the series does
    not count (as with the authors' binary erosion), so series shorter than ``k`` give None.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    above = np.asarray(values, dtype=float) >= threshold
    run = 0
    for i, is_above in enumerate(above):
        run = run + 1 if is_above else 0
        if run >= k:
            return i - k + 1
    return None


def _check_curve(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steps, values = np.asarray(steps), np.asarray(values, dtype=float)
    if steps.ndim != 1 or steps.shape != values.shape:
        raise ValueError(f"steps {steps.shape} and values {values.shape} must be equal 1-D")
    if steps.size > 1 and np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    return steps, values


def first_sustained_crossing(
    steps: np.ndarray, values: np.ndarray, threshold: float, k: int = 3
) -> int | float | None:
    """First step at which ``values`` stays ``>= threshold`` for ``k`` consecutive checkpoints.

    steps, values: shape [T], steps strictly increasing. Returns the step of the *first*
    checkpoint of that run (the authors' code returns the centre of a 3-window instead, which is
    one checkpoint later), or None if it never happens (censored).
    """
    steps, values = _check_curve(steps, values)
    i = _first_sustained_index(values, threshold, k)
    return None if i is None else steps[i].item()


def learning_time(
    steps: np.ndarray, acc: np.ndarray, threshold: float, *, sigma: float = 1.5, k: int = 3
) -> tuple[float, bool]:
    """Learning time of one accuracy curve (docs/method.md §5.3): smooth, then sustained crossing.

    steps, acc: shape [T]. Returns ``(step, censored)``. When the smoothed curve never stays
    above ``threshold`` the result is ``(steps[-1], True)``: the training budget, which is only a
    *lower bound* on the true learning time (the authors' code caps at the budget the same way).
    """
    steps, acc = _check_curve(steps, acc)
    t = first_sustained_crossing(steps, smooth(acc, sigma), threshold, k)
    if t is None:
        return float(steps[-1]), True
    return float(t), False


def joint_learning_time(
    steps: np.ndarray, acc: np.ndarray, threshold: float, *, sigma: float = 1.5, k: int = 3
) -> tuple[float, bool]:
    """When *every* concept of a class is learned: the first sustained crossing of the worst
    concept's smoothed accuracy (docs/method.md §7.1).

    steps: [T]; acc: [T, K], one accuracy curve per concept. Each column is smoothed on its own
    (as in :func:`learning_time`), then the minimum over columns must stay ``>= threshold`` for
    ``k`` checkpoints. Returns ``(step, censored)``; censored gives the budget ``steps[-1]``.
    """
    acc = np.asarray(acc, dtype=float)
    acc = acc[:, None] if acc.ndim == 1 else acc
    steps, worst = _check_curve(steps, smooth(acc, sigma, axis=0).min(axis=1))
    t = first_sustained_crossing(steps, worst, threshold, k)
    if t is None:
        return float(steps[-1]), True
    return float(t), False


# --------------------------------------------------------------------------------------------
# Learning times from the probe table
# --------------------------------------------------------------------------------------------


def _accuracy_curves(probe: pd.DataFrame) -> pd.DataFrame:
    """Per-class and pooled accuracy curves, long format.

    Returns columns ``run, seed, group, class, held_out, concept, step, acc``. Pooled groups
    (``held_out``/``train``) are the unweighted mean over their classes at each step, and their
    ``class`` is the "+"-joined sorted member class names.
    """
    keys = ["run", "seed", "class", "held_out", "concept", "step"]
    per_class = probe.groupby(keys, as_index=False, sort=True)["acc"].mean()
    per_class.insert(2, "group", GROUP_CLASS)

    members = (
        per_class.groupby(["run", "held_out"])["class"]
        .agg(lambda s: "+".join(sorted(s.unique())))
        .rename("pooled_class")
        .reset_index()
    )
    pooled = per_class.groupby(["run", "seed", "held_out", "concept", "step"], as_index=False)[
        "acc"
    ].mean()
    pooled = pooled.merge(members, on=["run", "held_out"]).rename(columns={"pooled_class": "class"})
    pooled["group"] = np.where(pooled["held_out"], GROUP_HELD_OUT, GROUP_TRAIN)
    cols = ["run", "seed", "group", "class", "held_out", "concept", "step", "acc"]
    return pd.concat([per_class[cols], pooled[cols]], ignore_index=True)


def _seed_mean(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean of ``value`` over seeds per ``keys`` (which must include ``step``), plus n_seeds."""
    out = df.groupby(keys, as_index=False, sort=True).agg(
        **{value: (value, "mean"), "n_seeds": ("seed", "nunique")}
    )
    # one n_seeds per curve (the largest count over its steps), not per step
    curve_keys = [c for c in keys if c != "step"]
    out["n_seeds"] = out.groupby(curve_keys)["n_seeds"].transform("max")
    return out


def learning_times(
    probe: pd.DataFrame,
    thresholds: Sequence[float] = (0.8, 0.9),
    *,
    sigma: float = 1.5,
    k: int = 3,
    aggregate_seeds: bool = False,
) -> pd.DataFrame:
    """Learning time of every accuracy curve in a probe table (docs/method.md §5.3).

    Curves are the per-image accuracy ``acc`` against step, for

    * ``group == "class"``: each class on its own (``class`` = the class name);
    * ``group == "held_out"`` / ``"train"``: the unweighted mean of ``acc`` over the held-out /
      training classes at each step (``class`` = the "+"-joined member names).

    With ``aggregate_seeds=False`` there is one row per (run, seed, group, class, concept,
    threshold); with ``True`` the curves are first averaged over seeds (the paper instead averages
    per-seed times: see :func:`summarize_over_seeds`) and ``seed`` is replaced by ``n_seeds``.

    Output columns: ``run, seed | n_seeds, group, class, held_out, concept, threshold,
    learning_time, censored, budget``. ``learning_time`` equals ``budget`` (the last checkpoint
    step) when ``censored`` — a lower bound.
    """
    curves = _accuracy_curves(probe)
    curve_keys = ["run", "seed", "group", "class", "held_out", "concept"]
    id_cols = ["run", "seed"]
    if aggregate_seeds:
        curve_keys.remove("seed")
        curves = _seed_mean(curves, curve_keys + ["step"], "acc")
        id_cols = ["run", "n_seeds"]

    rows = []
    for key, g in curves.groupby(curve_keys, sort=True):
        g = g.sort_values("step")
        steps, acc = g["step"].to_numpy(), g["acc"].to_numpy()
        row = dict(zip(curve_keys, key, strict=True))
        if aggregate_seeds:
            row["n_seeds"] = int(g["n_seeds"].iloc[0])
        for thr in thresholds:
            t, cens = learning_time(steps, acc, thr, sigma=sigma, k=k)
            rows.append(
                {
                    **row,
                    "threshold": float(thr),
                    "learning_time": t,
                    "censored": cens,
                    "budget": float(steps[-1]),
                }
            )
    cols = id_cols + ["group", "class", "held_out", "concept", "threshold"]
    cols += ["learning_time", "censored", "budget"]
    return pd.DataFrame(rows, columns=cols)


def summarize_over_seeds(times: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over seeds of per-seed learning times (the paper's aggregation).

    ``times``: output of ``learning_times(aggregate_seeds=False)``. Censored seeds enter at the
    budget, so any censored seed makes the mean a lower bound (``mean_is_lower_bound``).
    Output columns: ``run, group, class, held_out, concept, threshold, learning_time_mean,
    learning_time_std, n_seeds, n_censored, mean_is_lower_bound, budget``.
    """
    keys = ["run", "group", "class", "held_out", "concept", "threshold"]
    out = times.groupby(keys, as_index=False, sort=True).agg(
        learning_time_mean=("learning_time", "mean"),
        learning_time_std=("learning_time", lambda s: float(np.std(s, ddof=0))),
        n_seeds=("seed", "nunique"),
        n_censored=("censored", "sum"),
        budget=("budget", "max"),
    )
    out["n_censored"] = out["n_censored"].astype(int)
    out["mean_is_lower_bound"] = out["n_censored"] > 0
    stats_cols = ["learning_time_mean", "learning_time_std", "n_seeds", "n_censored"]
    return out[keys + stats_cols + ["mean_is_lower_bound", "budget"]]


def training_accuracy(probe: pd.DataFrame) -> pd.DataFrame:
    """Mean per-image accuracy over training classes and concepts: run, seed, step, acc."""
    train = probe[~probe["held_out"].astype(bool)]
    return train.groupby(["run", "seed", "step"], as_index=False)["acc"].mean()


def signal_table(run_info: pd.DataFrame) -> pd.DataFrame:
    """Run info reshaped long: one row per (run, concept) with columns ``run, concept, signal,
    sep``, ready to merge onto learning-time tables by ``(run, concept)``."""
    concepts = [c.removeprefix("signal_") for c in run_info.columns if c.startswith("signal_")]
    rows = []
    for _, r in run_info.iterrows():
        for c in concepts:
            sep = r.get(f"sep_{c}", np.nan)
            rows.append({"run": r["run"], "concept": c, "signal": r[f"signal_{c}"], "sep": sep})
    return pd.DataFrame(rows, columns=["run", "concept", "signal", "sep"])
