"""Classifier-free guidance across training (docs/method.md §7.3).

The intervene stage regenerates the held-out classes at every checkpoint with guidance
weights ``w`` (rows ``method == "guidance"``, ``setting == w``). From those rows:

* :func:`trajectories`: the concept-space trajectory of each (run, class, w), seed-averaged
  and smoothed along the checkpoint index like :func:`analysis.trajectories`;
* :func:`learning_times`: per (run, class, w) the learning time of every concept and of the
  class as a whole (``concept == "all"``: every concept above threshold,
  :func:`analysis.joint_learning_time`), censored at the budget when never reached.

Both return empty frames (with their columns) when the table has no guidance rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import conceptspace.analysis.curves as CV

METHOD = "guidance"
ALL = "all"
LT_COLUMNS = ["run", "class", "w", "concept", "threshold", "learning_time", "censored", "budget"]


def _concepts(interv: pd.DataFrame) -> list[str]:
    return [c.removeprefix("acc_") for c in interv.columns if c.startswith("acc_")]


def guidance_rows(interv: pd.DataFrame) -> pd.DataFrame:
    """The guidance rows of an intervention table, their setting as a float column ``w``."""
    rows = interv[interv["method"] == METHOD].copy()
    rows["w"] = rows["setting"].astype(float)
    return rows


def trajectories(
    interv: pd.DataFrame, targets: pd.DataFrame | None = None, *, sigma: float = 2.0
) -> pd.DataFrame:
    """``run, class, w, step, <concept>...`` (+ ``target_<concept>`` merged from ``targets``,
    e.g. a trajectory frame, on run and class). Coordinates are mean P(value 1) (``p_*``)."""
    rows = guidance_rows(interv)
    concepts = _concepts(interv)
    cols = ["run", "class", "w", "step", *concepts]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    mean = rows.groupby(["run", "class", "w", "step"], as_index=False, sort=True)[
        [f"p_{c}" for c in concepts]
    ].mean()
    mean.columns = cols
    parts = []
    for _, g in mean.groupby(["run", "class", "w"], sort=True):
        g = g.sort_values("step").copy()
        g[concepts] = CV.smooth(g[concepts].to_numpy(float), sigma, axis=0)
        parts.append(g)
    out = pd.concat(parts, ignore_index=True)
    if targets is not None:
        tcols = [f"target_{c}" for c in concepts if f"target_{c}" in targets]
        t = targets.drop_duplicates(["run", "class"])[["run", "class", *tcols]]
        out = out.merge(t, on=["run", "class"], how="left")
    return out


def learning_times(
    interv: pd.DataFrame, threshold: float, *, sigma: float = 1.5, k: int = 3
) -> pd.DataFrame:
    """Learning time per (run, class, w, concept | "all") of the seed-mean accuracy curves."""
    rows = guidance_rows(interv)
    concepts = _concepts(interv)
    out = []
    if rows.empty:
        return pd.DataFrame(out, columns=LT_COLUMNS)
    acc = rows.groupby(["run", "class", "w", "step"], sort=True)[
        [f"acc_{c}" for c in concepts]
    ].mean()
    for (run, cls, w), g in acc.groupby(level=["run", "class", "w"], sort=True):
        steps = g.index.get_level_values("step").to_numpy(float)
        curves = g.to_numpy(float)
        ident = {"run": run, "class": cls, "w": float(w), "threshold": float(threshold)}
        for j, c in enumerate([*concepts, ALL]):
            cols = curves if c == ALL else curves[:, j]
            t, cens = CV.joint_learning_time(steps, cols, threshold, sigma=sigma, k=k)
            out.append({**ident, "concept": c, "learning_time": t, "censored": cens})
            out[-1]["budget"] = float(steps[-1])
    return pd.DataFrame(out, columns=LT_COLUMNS)


def summary(lt: pd.DataFrame) -> dict:
    """JSON-ready ``{run: {class: {concept: {w: {"step", "censored"}}}}}`` of the class-level
    and per-concept learning times, plus ``weights``."""
    out: dict = {"weights": sorted(float(w) for w in pd.unique(lt["w"])), "learning_times": {}}
    for r in lt.to_dict("records"):
        d = out["learning_times"].setdefault(r["run"], {}).setdefault(r["class"], {})
        d.setdefault(r["concept"], {})[f"{r['w']:g}"] = {
            "step": float(r["learning_time"]),
            "censored": bool(r["censored"]),
        }
    return out


def weights_of(interv: pd.DataFrame) -> np.ndarray:
    """Sorted distinct guidance weights in an intervention table (empty if none)."""
    return np.unique(guidance_rows(interv)["w"].to_numpy(float))
