"""Verdicts across seeds, with their uncertainty.

A study with one seed gives one learning time per concept separation, and three points cannot
establish an order (the exact one-sided permutation p of a perfect order of three points is
1/6). This module pools a sweep run with several seeds. It reads nothing from disk and imports
only the statistics of :mod:`.censored`, the signal-order rule and least squares of :mod:`.fits`
and the JSON cleaner from the rest of the analysis: its input is one plain table, the *points*
table, with one row per (run, seed) of the concept under study (by default color, the concept
whose separation the paper's sweep varies; Park et al., NeurIPS 2024):

=====================  =======================================================================
column                 meaning
=====================  =======================================================================
``run``                sweep point (str)
``seed``               training seed (int)
``sep``                separation of the concept under study, e.g. Δcolor (float)
``signal``             optional: its measured concept signal (float)
``t_held_out``         learning time of the held-out class on that concept (steps); equals
                       ``budget`` when censored
``held_out_censored``  True when the held-out class never reached the threshold: the time is
                       then only a lower bound (> ``budget``)
``budget``             last checkpoint step of the run (float)
``t_train``            optional: learning time of the training classes (pooled), same convention
``train_censored``     optional, with ``t_train``
``expected_class``     optional: the training class the held-out prompt should imitate before the
                       turn (the one sharing the stronger concept; set at the weakest and the
                       strongest separation, None elsewhere)
``nearest_class``      optional: the training class it does imitate (None when not measured)
``memorized``          optional bool/None: ``nearest_class == expected_class``, None where no
                       class is expected
``turned``             optional bool/None: the trajectory turns towards its own corner
``turn_step``          optional: step of the turn (NaN when none)
``lead_steps``         optional: best lead of an elicitation method over naive prompting at the
                       capability threshold (steps; NaN when no method reaches it)
``lead_checkpoints``   optional: the same lead in checkpoints
``lead_is_lower_bound``  optional bool: naive prompting never reached the threshold, so the lead
                       is a lower bound
``lead_high_steps``    optional: the other end of that lead's interval (bounds swapped,
                       docs/method.md §6); ``lead_high_is_lower_bound`` likewise
``elicited_censored``  optional bool: no elicitation method reached the threshold
=====================  =======================================================================

:func:`points_from_study` builds this table from one study analysis per seed (``analyze_study``
on that seed's rows: its tables and its metrics dict, read as plain columns and keys).
:func:`summarize` returns ``(frames, metrics)``: tidy tables and a JSON-ready dict (no NaN, no
inf: None), identical on every call with the same input.

Censoring, ties and uncertainty (the text for the method document):

* **Per seed** each phenomenon is decided by the study's own rules: signal order = the held-out
  learning time falls strictly between consecutive separations, a censored time counting as
  later than the budget (two censored neighbours are an allowed tie), with at least 3 points
  of which 2 are measured; memorization = at every separation with an expected class the held-out
  prompt imitates it (at least two such separations), and at least one of them turns; hidden
  capability = some elicitation method is at least one checkpoint ahead of naive prompting,
  read with the binomial intervals (:mod:`conceptspace.analysis.capability`). Across
  seeds each is reported as "holds in k of n seeds" (seeds where it cannot be tested are not
  counted in n) with a Clopper-Pearson 95% interval on k/n.
* **Medians** and **signal order across seeds**: see :mod:`.censored` (medians with censored
  values and their bootstrap intervals; Somers' D with Gehan scoring and its permutation test).
* **Learning-time fit**: ordinary least squares of 1/T against the signal (or separation) on the
  measured points of all seeds (censored points left out, which biases the fit towards fast
  learners). The slope interval is a percentile bootstrap over seeds (three or more; resample
  whole seeds with replacement and refit; resamples with fewer than two distinct x are skipped
  and counted), and the OLS t-interval is given too, which treats points as independent and so
  ignores that points of one seed share a seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from conceptspace.analysis.censored import (
    MIN_BOOTSTRAP,
    bootstrap_median,
    censored_somers_d,
    within_seed_permutation_test,
)
from conceptspace.analysis.fits import is_monotone_decreasing, ols
from conceptspace.analysis.jsonready import clean

REQUIRED = ("run", "seed", "sep", "t_held_out", "held_out_censored", "budget")
"""Columns the points table must have (see the module docstring)."""

PHENOMENA = ("signal_order", "memorization", "hidden_capability")

STATEMENTS = {
    "signal_order": "the held-out learning time falls as the separation grows",
    "memorization": (
        "before turning, the held-out prompt yields the training class sharing the stronger concept"
    ),
    "hidden_capability": (
        "an elicitation method reaches the capability threshold at least one checkpoint before "
        "naive prompting"
    ),
}


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _opt_bool(v: Any) -> bool | None:
    """A nullable boolean cell: None/NaN -> None."""
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return bool(v)


def _opt_float(v: Any) -> float:
    """A nullable numeric cell as float (None -> NaN)."""
    if v is None or v is pd.NA:
        return float("nan")
    return float(v)


def _check(points: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in REQUIRED if c not in points.columns]
    if missing:
        raise ValueError(f"points table lacks columns {missing} (see across_seeds docstring)")
    if points.duplicated(["run", "seed"]).any():
        raise ValueError("points table has repeated (run, seed) rows")
    p = points.copy()
    p["held_out_censored"] = p["held_out_censored"].astype(bool)
    for col in ("sep", "t_held_out", "budget"):
        p[col] = p[col].astype(float)
    if not np.isfinite(p["sep"]).all():
        raise ValueError("every point needs a finite separation 'sep'")
    # a censored time is reported at the budget (a lower bound), never as a measurement
    p.loc[p["held_out_censored"], "t_held_out"] = p.loc[p["held_out_censored"], "budget"]
    if "t_train" in p:
        p["t_train"] = p["t_train"].astype(float)
        if "train_censored" not in p:
            p["train_censored"] = False
        p["train_censored"] = p["train_censored"].map(_opt_bool).fillna(False).astype(bool)
    return p.sort_values(["seed", "sep", "run"], kind="stable", ignore_index=True)


def signal_order_test(
    points: pd.DataFrame,
    *,
    n_perm: int = 10000,
    max_exact: int = 50000,
    random_state: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Signal order over all (separation, seed) points of a points table (module docstring).

    Returns ``d`` (Somers' D, Gehan-scored), the pair counts, ``p_value`` (one-sided, against
    "decreasing"), ``p_two_sided``, ``p_method`` ("exact" | "monte_carlo"), ``n_permutations``,
    ``spearman_rho_midranks``, ``n_points``, ``n_censored``, ``n_seeds``, ``alpha`` and
    ``holds`` (D < 0 and p <= alpha; None without two distinct separations).
    """
    p = _check(points)
    x = p["sep"].to_numpy(float)
    t = p["t_held_out"].to_numpy(float)
    c = p["held_out_censored"].to_numpy(bool)
    b = p["budget"].to_numpy(float)
    obs = censored_somers_d(x, t, c, b)
    out = {
        **obs,
        "p_value": float("nan"),
        "p_two_sided": float("nan"),
        "p_method": None,
        "n_permutations": 0,
        "spearman_rho_midranks": float("nan"),
        "n_points": int(len(p)),
        "n_censored": int(c.sum()),
        "n_seeds": int(p["seed"].nunique()),
        "alpha": alpha,
        "alternative": "decreasing",
        "holds": None,
    }
    if not obs["n_pairs"]:
        return out
    y = np.where(c, np.inf, t)  # censored last, tied among themselves (midranks)
    if np.unique(y).size > 1:
        out["spearman_rho_midranks"] = float(stats.spearmanr(x, y).statistic)
    test = within_seed_permutation_test(
        x,
        t,
        c,
        b,
        p["seed"].to_numpy(),
        n_perm=n_perm,
        max_exact=max_exact,
        rng=np.random.default_rng(random_state),
    )
    out.update(test, holds=bool(obs["d"] < 0 and test["p_value"] <= alpha))
    return out


# --------------------------------------------------------------------------------------------
# learning-time fit 1/T against signal
# --------------------------------------------------------------------------------------------


def inverse_time_fit(
    points: pd.DataFrame,
    *,
    x: str = "signal",
    n_boot: int = 2000,
    confidence: float = 0.95,
    random_state: int = 0,
) -> dict:
    """OLS of 1/T on ``x`` ("signal" or "sep") over the measured points of all seeds.

    Returns ``x, slope, intercept, r2, n, n_excluded_censored, slope_ci_bootstrap_seeds
    [lo, hi], n_boot_valid, slope_ci_t [lo, hi], df, confidence`` (see the module docstring).
    Falls back to "sep" when the table has no finite ``signal``.
    """
    p = _check(points)
    if x == "signal" and ("signal" not in p or not np.isfinite(p["signal"].astype(float)).all()):
        x = "sep"
    ok = ~p["held_out_censored"].to_numpy(bool) & (p["t_held_out"].to_numpy(float) > 0)
    xs = p[x].to_numpy(float)
    ys = 1.0 / p["t_held_out"].to_numpy(float)
    slope, intercept, r2, se = ols(xs[ok], ys[ok])
    n = int(ok.sum())
    out = {
        "x": x,
        "slope": slope,
        "intercept": intercept,
        "r2": r2,
        "n": n,
        "n_excluded_censored": int((~ok).sum()),
        "slope_ci_bootstrap_seeds": [float("nan"), float("nan")],
        "n_boot": n_boot,
        "n_boot_valid": 0,
        "slope_ci_t": [float("nan"), float("nan")],
        "df": n - 2,
        "confidence": confidence,
    }
    alpha = 1.0 - confidence
    if n > 2 and math.isfinite(se):
        q = float(stats.t.ppf(1 - alpha / 2, n - 2))
        out["slope_ci_t"] = [slope - q * se, slope + q * se]
    seeds = pd.unique(p["seed"])
    # Not scipy.stats.bootstrap, although it draws the same resamples from the same generator:
    # a resample with fewer than two distinct x has no slope and is skipped and counted here,
    # where scipy would carry its NaN into the interval, and the endpoints are order statistics
    # (as for the medians of .censored), where scipy interpolates between them.
    if len(seeds) >= MIN_BOOTSTRAP and math.isfinite(slope):  # no interval from two seeds
        by_seed = [np.flatnonzero((p["seed"] == s).to_numpy() & ok) for s in seeds]
        rng = np.random.default_rng(random_state)
        draws = rng.integers(0, len(seeds), size=(n_boot, len(seeds)))
        slopes = []
        for row in draws:
            idx = np.concatenate([by_seed[k] for k in row])
            s, *_ = ols(xs[idx], ys[idx])
            if math.isfinite(s):
                slopes.append(s)
        if slopes:
            slopes = np.sort(slopes)
            m = slopes.size
            lo = slopes[int(math.floor(alpha / 2 * (m - 1)))]
            hi = slopes[int(math.ceil((1 - alpha / 2) * (m - 1)))]
            out.update(slope_ci_bootstrap_seeds=[float(lo), float(hi)], n_boot_valid=int(m))
    return out


# --------------------------------------------------------------------------------------------
# per-seed verdicts and "holds in k of n seeds"
# --------------------------------------------------------------------------------------------


def seed_verdicts(points: pd.DataFrame) -> pd.DataFrame:
    """One row per seed: ``seed, n_points, signal_order, signal_order_reason, memorization,
    hidden_capability, best_lead_steps, best_lead_is_lower_bound`` (verdicts None where the
    seed cannot test them; the best lead is the largest over the seed's runs). Signal order is
    the study's rule, :func:`~.fits.is_monotone_decreasing`, on the seed's points."""
    p = _check(points)
    rows = []
    for seed, g in p.groupby("seed", sort=True):
        order = is_monotone_decreasing(
            g["sep"].to_numpy(float),
            g["t_held_out"].to_numpy(float),
            g["held_out_censored"].to_numpy(bool),
        )
        mem = None
        if "memorized" in g and "turned" in g:
            tested = g[g["memorized"].map(_opt_bool).notna()]
            if tested["sep"].nunique() >= 2:
                memorized = tested["memorized"].map(_opt_bool)
                turned = tested["turned"].map(_opt_bool)
                mem = bool(memorized.all() and (turned == True).any())  # noqa: E712
        hidden, best, best_lb = None, float("nan"), False
        if "lead_checkpoints" in g:
            leads = g["lead_checkpoints"].map(_opt_float)
            if "elicited_censored" in g or leads.notna().any():
                hidden = bool((leads >= 1).any())
            if "lead_steps" in g and g["lead_steps"].map(_opt_float).notna().any():
                lead = g["lead_steps"].map(_opt_float)
                best = float(lead.max())
                if "lead_is_lower_bound" in g:
                    best_lb = bool(_opt_bool(g.loc[lead.idxmax(), "lead_is_lower_bound"]))
        rows.append(
            {
                "seed": seed,
                "n_points": int(len(g)),
                "signal_order": order["monotone"],
                "signal_order_reason": order["reason"],
                "memorization": mem,
                "hidden_capability": hidden,
                "best_lead_steps": best,
                "best_lead_is_lower_bound": best_lb,
            }
        )
    cols = ["seed", "n_points", "signal_order", "signal_order_reason", "memorization"]
    cols += ["hidden_capability", "best_lead_steps", "best_lead_is_lower_bound"]
    return pd.DataFrame(rows, columns=cols)


def leads_by_imitated_class(points: pd.DataFrame) -> dict:
    """Each (run, seed)'s best lead, grouped by the training class its held-out prompt first
    imitates (``nearest_class``; ``"none"`` where it imitates none): where the prompt lacks the
    weaker concept and where it lacks the stronger one, elicitation has different work to do
    (docs/method.md §8). ``{class: {"runs", "inside", "lower_bound", "none", "leads"}}``:
    counts of the three kinds of lead, ``inside`` (measured inside the budget: naive prompting
    reached the threshold too), ``lower_bound`` (read at the budget's end) and ``none`` (no
    method's lower bound reached the threshold), and ``leads``, a list of ``{run, seed, lead,
    kind}`` (lead None for ``none``) in run and seed order. Empty without the lead columns."""
    p = _check(points)
    if "nearest_class" not in p or "lead_steps" not in p:
        return {}
    out: dict[str, dict] = {}
    for r in p.sort_values(["run", "seed"], kind="stable").itertuples(index=False):
        cls = r.nearest_class if isinstance(r.nearest_class, str) else "none"
        lead = _opt_float(r.lead_steps)
        if math.isnan(lead):
            lead, kind = None, "none"
        else:
            lower = _opt_bool(getattr(r, "lead_is_lower_bound", False))
            kind = "lower_bound" if lower else "inside"
        g = out.setdefault(cls, {"runs": 0, "inside": 0, "lower_bound": 0, "none": 0, "leads": []})
        g["runs"] += 1
        g[kind] += 1
        g["leads"].append({"run": r.run, "seed": int(r.seed), "lead": lead, "kind": kind})
    return dict(sorted(out.items()))


def k_of_n(flags, confidence: float = 0.95) -> dict:
    """How many of the testable seeds show a phenomenon: ``holds_in`` (k), ``n``, ``fraction``,
    ``ci_fraction`` (Clopper-Pearson interval on k/n) and ``holds_in_all``. ``flags``: one
    bool/None per seed; None (cannot be tested) is not counted in n."""
    vals = [bool(f) for f in flags if _opt_bool(f) is not None]
    n, k = len(vals), int(sum(vals))
    ci = [float("nan"), float("nan")]
    if n:
        r = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
        ci = [float(r.low), float(r.high)]
    return {
        "holds_in": k,
        "n": n,
        "fraction": k / n if n else float("nan"),
        "ci_fraction": ci,
        "holds_in_all": bool(n and k == n),
    }


# --------------------------------------------------------------------------------------------
# per-separation summaries and the whole report
# --------------------------------------------------------------------------------------------


def _count(s: pd.Series) -> tuple[int, int]:
    v = s.map(_opt_bool).dropna()
    return int(v.sum()), int(len(v))


def separation_table(
    points: pd.DataFrame, *, n_boot: int = 2000, confidence: float = 0.95, random_state: int = 0
) -> pd.DataFrame:
    """One row per separation: medians over seeds with bootstrap intervals and counts.

    Columns: ``sep, runs, n_seeds, budget``; for ``held_out`` (and ``train`` and ``lead`` when
    present) ``<x>_median, <x>_median_is_lower_bound, <x>_ci_low, <x>_ci_high,
    <x>_ci_low_is_lower_bound, <x>_ci_high_is_lower_bound, <x>_n, <x>_n_lower_bound`` (``lead``:
    over the seeds where an elicitation method reached the threshold; its bounds are the leads
    over a naive prompt that never got there); ``n_ahead`` (lead >= 1 checkpoint),
    ``n_memorized, n_memorization_tested, n_turned, n_turn_tested, turn_step_median``.
    """
    p = _check(points)
    rows = []
    for k, (sep, g) in enumerate(p.groupby("sep", sort=True)):
        row: dict[str, Any] = {
            "sep": float(sep),
            "runs": "+".join(sorted(map(str, pd.unique(g["run"])))),
            "n_seeds": int(g["seed"].nunique()),
            "budget": float(g["budget"].max()),
        }
        series = {"held_out": ("t_held_out", "held_out_censored")}
        if "t_train" in g:
            series["train"] = ("t_train", "train_censored")
        if "lead_steps" in g:
            series["lead"] = ("lead_steps", "lead_is_lower_bound")
        for j, (name, (val, bound)) in enumerate(series.items()):
            rng = np.random.default_rng([random_state, k, j])
            flags = g[bound] if bound in g else pd.Series(False, index=g.index)
            bounds = flags.map(_opt_bool).fillna(False).to_numpy(bool)
            bm = bootstrap_median(
                g[val].map(_opt_float), bounds, n_boot=n_boot, confidence=confidence, rng=rng
            )
            row.update({f"{name}_{key}": v for key, v in bm.items()})
        if "lead_checkpoints" in g:
            row["n_ahead"] = int((g["lead_checkpoints"].map(_opt_float) >= 1).sum())
        if "memorized" in g:
            row["n_memorized"], row["n_memorization_tested"] = _count(g["memorized"])
        if "turned" in g:
            row["n_turned"], row["n_turn_tested"] = _count(g["turned"])
        if "turn_step" in g and "turned" in g:
            turned = g["turned"].map(_opt_bool) == True  # noqa: E712
            steps = g.loc[turned, "turn_step"].map(_opt_float).dropna()
            row["turn_step_median"] = float(steps.median()) if len(steps) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(
    points: pd.DataFrame,
    *,
    concept: str = "color",
    fit_x: str = "signal",
    n_boot: int = 2000,
    n_perm: int = 10000,
    max_exact: int = 50000,
    confidence: float = 0.95,
    alpha: float = 0.05,
    random_state: int = 0,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Verdicts across seeds with their uncertainty, from a points table (module docstring).

    Returns ``(frames, metrics)``. Frames: ``points`` (the checked input, sorted by seed,
    separation), ``by_separation`` (:func:`separation_table`), ``by_seed``
    (:func:`seed_verdicts`). ``metrics`` (JSON-ready, deterministic):

    * ``concept, seeds, n_seeds, separations``;
    * ``phenomena``: for each of signal_order, memorization, hidden_capability: ``holds_in,
      n, fraction, ci_fraction, holds_in_all, seeds_holding, seeds_failing, seeds_untested,
      statement``; signal_order adds ``pooled`` = :func:`signal_order_test`;
    * ``by_separation``: the rows of that frame as records;
    * ``by_seed``: seed -> that seed's verdicts and best lead (:func:`seed_verdicts`);
    * ``fit_inverse_time``: :func:`inverse_time_fit`;
    * ``leads_by_imitated_class``: :func:`leads_by_imitated_class`;
    * ``methods``: how the bootstrap, the permutation test and censoring were done.
    """
    p = _check(points)
    by_sep = separation_table(p, n_boot=n_boot, confidence=confidence, random_state=random_state)
    by_seed = seed_verdicts(p)
    pooled = signal_order_test(
        p, n_perm=n_perm, max_exact=max_exact, random_state=random_state, alpha=alpha
    )
    phenomena = {}
    for name in PHENOMENA:
        col = by_seed[name].map(_opt_bool)
        phenomena[name] = {
            **k_of_n(col, confidence),
            "seeds_holding": by_seed.loc[col == True, "seed"].tolist(),  # noqa: E712
            "seeds_failing": by_seed.loc[col == False, "seed"].tolist(),  # noqa: E712
            "seeds_untested": by_seed.loc[col.isna(), "seed"].tolist(),
            "statement": STATEMENTS[name],
        }
    phenomena["signal_order"]["pooled"] = pooled
    metrics = {
        "concept": concept,
        "seeds": sorted(p["seed"].unique().tolist()),
        "n_seeds": int(p["seed"].nunique()),
        "separations": sorted(p["sep"].unique().tolist()),
        "phenomena": phenomena,
        "by_separation": by_sep.to_dict("records"),
        "by_seed": {
            str(r["seed"]): {k: v for k, v in r.items() if k != "seed"}
            for r in by_seed.to_dict("records")
        },
        "fit_inverse_time": inverse_time_fit(
            p, x=fit_x, n_boot=n_boot, confidence=confidence, random_state=random_state
        ),
        "leads_by_imitated_class": leads_by_imitated_class(p),
        "methods": {
            "median_interval": (
                f"percentile bootstrap of the median, seeds at each separation resampled with "
                f"replacement, {n_boot} resamples, numpy default_rng seeded {random_state}"
            ),
            "censoring": "censored times enter at the budget and flag the medians they can raise",
            "signal_order": (
                "Somers' D of learning time on separation with Gehan-scored pairs; one-sided "
                "permutation p, times permuted among separations within each seed"
            ),
            "fit_interval": "percentile bootstrap over whole seeds, and the OLS t-interval",
            "k_of_n_interval": "Clopper-Pearson",
            "confidence": confidence,
            "alpha": alpha,
        },
    }
    frames = {"points": p, "by_separation": by_sep, "by_seed": by_seed}
    return frames, clean(metrics)


# --------------------------------------------------------------------------------------------
# from the per-seed study outputs to the points table
# --------------------------------------------------------------------------------------------


def points_from_study(
    per_seed: Mapping[int, tuple[Mapping[str, pd.DataFrame], Mapping]],
    *,
    concept: str = "color",
    threshold: float = 0.8,
    capability_threshold: float = 0.8,
) -> pd.DataFrame:
    """The points table from one study analysis per seed.

    ``per_seed[seed] = (frames, metrics)`` as returned by ``analyze_study`` on that seed's rows
    of the probe and intervention tables. Reads only plain columns and keys:

    * ``frames["learning_times"]``: ``run, seed, group, concept, threshold, learning_time,
      censored, budget`` (groups ``held_out`` and ``train``);
    * ``frames["emergence"]``: ``run, seed, method, threshold, censored, lead_steps,
      lead_checkpoints, lead_is_lower_bound`` (methods other than ``naive``);
    * ``metrics["runs"][run]``: ``separations[concept]``, ``signal[concept]``, and
      ``trajectory`` with ``nearest_class, turned, heading_step`` (the turn);
    * ``metrics["phenomena_detail"]["memorization"]["evidence"][run]["expected"]`` where the
      memorization verdict applies (weakest and strongest separation).
    """
    rows = []
    for seed, (frames, metrics) in sorted(per_seed.items()):
        lt = frames["learning_times"]
        lt = lt[(lt["concept"] == concept) & np.isclose(lt["threshold"], threshold)]
        em = frames["emergence"]
        em = em[(em["method"] != "naive") & np.isclose(em["threshold"], capability_threshold)]
        evidence = metrics.get("phenomena_detail", {}).get("memorization", {}).get("evidence")
        for run, info in metrics["runs"].items():
            if concept not in info.get("separations", {}):
                continue
            ho = lt[(lt["run"] == run) & (lt["group"] == "held_out")]
            tr = lt[(lt["run"] == run) & (lt["group"] == "train")]
            if len(ho) != 1:
                raise ValueError(f"seed {seed}, run {run}: expected one held-out learning time")
            traj = info.get("trajectory", {})
            expected = (evidence or {}).get(run, {}).get("expected")
            nearest = traj.get("nearest_class")
            e = em[em["run"] == run]
            reached = e[e["lead_checkpoints"].notna()]
            best = (
                reached.sort_values(["lead_checkpoints", "lead_steps"], kind="stable").iloc[-1]
                if len(reached)
                else None
            )
            rows.append(
                {
                    "run": run,
                    "seed": int(seed),
                    "sep": float(info["separations"][concept]),
                    "signal": _opt_float(info.get("signal", {}).get(concept)),
                    "t_held_out": float(ho["learning_time"].iloc[0]),
                    "held_out_censored": bool(ho["censored"].iloc[0]),
                    "budget": float(ho["budget"].iloc[0]),
                    "t_train": float(tr["learning_time"].iloc[0]) if len(tr) else float("nan"),
                    "train_censored": bool(tr["censored"].iloc[0]) if len(tr) else False,
                    "expected_class": expected,
                    "nearest_class": nearest,
                    "memorized": None
                    if expected is None or nearest is None
                    else bool(nearest == expected),
                    "turned": _opt_bool(traj.get("turned")),
                    "turn_step": _opt_float(traj.get("heading_step")),
                    "lead_steps": float("nan") if best is None else float(best["lead_steps"]),
                    "lead_checkpoints": (
                        float("nan") if best is None else float(best["lead_checkpoints"])
                    ),
                    "lead_is_lower_bound": False
                    if best is None
                    else bool(best["lead_is_lower_bound"]),
                    "lead_high_steps": float("nan")
                    if best is None
                    else _opt_float(best.get("lead_high_steps")),
                    "lead_high_is_lower_bound": False
                    if best is None
                    else bool(_opt_bool(best.get("lead_high_is_lower_bound"))),
                    "elicited_censored": bool(len(e) and e["censored"].astype(bool).all()),
                }
            )
    return pd.DataFrame(rows)
