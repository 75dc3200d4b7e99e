"""The study's verdicts: from the sweep's tables to the numbers and the three phenomena.

:func:`study_metrics` only reads tables (those of :func:`~.study.study_tables`) and returns a
JSON-ready ``metrics`` dict; it computes no table itself. Each phenomenon is a boolean computed
from the data with the evidence next to it (docs/method.md §8):

1. ``signal_order``: the held-out class's learning time of the *swept concept* (the one
   whose separation the sweep varies: color in the paper's sweep; :func:`swept_concept`) falls
   as its separation grows, over at least 3 sweep points (:func:`~.fits.is_monotone_decreasing`;
   censored times count as "later than the budget").
2. ``memorization``: before it turns, the held-out prompt yields the training class that
   shares the stronger concept: at the weakest separation of the swept concept the class
   sharing the held-out value of the *other* concept (small red in the color sweep), at the
   strongest the one sharing the swept concept's value (large blue); and afterwards the
   trajectory turns towards the held-out corner.
3. ``hidden_capability``: some elicitation method's best dose is above the capability
   threshold beyond its binomial noise (Bonferroni-Wilson lower bound) at least one checkpoint
   before naive prompting is within its noise of it (upper bound); the rule of
   :mod:`.capability` (docs/method.md §6).

A verdict the sweep cannot test (memorization on a grid of more than two concepts or with
several held-out classes, e.g. 2x2x2; memorization where the training classes never become
recognisable; either without separations, as for folder data) has ``holds`` None,
``applicable`` False and a ``reason``; it is never forced to a yes or no.
:func:`extension_metrics` adds the analyses beyond two concepts (concept distance, ODE fits,
guidance, underspecification).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import conceptspace.analysis.capability as CP
import conceptspace.analysis.concept_distance as CD
import conceptspace.analysis.dynamics_model as DM
import conceptspace.analysis.fits as FT
import conceptspace.analysis.guidance as G
import conceptspace.analysis.trajectories as TJ
import conceptspace.analysis.underspecification as U
from conceptspace.analysis.jsonready import clean

#: the columns of a lead read with the intervals (docs/method.md §6.2) that the
#: hidden-capability verdict cites: the emergence table's, less its threshold, budget, dose
#: count and the point estimates, which never decide a verdict
LEAD_EVIDENCE = [
    c
    for c in CP.EMERGENCE_COLUMNS
    if c not in ("threshold", "budget", "n_settings") and not c.startswith("point_")
]


def sharing_class(classes: list[str], held: str, concept_index: int) -> str | None:
    """The training class that shares the held-out class's value of one concept only."""
    target = held.split("_")
    for name in classes:
        parts = name.split("_")
        same = [a == b for a, b in zip(parts, target, strict=True)]
        if same[concept_index] and sum(same) == len(same) - 1:
            return name
    return None


def memorization_of_run(
    traj: pd.DataFrame, train_acc: pd.DataFrame, analyze, held: str | None = None
) -> dict:
    """Which training class the held-out prompt imitates before the turn, and whether it turns.

    One definition (docs/method.md §5.5): every memorization number (nearest class, its mean
    and closest distance and when, the share of checkpoints at which it is nearest) is read in
    the one window of :func:`~.trajectories.memorization_window`; the run *turns* when it ends
    at least ``analyze.turn_margin`` closer to its own corner than its mean distance in that
    window. Without a window the memorization fields are None and ``window_reason`` says why.
    The turn fields of :func:`~.trajectories.turn_summary` come along. ``held`` picks one
    held-out class when the grid has several (default: the only one).
    """
    if held is None:
        held = traj.loc[traj["held_out"].astype(bool), "class"].iloc[0]
    traj = traj[~traj["held_out"].astype(bool) | (traj["class"] == held)]
    turns = TJ.turn_summary(traj, tol=analyze.saturation_tol)
    steps, xy = TJ.trajectory_arrays(traj, held)
    acc = train_acc.groupby("step")["acc"].mean().reindex(steps)
    win = TJ.memorization_window(
        steps,
        acc.to_numpy(),
        turns["saturation_step"],
        ready_acc=analyze.ready_acc,
        sigma=analyze.sigma,
    )
    out = {
        "held_out_class": held,
        "window": win["window"],
        "window_end": win["end"],
        "window_reason": win["reason"],
        "nearest_class": None,
        "mean_distance": None,
        "frac_nearest": None,
        "min_distance": None,
        "min_distance_step": None,
        "mean_distances_in_window": {},
        "distance_to_held_out_corner_in_window": None,
        "final_distance_to_held_out_corner": None,
        "turned": None,
    }
    if win["window"] is not None:
        since, until = win["window"]
        mem = TJ.memorization(
            traj[traj["class"] == held],
            TJ.training_targets(traj),
            until_step=until,
            since_step=since,
        )
        target = np.array(
            [traj.loc[traj["class"] == held, f"target_{c}"].iloc[0] for c in TJ.concepts_of(traj)]
        )
        dist = np.linalg.norm(xy - target, axis=1)
        in_window = float(dist[(steps >= since) & (steps <= until)].mean())
        final = float(dist[-1])
        out.update(
            {k: clean(mem[k]) for k in ("nearest_class", "mean_distance", "frac_nearest")},
            min_distance=clean(mem["min_distance"]),
            min_distance_step=clean(mem["min_distance_step"]),
            mean_distances_in_window={k: clean(v) for k, v in mem["mean_distances"].items()},
            distance_to_held_out_corner_in_window=clean(in_window),
            final_distance_to_held_out_corner=clean(final),
            turned=bool(final <= in_window - analyze.turn_margin),
        )
    return {**out, **{k: clean(v) for k, v in turns.items()}}


def _per_run(d: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """One learning-time row per run (indexed by run), in sweep order."""
    d = d.set_index("run")
    return d.loc[[r for r in runs if r in d.index]]


def _order(d: pd.DataFrame, info: pd.DataFrame, concept: str) -> dict | None:
    """The signal-order rule (:func:`~.fits.is_monotone_decreasing`) of learning time against
    ``concept``'s separation over the runs of ``d`` (one row per run); None when the runs have
    no such separation."""
    if f"sep_{concept}" not in info:
        return None
    mono = FT.is_monotone_decreasing(
        info.loc[d.index, f"sep_{concept}"].to_numpy(float),
        d["learning_time_mean"].to_numpy(),
        (d["n_censored"] > 0).to_numpy(),
    )
    return {k: clean(v) for k, v in mono.items()}


def _not_applicable(statement: str, reason: str) -> dict:
    """A verdict that this sweep cannot test: ``holds`` is None (never a fake yes/no)."""
    return {"holds": None, "statement": statement, "applicable": False, "reason": reason}


def swept_concept(info: pd.DataFrame, concepts: list[str]) -> str | None:
    """The concept whose separation the sweep varies: the one concept with more than one
    separation over the runs; color when none or several vary (the paper's sweep); None when
    the runs have no separations (folder data)."""
    have = [c for c in concepts if f"sep_{c}" in info]
    varied = [c for c in have if info[f"sep_{c}"].nunique() > 1]
    if len(varied) == 1:
        return varied[0]
    return "color" if "color" in have else None


def signal_order_verdict(
    held: pd.DataFrame, info: pd.DataFrame, runs: list[str], swept: str | None, concepts
) -> dict:
    """Phenomenon 1 (see the module docstring): the signal-order rule of
    :func:`~.fits.is_monotone_decreasing` on the held-out learning times of the swept concept
    (``held``: one threshold's rows of the held-out learning-time summary). Not applicable
    without separations, or when two runs share the swept concept's separation (the rule needs
    one point per separation, docs/method.md §5.3)."""
    if swept is None:
        return _not_applicable(
            "held-out learning time falls as the concept separation grows",
            f"the runs have no concept separations (concepts {concepts})",
        )
    statement = f"held-out {swept} learning time falls as the {swept} separation grows"
    rule = _order(_per_run(held[held["concept"] == swept], runs), info, swept)
    if rule["monotone"] is None:
        return _not_applicable(
            statement, f"two runs share a {swept} separation ({rule['reason']}), so no order"
        )
    return {"holds": rule["monotone"], "statement": statement, "evidence": rule}


def memorization_verdict(
    per_run: dict, info: pd.DataFrame, traj: pd.DataFrame, concepts: list[str]
) -> dict:
    """Phenomenon 2 (see the module docstring). It is defined for a two-concept grid with
    separations and one held-out class; other grids get a "not applicable" verdict (``holds``
    None); their per-class memorization is in ``runs.<run>.trajectory.by_class``."""
    statement = "the held-out prompt first yields the training class sharing its stronger concept"
    single = all(r.get("held_out_class") is not None for r in per_run.values())
    swept = swept_concept(info, concepts)
    if len(concepts) != 2 or swept is None or not single:
        return _not_applicable(
            statement,
            f"defined for two concepts with separations and one held-out class; this grid has "
            f"concepts {concepts} and held-out classes "
            f"{next(iter(per_run.values())).get('held_out_classes') or 'one'}",
        )
    by_sep = info.sort_values(f"sep_{swept}").index.tolist()
    weak, strong = by_sep[0], by_sep[-1]
    classes = sorted(traj.loc[~traj["held_out"].astype(bool), "class"].unique())
    held_name = per_run[weak]["held_out_class"]
    ci = {c: i for i, c in enumerate(concepts)}
    other = next(c for c in concepts if c != swept)
    expect = {
        weak: sharing_class(classes, held_name, ci[other]),
        strong: sharing_class(classes, held_name, ci[swept]),
    }
    unread = {
        r: per_run[r]["window_reason"] for r in (weak, strong) if per_run[r]["window"] is None
    }
    if unread:
        return _not_applicable(
            statement,
            "memorization cannot be read in "
            + "; ".join(f"{r}: {why}" for r, why in unread.items()),
        )
    mem_ok = {r: per_run[r]["nearest_class"] == expect[r] for r in (weak, strong)}
    turned = {r: per_run[r]["turned"] for r in (weak, strong)}
    # The turn must follow at least where the memorized concept is learned within the budget:
    # at weak signal the second concept may not come within the budget (a hidden capability).
    return {
        "holds": bool(weak != strong and all(mem_ok.values()) and any(turned.values())),
        "statement": (
            f"{held_name} prompts first yield {expect[weak]} at the weakest {swept} "
            f"separation ({weak}) and {expect[strong]} at the strongest "
            f"({strong}), then turn towards {held_name} (at least one of them "
            "within the training budget)"
        ),
        "evidence": {
            r: {
                "expected": expect[r],
                "observed": per_run[r]["nearest_class"],
                "turned": turned[r],
            }
            for r in (weak, strong)
        },
    }


def study_metrics(tables: dict[str, pd.DataFrame], run_info: pd.DataFrame, analyze) -> dict:
    """The metrics and the three phenomena of a sweep, from the tables of
    :func:`~.study.study_tables` (``run_info``: run, sep_<concept>, signal_<concept>, and
    ``analyze`` the params section). JSON-ready: NaN becomes None."""
    thresholds = tuple(analyze.thresholds)
    traj, lt_sum = tables["trajectories"], tables["learning_times_summary"]
    info = run_info.set_index("run")
    runs = list(info.index)
    concepts = TJ.concepts_of(traj)
    held = lt_sum[lt_sum["group"] == "held_out"]
    per_run = {
        run: _trajectory_summary(traj[traj["run"] == run], tables["train_accuracy"], run, analyze)
        for run in runs
    }
    swept = swept_concept(info, concepts)
    held_first = held[held["threshold"] == thresholds[0]]
    phenomena = {
        "signal_order": signal_order_verdict(held_first, info, runs, swept, concepts),
        "memorization": memorization_verdict(per_run, info, traj, concepts),
        "hidden_capability": _hidden_capability_verdict(
            tables["emergence"], analyze.capability_threshold
        ),
    }
    metrics = {
        "phenomena": {k: v["holds"] for k, v in phenomena.items()},
        "phenomena_detail": phenomena,
        "runs": {
            run: _run_metrics(run, info, concepts, held, per_run[run], tables["leads"])
            for run in runs
        },
        "fits_inverse_time": _inverse_time_fits(held, info, runs, concepts, thresholds),
        # the training classes too (context for the held-out verdict; not one of the phenomena)
        "signal_order_training_classes": _training_order(lt_sum, info, runs, concepts, thresholds),
    }
    metrics.update(extension_metrics(tables, run_info, analyze))
    return clean(metrics)


def _inverse_time_fits(held: pd.DataFrame, info, runs, concepts, thresholds) -> dict:
    """Held-out learning speed 1/T against concept signal, per concept and threshold."""
    fits = {}
    for concept in concepts:
        fits[concept] = {}
        for thr in thresholds:
            d = _per_run(held[(held["concept"] == concept) & (held["threshold"] == thr)], runs)
            signal = info.loc[d.index, f"signal_{concept}"].to_numpy()
            cens = (d["n_censored"] > 0).to_numpy()
            T = d["learning_time_mean"].to_numpy()
            fits[concept][str(thr)] = {
                k: clean(v) for k, v in FT.fit_inverse_time(signal, T, cens).items()
            }
    return fits


def _training_order(lt_sum: pd.DataFrame, info, runs, concepts, thresholds) -> dict:
    """The signal-order rule on the training classes' learning times, per concept."""
    train_order = {}
    tr = lt_sum[(lt_sum["group"] == "train") & (lt_sum["threshold"] == thresholds[0])]
    for concept in concepts:
        d = _per_run(tr[tr["concept"] == concept], runs)
        mono = _order(d, info, concept) if len(d) else None
        if mono is not None and mono["monotone"] is not None:  # None: repeated separations
            train_order[concept] = {
                "learning_times": {r: clean(v) for r, v in d["learning_time_mean"].items()},
                **mono,
            }
    return train_order


def _trajectory_summary(t_run: pd.DataFrame, train_acc: pd.DataFrame, run, analyze) -> dict:
    """One run's memorization and turn (:func:`memorization_of_run`); with several held-out
    classes (e.g. 2x2x2), one summary per class under ``by_class``."""
    a_run = train_acc[train_acc["run"] == run]
    held_classes = sorted(t_run.loc[t_run["held_out"].astype(bool), "class"].unique())
    if len(held_classes) == 1:
        return memorization_of_run(t_run, a_run, analyze)
    return {
        "held_out_class": None,
        "held_out_classes": held_classes,
        "nearest_class": None,
        "turned": None,
        "saturation_step": clean(TJ.saturation_step(t_run, tol=analyze.saturation_tol)),
        "heading_step": None,
        "by_class": {h: memorization_of_run(t_run, a_run, analyze, held=h) for h in held_classes},
    }


def _hidden_capability_verdict(emer: pd.DataFrame, thr: float) -> dict:
    """Phenomenon 3: some elicitation method is ahead of naive prompting by at least one
    checkpoint under the interval rule (docs/method.md §6.2); the ten longest leads as
    evidence."""
    emer_thr = emer[(emer["threshold"] == thr) & (emer["method"] != "naive")]
    lead_rows = [{k: clean(r[k]) for k in LEAD_EVIDENCE} for _, r in emer_thr.iterrows()]
    ahead = [
        r for r in lead_rows if r["lead_checkpoints"] is not None and r["lead_checkpoints"] >= 1
    ]
    return {
        "holds": bool(ahead),
        "statement": (
            f"an elicitation method's best dose has its lower bound at or above {thr} "
            "at least one checkpoint before naive prompting's upper bound reaches it"
        ),
        "evidence": sorted(ahead, key=lambda r: -(r["lead_steps"] or 0))[:10],
    }


def _run_metrics(run, info, concepts, held: pd.DataFrame, trajectory: dict, leads) -> dict:
    """One run's entry of ``metrics["runs"]``: separations, signals, held-out learning times,
    its trajectory summary and its leads (read per seed, then summarized: docs/method.md §6)."""
    return {
        "separations": {
            c: clean(info.loc[run, f"sep_{c}"]) for c in concepts if f"sep_{c}" in info
        },
        "signal": {c: clean(info.loc[run, f"signal_{c}"]) for c in concepts},
        "learning_time_held_out": {
            f"{row.concept}@{row.threshold:g}": {
                "mean": clean(row.learning_time_mean),
                "std": clean(row.learning_time_std),
                "censored_seeds": int(row.n_censored),
            }
            for row in held[held["run"] == run].itertuples()
        },
        "trajectory": trajectory,
        "emergence": {
            f"{row.method}@{row.threshold:g}": {
                "step": clean(row.emergence_median),
                "censored": row.n_reached == 0,
                "lead_steps": clean(row.lead_median),
                "lead_is_lower_bound": bool(row.lead_median_is_lower_bound),
                "lead_high": clean(row.lead_high_median),
                "lead_high_is_lower_bound": bool(row.lead_high_median_is_lower_bound),
                "lead_min": clean(row.lead_min),
                "lead_max": clean(row.lead_max),
                "n_seeds": int(row.n_seeds),
                "n_reached": int(row.n_reached),
                "n_leads": int(row.n_leads),
                "per_seed": row.per_seed,
            }
            for row in leads[leads["run"] == run].itertuples()
        },
    }


def extension_metrics(tables: dict[str, pd.DataFrame], run_info: pd.DataFrame, analyze) -> dict:
    """The metrics of the analyses beyond two concepts (docs/method.md §7), from their tables:

    * ``concept_distance`` (§7.1): distance at training convergence against learning time;
    * ``dynamics_model`` (§5.6): the ODE fitted to each held-out trajectory new in two concepts;
    * ``guidance`` (§7.3): learning times per guidance weight, when there are guidance rows;
    * ``underspecification`` (§7.6): held-out learning time against the masked fraction, when
      the sweep has more than one fraction.
    """
    dist, fits = tables["concept_distance"], tables["dynamics_fit"]
    g_lt = tables["guidance_learning_times"]
    u_tab, thr = tables["underspecification"], float(analyze.thresholds[0])
    skipped = tables["dynamics_skipped"].to_dict("records")
    if U.COLUMN not in run_info:
        run_info = run_info.assign(**{U.COLUMN: 0.0})
    u_applies = U.applies(run_info)
    metrics = {
        "concept_distance": {
            "convergence_accuracy": analyze.convergence_acc,
            "learning_threshold": thr,
            "convergence_step": {
                r: g["convergence_step"].iloc[0] for r, g in dist.groupby("run", sort=False)
            },
            "converged": {r: bool(g["converged"].all()) for r, g in dist.groupby("run")},
            "relation": CD.relation(dist),
        },
        "dynamics_model": {
            "fits": {
                f"{r['run']}/{r['class']}": {
                    k: r[k]
                    for k in ("concept_1", "concept_2", *DM.PARAM_NAMES, "switch_step")
                    + ("rmse", "r2", "success", "at_bound")
                }
                for r in fits.to_dict("records")
            },
            "skipped": skipped,
        },
        "guidance": {"applicable": not g_lt.empty, **(G.summary(g_lt) if len(g_lt) else {})},
        "underspecification": {
            "applicable": u_applies,
            "mask_fractions": dict(
                zip(run_info["run"], run_info[U.COLUMN].astype(float), strict=True)
            ),
            **({"relation": U.relation(u_tab)} if u_applies else {}),
        },
    }
    return metrics
