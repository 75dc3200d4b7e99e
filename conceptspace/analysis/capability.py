"""Hidden capabilities: capability curves under each elicitation method and their emergence.

docs/method.md §6. The input is the tidy table of the ``intervene`` stage, one row per (run,
seed, step, method, setting, class): ``p_<concept>...`` (mean P(value 1)), ``acc_<concept>...``
(per-image accuracy), ``joint_acc`` and ``count``; ``setting`` is a number (the strength of the
method: k, s or the guidance weight w; 0 for naive prompting).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from conceptspace.analysis.curves import _first_sustained_index, _seed_mean, smooth

NAIVE = "naive"


# --------------------------------------------------------------------------------------------
# Hidden capabilities: capability curves and emergence
# --------------------------------------------------------------------------------------------


def capability_curves(interv: pd.DataFrame, *, value: str = "joint_acc") -> pd.DataFrame:
    """Capability(t) = max over settings of a method's accuracy (docs/method.md §6).

    One row per (run, seed, step, method, class) with the best setting's ``value`` (default
    ``joint_acc``). ``naive`` has a single setting and so passes through unchanged. Ties go to
    the setting that sorts first. Output columns: ``run, seed, step, method, class, capability,
    best_setting, n_settings``.
    """
    keys = ["run", "seed", "step", "method", "class"]
    df = interv.dropna(subset=[value]).sort_values(keys + ["setting"], kind="stable")
    best = df.loc[df.groupby(keys, sort=True)[value].idxmax(), keys + ["setting", value]]
    best = best.rename(columns={value: "capability", "setting": "best_setting"})
    n = df.groupby(keys, sort=True)["setting"].nunique().rename("n_settings").reset_index()
    out = best.merge(n, on=keys).sort_values(keys, ignore_index=True)
    return out[keys + ["capability", "best_setting", "n_settings"]]


def emergence(
    interv: pd.DataFrame,
    thresholds: Sequence[float] = (0.8, 0.9),
    *,
    sigma: float = 1.0,
    k: int = 2,
    aggregate_seeds: bool = False,
    value: str = "joint_acc",
) -> pd.DataFrame:
    """Emergence step of every capability curve and its lead over naive prompting (§6).

    Capability curves (:func:`capability_curves`, optionally averaged over seeds) are smoothed
    with ``sigma`` checkpoints; the emergence step is the first sustained (``k`` checkpoints)
    crossing of each threshold, or the budget (last step) with ``censored=True``.

    The lead over naive prompting of the same (run[, seed], class) is ``lead_steps = naive_step
    − emergence_step`` and ``lead_checkpoints`` = the number of checkpoints between the two
    crossings. If naive prompting is censored its step counts as the budget and the lead is a
    lower bound (``lead_is_lower_bound``). If the method itself is censored, or the naive curve
    is missing, the lead is NaN. Naive rows have lead 0.

    Output columns: ``run, seed | n_seeds, class, method, threshold, emergence_step, censored,
    naive_step, naive_censored, lead_steps, lead_checkpoints, lead_is_lower_bound, budget``.
    """
    cap = capability_curves(interv, value=value)
    id_cols = ["run", "seed"]
    if aggregate_seeds:
        cap = _seed_mean(cap, ["run", "class", "method", "step"], "capability")
        id_cols = ["run", "n_seeds"]
    group_keys = ["run", "class"] if aggregate_seeds else ["run", "seed", "class"]

    rows = []
    for key, g in cap.groupby(group_keys, sort=True):
        ident = dict(zip(group_keys, key, strict=True))
        grid = np.sort(g["step"].unique())
        crossings = {}  # (method, threshold) -> (index into grid, censored)
        for method, m in g.groupby("method", sort=True):
            m = m.sort_values("step")
            steps = m["step"].to_numpy()
            curve = smooth(m["capability"].to_numpy(), sigma)
            for thr in thresholds:
                i = _first_sustained_index(curve, thr, k)
                step = steps[-1] if i is None else steps[i]
                crossings[method, thr] = (int(np.searchsorted(grid, step)), i is None)
        n_seeds = int(g["n_seeds"].max()) if aggregate_seeds else None
        for (method, thr), (i, cens) in crossings.items():
            row = {**ident, "method": method, "threshold": float(thr)}
            if aggregate_seeds:
                row["n_seeds"] = n_seeds
            row.update(emergence_step=float(grid[i]), censored=cens, budget=float(grid[-1]))
            naive = crossings.get((NAIVE, thr))
            row.update(
                naive_step=np.nan,
                naive_censored=None,
                lead_steps=np.nan,
                lead_checkpoints=np.nan,
                lead_is_lower_bound=False,
            )
            if naive is not None:
                j, naive_cens = naive
                row.update(naive_step=float(grid[j]), naive_censored=naive_cens)
                if not cens:
                    row.update(
                        lead_steps=float(grid[j] - grid[i]),
                        lead_checkpoints=float(j - i),
                        lead_is_lower_bound=bool(naive_cens),
                    )
            rows.append(row)
    cols = id_cols + ["class", "method", "threshold", "emergence_step", "censored"]
    cols += ["naive_step", "naive_censored", "lead_steps", "lead_checkpoints"]
    cols += ["lead_is_lower_bound", "budget"]
    return pd.DataFrame(rows, columns=cols)
