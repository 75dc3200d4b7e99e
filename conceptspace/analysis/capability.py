"""Hidden capabilities: capability curves under each elicitation method and their emergence.

docs/method.md §6. The input is the tidy table of the ``intervene`` stage, one row per (run,
seed, step, method, setting, class): ``p_<concept>...`` (mean P(value 1)), ``acc_<concept>...``
(per-image accuracy), ``joint_acc`` and ``count`` (images); ``setting`` is a number: the dose of
the method (linear: multiple of the concept's embedding difference; overprompt: fraction of the
way to the edge of the concept's range), the guidance weight w, or 0 for naive prompting.

The rules (the text for docs/method.md §6):

* **Capability** of a method at a checkpoint is its best dose: the largest ``joint_acc`` over
  its m doses (ties to the dose that sorts first). Its interval is the Wilson score interval of
  that dose's ``joint_acc · count`` successes in ``count`` images at confidence
  ``1 − α/m`` (Bonferroni, α = 0.05): picking the best of m doses is paid for, so the lower
  bound of the best dose is a lower bound on the best true accuracy with probability ≥ 1 − α
  at that checkpoint. Naive prompting (one dose) gets the plain 95% interval.
* **Emergence and lead, read with the intervals.** A method has *surely* reached the threshold
  from the first checkpoint at which its lower bound is ≥ the threshold at ``k`` consecutive
  checkpoints (``emergence_step``); naive prompting has *possibly* reached it from the first
  checkpoint at which its *upper* bound is ≥ the threshold at ``k`` consecutive checkpoints
  (``naive_step``). The lead is ``naive_step − emergence_step``: the elicited curve is above
  the threshold beyond its noise before naive prompting is within its noise of it, so a
  positive lead is never an artefact of binomial noise on either curve (conservative: it
  understates the true lead). Bounds are read unsmoothed (smoothing would make the intervals
  wrong). The other end of the lead's interval (``lead_high_steps``) swaps the bounds: naive
  prompting's lower-bound crossing minus the method's upper-bound crossing, the largest lead
  the two curves' intervals allow; ``[lead_steps, lead_high_steps]`` is the lead's interval.
* **Censoring.** A method whose lower bound never stays above the threshold is censored: no
  emergence step and no lead. When naive prompting's upper bound never stays above it,
  ``naive_step`` is the budget (last checkpoint) and the lead ``budget − emergence_step`` is a
  lower bound (``lead_is_lower_bound``): the lead is at least that, measured at the budget's
  end rather than inside it.
* **Point estimates** beside them (``point_step``, ``point_lead_steps``): the first sustained
  crossing of the Gaussian-smoothed capability curve (``sigma`` checkpoints), as before the
  intervals; for figures and comparison only, never for a verdict.
* **Across seeds** (:func:`summarize_leads`): leads are read per seed and then summarized (the
  median over the seeds that have one, flagged a lower bound when a censored lead could raise
  it; min and max), never read on seed-averaged curves, where averaging two sharp rises at
  different steps makes one slow rise that may reach the threshold nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from conceptspace.analysis.censored import median_with_bounds
from conceptspace.analysis.curves import _first_sustained_index, smooth

NAIVE = "naive"
#: family-wise error rate of a capability interval (docs/method.md §6)
ALPHA = 0.05


# --------------------------------------------------------------------------------------------
# binomial intervals
# --------------------------------------------------------------------------------------------


def wilson_interval(successes, n, confidence=0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``successes`` out of ``n`` (arrays broadcast; ``confidence`` a
    scalar or an array). The same numbers as
    ``scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")``, vectorized:
    binomtest takes one count at a time, and this runs over every row of the capability and
    dose-response tables, each with its own confidence. ``n == 0`` gives ``(0, 1)``."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    z = stats.norm.ppf(1 - (1 - np.asarray(confidence, dtype=float)) / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), 0.0)
    hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), 1.0)
    # exact ends: k = 0 has lower bound 0, k = n upper bound 1 (rounding aside)
    lo = np.where(k <= 0, 0.0, lo)
    hi = np.where((n > 0) & (k >= n), 1.0, hi)
    return lo, hi


def with_interval(
    df: pd.DataFrame, value: str, *, n_tests=1, alpha: float = ALPHA, prefix: str = ""
) -> pd.DataFrame:
    """``df`` with ``<prefix>lower, <prefix>upper``: the Wilson interval of the share ``value``
    of ``count`` images at confidence ``1 − alpha / n_tests`` (a column name or a number)."""
    m = df[n_tests].to_numpy(float) if isinstance(n_tests, str) else float(n_tests)
    count = df["count"].to_numpy(float)
    k = np.round(df[value].to_numpy(float) * count)
    lo, hi = wilson_interval(k, count, 1 - alpha / m)
    return df.assign(**{f"{prefix}lower": lo, f"{prefix}upper": hi})


# --------------------------------------------------------------------------------------------
# capability curves
# --------------------------------------------------------------------------------------------


def capability_curves(
    interv: pd.DataFrame, *, value: str = "joint_acc", alpha: float = ALPHA
) -> pd.DataFrame:
    """Capability(t) = a method's best dose at each checkpoint, with its Bonferroni interval
    (module docstring; docs/method.md §6).

    One row per (run, seed, step, method, class). Output columns: ``run, seed, step, method,
    class, capability, best_setting, n_settings, count, lower, upper, confidence``
    (``confidence`` = 1 − alpha / n_settings, the level of ``lower``/``upper``).
    """
    keys = ["run", "seed", "step", "method", "class"]
    df = interv.dropna(subset=[value]).sort_values(keys + ["setting"], kind="stable")
    if "count" not in df:
        raise ValueError("the intervention table needs a 'count' column (images per prompt)")
    best = df.loc[df.groupby(keys, sort=True)[value].idxmax(), keys + ["setting", value, "count"]]
    best = best.rename(columns={value: "capability", "setting": "best_setting"})
    n = df.groupby(keys, sort=True)["setting"].nunique().rename("n_settings").reset_index()
    out = best.merge(n, on=keys).sort_values(keys, ignore_index=True)
    out["count"] = out["count"].astype(int)
    out = with_interval(out, "capability", n_tests="n_settings", alpha=alpha)
    out["confidence"] = 1 - alpha / out["n_settings"]
    cols = ["capability", "best_setting", "n_settings", "count", "lower", "upper", "confidence"]
    return out[keys + cols]


def dose_response(interv: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Per-concept accuracy against dose, long: one row per (run, seed, step, method, class,
    setting, concept) with ``acc, count, lower, upper`` (95% Wilson, one dose at a time);
    ``concept`` is each ``acc_<concept>`` column and ``joint``."""
    keys = ["run", "seed", "step", "method", "class", "setting"]
    concepts = [c.removeprefix("acc_") for c in interv.columns if c.startswith("acc_")]
    cols = {f"acc_{c}": c for c in concepts} | {"joint_acc": "joint"}
    long = interv.melt(
        id_vars=keys + ["count"], value_vars=list(cols), var_name="concept", value_name="acc"
    )
    long["concept"] = long["concept"].map(cols)
    long = long.dropna(subset=["acc"])
    long = with_interval(long, "acc", alpha=alpha)
    return long.sort_values(keys + ["concept"], kind="stable", ignore_index=True)[
        keys + ["concept", "acc", "count", "lower", "upper"]
    ]


# --------------------------------------------------------------------------------------------
# emergence with intervals, per seed
# --------------------------------------------------------------------------------------------


def _first(values: np.ndarray, threshold: float, k: int) -> tuple[int, bool]:
    """(index of the first sustained crossing, censored): the last index when censored."""
    i = _first_sustained_index(values, threshold, k)
    return (len(values) - 1, True) if i is None else (i, False)


EMERGENCE_COLUMNS = [
    "run",
    "seed",
    "class",
    "method",
    "threshold",
    "emergence_step",
    "censored",
    "naive_step",
    "naive_censored",
    "lead_steps",
    "lead_checkpoints",
    "lead_is_lower_bound",
    "budget",
    "n_settings",
    "lead_high_steps",
    "lead_high_is_lower_bound",
    "point_step",
    "point_censored",
    "point_lead_steps",
]


def emergence(
    interv: pd.DataFrame,
    thresholds: Sequence[float] = (0.8, 0.9),
    *,
    sigma: float = 1.0,
    k: int = 2,
    value: str = "joint_acc",
    alpha: float = ALPHA,
    since: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Emergence step of every capability curve and its lead over naive prompting, per seed,
    read with the intervals (module docstring).

    ``since``: ``run, seed, step``, the first checkpoint of each run and seed from which the
    curves are read (:func:`readable_from`); earlier checkpoints sample noisy blobs that the
    classifier may read as any class, the held-out one included. None: from the first.

    ``k``: consecutive checkpoints a bound must stay at or above the threshold;
    ``sigma``: smoothing (checkpoints) of the point estimates only. Output columns:
    :data:`EMERGENCE_COLUMNS`. ``emergence_step`` is NaN when ``censored``; ``naive_step`` is
    the naive curve's upper-bound crossing (the budget when ``naive_censored``); ``lead_steps``
    is NaN when the method is censored or there is no naive curve; naive rows have lead 0.
    """
    cap = capability_curves(interv, value=value, alpha=alpha)
    if since is not None:
        start = since.set_index(["run", "seed"])["step"]
        first = pd.MultiIndex.from_frame(cap[["run", "seed"]]).map(start.to_dict().get)
        cap = cap[cap["step"].to_numpy() >= np.asarray(first, dtype=float)]
    group_keys = ["run", "seed", "class"]
    rows = []
    for key, g in cap.groupby(group_keys, sort=True):
        ident = dict(zip(group_keys, key, strict=True))
        grid = np.sort(g["step"].unique())
        budget = float(grid[-1])
        curves = {}
        for method, m in g.groupby("method", sort=True):
            m = m.sort_values("step")
            idx = np.searchsorted(grid, m["step"].to_numpy())
            curves[method] = (
                idx,
                m["lower"].to_numpy(),
                m["upper"].to_numpy(),
                smooth(m["capability"].to_numpy(), sigma),
                int(m["n_settings"].max()),
            )
        for thr in thresholds:
            naive = curves.get(NAIVE)
            n_i = n_cens = p_n = p_n_cens = h_n = h_n_cens = None
            if naive is not None:
                n_i, n_cens = _first(naive[2], thr, k)
                h_n, h_n_cens = _first(naive[1], thr, k)
                p_n, p_n_cens = _first(naive[3], thr, k)
                n_i, h_n, p_n = naive[0][n_i], naive[0][h_n], naive[0][p_n]
            for method, (idx, lower, upper, point, n_set) in curves.items():
                i, cens = _first(lower, thr, k)
                h_i, h_cens = _first(upper, thr, k)
                p_i, p_cens = _first(point, thr, k)
                row = {
                    **ident,
                    "method": method,
                    "threshold": float(thr),
                    "emergence_step": np.nan if cens else float(grid[idx[i]]),
                    "censored": cens,
                    "naive_step": np.nan if n_i is None else float(grid[n_i]),
                    "naive_censored": None if n_i is None else bool(n_cens),
                    "lead_steps": np.nan,
                    "lead_checkpoints": np.nan,
                    "lead_is_lower_bound": False,
                    "budget": budget,
                    "n_settings": n_set,
                    "lead_high_steps": np.nan,
                    "lead_high_is_lower_bound": False,
                    "point_step": float(grid[idx[p_i]]),
                    "point_censored": p_cens,
                    "point_lead_steps": np.nan,
                }
                if method == NAIVE:
                    row.update(lead_steps=0.0, lead_checkpoints=0.0, lead_high_steps=0.0)
                elif n_i is not None and not cens:
                    row.update(
                        lead_steps=float(grid[n_i] - grid[idx[i]]),
                        lead_checkpoints=float(n_i - idx[i]),
                        lead_is_lower_bound=bool(n_cens),
                    )
                if method != NAIVE and h_n is not None and not h_cens:
                    row.update(
                        lead_high_steps=float(grid[h_n] - grid[idx[h_i]]),
                        lead_high_is_lower_bound=bool(h_n_cens),
                    )
                if method != NAIVE and p_n is not None and not p_cens and not p_n_cens:
                    row["point_lead_steps"] = float(grid[p_n] - grid[idx[p_i]])
                rows.append(row)
    out = pd.DataFrame(rows, columns=EMERGENCE_COLUMNS)
    return out.sort_values(
        ["run", "seed", "class", "threshold", "method"], kind="stable", ignore_index=True
    )


def readable_from(train_acc: pd.DataFrame, ready_acc: float, sigma: float) -> pd.DataFrame:
    """``run, seed, step``: the first checkpoint of each run and seed at which its training
    classes are recognisable (mean per-image accuracy ``train_acc`` smoothed with ``sigma``
    checkpoints ``>= ready_acc``, as memorization is read: docs/method.md §5.5, §6.2); the
    last checkpoint where they never are (no lead can be read then)."""
    rows = []
    for (run, seed), g in train_acc.sort_values("step").groupby(["run", "seed"], sort=True):
        steps = g["step"].to_numpy()
        ok = np.flatnonzero(smooth(g["acc"].to_numpy(dtype=float), sigma) >= ready_acc)
        rows.append({"run": run, "seed": seed, "step": steps[ok[0] if ok.size else -1]})
    return pd.DataFrame(rows, columns=["run", "seed", "step"])


def summarize_leads(em: pd.DataFrame) -> pd.DataFrame:
    """Leads read per seed, summarized over seeds (module docstring): one row per (run, class,
    method, threshold) with ``n_seeds, n_reached`` (seeds whose lower bound reached the
    threshold), ``n_leads`` (seeds with a lead), ``lead_median, lead_median_is_lower_bound,
    lead_min, lead_max, n_lead_lower_bound, emergence_median``, ``lead_high_median,
    lead_high_median_is_lower_bound`` (the median of the other end of the seeds' lead
    intervals, over the same seeds) and ``per_seed`` (seed -> ``{lead, lead_is_lower_bound,
    lead_high}``, None where censored)."""
    rows = []
    for (run, cls, method, thr), g in em.groupby(
        ["run", "class", "method", "threshold"], sort=True
    ):
        g = g.sort_values("seed")
        have = g[g["lead_steps"].notna()]
        med, lb = median_with_bounds(have["lead_steps"], have["lead_is_lower_bound"].astype(bool))
        high, high_lb = median_with_bounds(
            have["lead_high_steps"], have["lead_high_is_lower_bound"].astype(bool)
        )
        reached = g[~g["censored"].astype(bool)]
        rows.append(
            {
                "run": run,
                "class": cls,
                "method": method,
                "threshold": float(thr),
                "n_seeds": int(g["seed"].nunique()),
                "n_reached": int(len(reached)),
                "n_leads": int(len(have)),
                "lead_median": med,
                "lead_median_is_lower_bound": lb,
                "lead_min": float(have["lead_steps"].min()) if len(have) else np.nan,
                "lead_max": float(have["lead_steps"].max()) if len(have) else np.nan,
                "n_lead_lower_bound": int(have["lead_is_lower_bound"].astype(bool).sum()),
                "emergence_median": float(reached["emergence_step"].median())
                if len(reached)
                else np.nan,
                "lead_high_median": high,
                "lead_high_median_is_lower_bound": high_lb,
                "per_seed": {
                    int(r.seed): None
                    if pd.isna(r.lead_steps)
                    else {
                        "lead": float(r.lead_steps),
                        "lead_is_lower_bound": bool(r.lead_is_lower_bound),
                        "lead_high": float(r.lead_high_steps),
                    }
                    for r in g.itertuples()
                },
            }
        )
    return pd.DataFrame(rows)
