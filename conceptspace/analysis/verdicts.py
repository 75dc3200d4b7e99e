"""The study's verdicts: from the sweep's tables to the numbers and the three phenomena.

:func:`analyze_study` reads nothing from disk: it takes the concatenated probe and
intervention tables, one row of run information per sweep point, and the ``analyze`` params,
and returns tidy frames plus a JSON-ready ``metrics`` dict. Each phenomenon is a boolean
computed from the data with the evidence next to it:

1. ``signal_order``: the held-out class's color learning time falls as the color separation
   grows, over at least 3 sweep points (:func:`analysis.is_monotone_decreasing`; censored
   times count as "later than the budget").
2. ``memorization``: before it turns, the held-out prompt yields the training class that
   shares the stronger concept: the class sharing the held-out *size* at the weakest color
   separation (small red) and the one sharing its *color* at the strongest (large blue); and
   afterwards the trajectory turns towards the held-out corner.
3. ``hidden_capability``: some elicitation method reaches the capability threshold at least
   one checkpoint interval before naive prompting does.

A verdict the sweep cannot test (memorization on a grid without color or with several
held-out classes, e.g. 2x2x2; signal order without color) has ``holds`` None, ``applicable``
False and a ``reason``; it is never forced to a yes or no. :func:`analyze_extensions` adds the
analyses beyond two concepts (concept distance, ODE fits, guidance, underspecification).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

import conceptspace.analysis.capability as CP
import conceptspace.analysis.curves as CV
import conceptspace.analysis.fits as FT
import conceptspace.analysis.trajectories as TJ

READY_ACC = 0.75
"""Memorization is read once the training classes are recognisable (smoothed accuracy)."""

TURN_MARGIN = 0.25
"""How much closer to its own corner a held-out trajectory must end than where it was during
memorization for that to count as a turn (concept-space distance, corners are 1 apart)."""


def _none(x: Any) -> Any:
    """JSON-friendly scalars: NaN -> None, numpy -> python."""
    if x is None:
        return None
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def training_accuracy(probe: pd.DataFrame) -> pd.DataFrame:
    """Mean per-image accuracy over training classes and concepts: run, seed, step, acc."""
    train = probe[~probe["held_out"].astype(bool)]
    return train.groupby(["run", "seed", "step"], as_index=False)["acc"].mean()


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
    traj: pd.DataFrame, train_acc: pd.DataFrame, cfg, held: str | None = None
) -> dict:
    """Which training class the held-out prompt imitates before the turn, and whether it turns.

    The window is the paper's: from the first checkpoint at which the training classes are
    recognisable (smoothed mean per-image accuracy >= :data:`READY_ACC`; earlier samples are
    noisy blobs) to training saturation (the star of paper_spec §5.1: training trajectories
    within ``saturation_tol`` of their corners), or the last checkpoint if they never
    saturate. The memorized class is the training corner nearest to the held-out trajectory
    over the window; the run turns when it ends markedly closer to its own corner.
    ``held`` picks one held-out class when the grid has several (default: the only one).
    """
    if held is None:
        held = traj.loc[traj["held_out"].astype(bool), "class"].iloc[0]
    traj = traj[~traj["held_out"].astype(bool) | (traj["class"] == held)]
    summary = TJ.turn_summary(traj, tol=cfg.saturation_tol)
    steps, xy = TJ.trajectory_arrays(traj, held)
    target = np.array(
        [traj.loc[traj["class"] == held, f"target_{c}"].iloc[0] for c in TJ.concepts_of(traj)]
    )
    acc = train_acc.groupby("step")["acc"].mean().sort_index()
    acc_s = pd.Series(CV.smooth(acc.to_numpy(), cfg.sigma), index=acc.index)
    ready = acc_s[acc_s >= READY_ACC]
    since = float(ready.index[0]) if len(ready) else float(steps[-1])
    sat = summary["saturation_step"]
    until = float(sat) if sat is not None and sat > since else float(steps[-1])
    window = (steps >= since) & (steps <= until)
    mem = TJ.memorization(
        traj[traj["class"] == held], TJ.training_targets(traj), until_step=until, since_step=since
    )
    dist = np.linalg.norm(xy - target, axis=1)
    in_window = float(dist[window].mean())
    final = float(dist[-1])
    return {
        "held_out_class": held,
        "window": [since, until],
        "nearest_class": mem["nearest_class"],
        "frac_nearest": _none(mem["frac_nearest"]),
        "mean_distances_in_window": {k: _none(v) for k, v in mem["mean_distances"].items()},
        "distance_to_held_out_corner_in_window": _none(in_window),
        "final_distance_to_held_out_corner": _none(final),
        "turned": bool(final <= in_window - TURN_MARGIN),
        **{k: _none(v) for k, v in summary.items() if k not in ("nearest_class",)},
    }


def _per_run(d: pd.DataFrame, runs: list[str]) -> pd.DataFrame:
    """One learning-time row per run (indexed by run), in sweep order."""
    d = d.set_index("run")
    return d.loc[[r for r in runs if r in d.index]]


def _order(d: pd.DataFrame, info: pd.DataFrame, concept: str) -> dict | None:
    """Monotone-order check of learning time against ``concept``'s separation over the runs of
    ``d`` (one row per run), or None when separations repeat (one point per separation)."""
    if f"sep_{concept}" not in info:
        return None
    sep = info.loc[d.index, f"sep_{concept}"].to_numpy()
    if len(np.unique(sep)) != len(sep):
        return None
    mono = FT.is_monotone_decreasing(
        sep, d["learning_time_mean"].to_numpy(), (d["n_censored"] > 0).to_numpy()
    )
    return {k: _none(v) for k, v in mono.items()}


def _not_applicable(statement: str, reason: str) -> dict:
    """A verdict that this sweep cannot test: ``holds`` is None (never a fake yes/no)."""
    return {"holds": None, "statement": statement, "applicable": False, "reason": reason}


def memorization_verdict(
    per_run: dict, info: pd.DataFrame, traj: pd.DataFrame, concepts: list[str]
) -> dict:
    """Phenomenon 2 (see the module docstring). It is defined for a two-concept grid with
    color and one held-out class; other grids get a "not applicable" verdict (``holds`` None);
    their per-class memorization is in ``runs.<run>.trajectory.by_class``."""
    statement = "the held-out prompt first yields the training class sharing its stronger concept"
    single = all(r.get("held_out_class") is not None for r in per_run.values())
    if len(concepts) != 2 or "color" not in concepts or not single or "sep_color" not in info:
        return _not_applicable(
            statement,
            f"defined for two concepts including color and one held-out class; this grid has "
            f"concepts {concepts} and held-out classes "
            f"{next(iter(per_run.values())).get('held_out_classes') or 'one'}",
        )
    by_sep = info.sort_values("sep_color").index.tolist()
    weak, strong = by_sep[0], by_sep[-1]
    classes = sorted(traj.loc[~traj["held_out"].astype(bool), "class"].unique())
    held_name = per_run[weak]["held_out_class"]
    ci = {c: i for i, c in enumerate(concepts)}
    other = next(c for c in concepts if c != "color")
    expect = {
        weak: sharing_class(classes, held_name, ci[other]),
        strong: sharing_class(classes, held_name, ci["color"]),
    }
    mem_ok = {r: per_run[r]["nearest_class"] == expect[r] for r in (weak, strong)}
    turned = {r: per_run[r]["turned"] for r in (weak, strong)}
    # The turn must follow at least where the memorized concept is learned within the budget:
    # at weak signal the second concept may not come within the budget (a hidden capability).
    return {
        "holds": bool(weak != strong and all(mem_ok.values()) and any(turned.values())),
        "statement": (
            f"{held_name} prompts first yield {expect[weak]} at the weakest color "
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


def analyze_study(
    probe: pd.DataFrame, interv: pd.DataFrame, run_info: pd.DataFrame, cfg
) -> tuple[dict[str, pd.DataFrame], dict]:
    """All analyses of a sweep. ``run_info``: run, sep_<concept>, signal_<concept>.

    Returns ``(frames, metrics)``: frames ``trajectories``, ``trajectories_by_seed``,
    ``learning_times`` (per seed), ``learning_times_summary`` (mean over seeds), ``capability``,
    ``emergence``, ``train_accuracy``; metrics is JSON-ready.
    """
    thresholds = tuple(cfg.thresholds)
    traj = TJ.trajectories(probe, sigma=cfg.sigma)
    traj_seed = TJ.trajectories(probe, sigma=cfg.sigma, by_seed=True)
    lt = CV.learning_times(probe, thresholds, sigma=cfg.lt_sigma, k=cfg.persistence)
    lt_sum = CV.summarize_over_seeds(lt)
    cap = CP.capability_curves(interv)
    emer = CP.emergence(interv, thresholds, sigma=1.0, k=max(1, cfg.persistence - 1))
    emer_mean = CP.emergence(
        interv, thresholds, sigma=1.0, k=max(1, cfg.persistence - 1), aggregate_seeds=True
    )
    train_acc = training_accuracy(probe)
    info = run_info.set_index("run")
    runs = list(info.index)
    concepts = [c for c in TJ.concepts_of(traj)]

    # ---- learning time against concept signal -------------------------------------------
    held = lt_sum[lt_sum["group"] == "held_out"]
    fits, order = {}, {}
    for concept in concepts:
        fits[concept], order[concept] = {}, {}
        for thr in thresholds:
            d = _per_run(held[(held["concept"] == concept) & (held["threshold"] == thr)], runs)
            signal = info.loc[d.index, f"signal_{concept}"].to_numpy()
            cens = (d["n_censored"] > 0).to_numpy()
            T = d["learning_time_mean"].to_numpy()
            fits[concept][str(thr)] = {
                k: _none(v) for k, v in FT.fit_inverse_time(signal, T, cens).items()
            }
            mono = _order(d, info, concept)
            if mono is not None:
                order[concept][str(thr)] = mono

    # Training classes too (context for the held-out verdict; not one of the phenomena).
    train_order = {}
    tr = lt_sum[(lt_sum["group"] == "train") & (lt_sum["threshold"] == thresholds[0])]
    for concept in concepts:
        d = _per_run(tr[tr["concept"] == concept], runs)
        mono = _order(d, info, concept) if len(d) else None
        if mono is not None:
            train_order[concept] = {
                "learning_times": {r: _none(v) for r, v in d["learning_time_mean"].items()},
                **mono,
            }

    # ---- memorization and turns -------------------------------------------------------
    per_run = {}
    for run in runs:
        t_run, a_run = traj[traj["run"] == run], train_acc[train_acc["run"] == run]
        held_classes = sorted(t_run.loc[t_run["held_out"].astype(bool), "class"].unique())
        if len(held_classes) == 1:
            per_run[run] = memorization_of_run(t_run, a_run, cfg)
        else:  # several held-out classes (e.g. 2x2x2): one summary per class
            per_run[run] = {
                "held_out_class": None,
                "held_out_classes": held_classes,
                "nearest_class": None,
                "turned": None,
                "saturation_step": _none(TJ.saturation_step(t_run, tol=cfg.saturation_tol)),
                "heading_step": None,
                "by_class": {
                    h: memorization_of_run(t_run, a_run, cfg, held=h) for h in held_classes
                },
            }

    # ---- hidden capabilities ------------------------------------------------------------
    thr = cfg.capability_threshold
    emer_thr = emer[(emer["threshold"] == thr) & (emer["method"] != "naive")]
    lead_rows = []
    for _, r in emer_thr.iterrows():
        lead_rows.append(
            {
                k: _none(r[k])
                for k in (
                    "run",
                    "seed",
                    "class",
                    "method",
                    "emergence_step",
                    "censored",
                    "naive_step",
                    "naive_censored",
                    "lead_steps",
                    "lead_checkpoints",
                    "lead_is_lower_bound",
                )
            }
        )
    ahead = [
        r for r in lead_rows if r["lead_checkpoints"] is not None and r["lead_checkpoints"] >= 1
    ]

    # ---- the three phenomena ------------------------------------------------------------
    color_order = order.get("color", {}).get(str(thresholds[0]), {})
    phenomena = {
        "signal_order": {
            "holds": bool(color_order.get("monotone", False)),
            "statement": "held-out color learning time falls as the color separation grows",
            "evidence": color_order,
        }
        if "color" in concepts
        else _not_applicable(
            "held-out color learning time falls as the color separation grows",
            f"color is not a concept of this grid ({concepts})",
        ),
        "memorization": memorization_verdict(per_run, info, traj, concepts),
        "hidden_capability": {
            "holds": bool(ahead),
            "statement": (
                f"an elicitation method reaches {thr} capability at least one "
                "checkpoint before naive prompting"
            ),
            "evidence": sorted(ahead, key=lambda r: -(r["lead_steps"] or 0))[:10],
        },
    }
    metrics = {
        "phenomena": {k: v["holds"] for k, v in phenomena.items()},
        "phenomena_detail": phenomena,
        "runs": {
            run: {
                "separations": {
                    c: _none(info.loc[run, f"sep_{c}"]) for c in concepts if f"sep_{c}" in info
                },
                "signal": {c: _none(info.loc[run, f"signal_{c}"]) for c in concepts},
                "learning_time_held_out": {
                    f"{row.concept}@{row.threshold:g}": {
                        "mean": _none(row.learning_time_mean),
                        "std": _none(row.learning_time_std),
                        "censored_seeds": int(row.n_censored),
                    }
                    for row in held[held["run"] == run].itertuples()
                },
                "trajectory": per_run[run],
                "emergence": {
                    f"{row.method}@{row.threshold:g}": {
                        "step": _none(row.emergence_step),
                        "censored": bool(row.censored),
                        "lead_steps": _none(row.lead_steps),
                        "lead_checkpoints": _none(row.lead_checkpoints),
                        "lead_is_lower_bound": bool(row.lead_is_lower_bound),
                    }
                    for row in emer_mean[emer_mean["run"] == run].itertuples()
                },
            }
            for run in runs
        },
        "fits_inverse_time": fits,
        "signal_order_training_classes": train_order,
    }
    frames = {
        "trajectories": traj,
        "trajectories_by_seed": traj_seed,
        "learning_times": lt,
        "learning_times_summary": lt_sum,
        "capability": cap,
        "emergence": emer,
        "train_accuracy": train_acc,
    }
    return frames, metrics


def _jsonable(x: Any) -> Any:
    """Nested dicts/lists with numpy scalars and NaN made JSON-friendly (see :func:`_none`)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return _none(x)


def analyze_extensions(
    probe: pd.DataFrame,
    interv: pd.DataFrame,
    run_info: pd.DataFrame,
    frames: dict[str, pd.DataFrame],
    cfg,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """The analyses beyond two concepts (issue 8), on the frames of :func:`analyze_study`.

    * ``concept_distance`` (paper_spec §7.1): every held-out class's distance to its corner at
      training convergence against its learning time, with their relation;
    * ``dynamics_model`` (§5.6): the ODE fitted to each held-out trajectory novel in two
      concepts (parameters, R², RMSE);
    * ``guidance`` (§7.3): trajectories and learning times per guidance weight, when the
      intervention table has ``cfg`` rows;
    * ``underspecification`` (§7.6): held-out learning time against the masked fraction
      (``run_info.mask_fraction``), when the sweep has more than one fraction.

    Returns ``(frames, metrics)``; frames ``concept_distance``, ``dynamics_fit``,
    ``dynamics_curves``, ``guidance_trajectories``, ``guidance_learning_times``,
    ``underspecification`` (empty frames with their columns where an analysis does not apply).
    """
    import conceptspace.analysis.concept_distance as CD
    import conceptspace.analysis.dynamics_model as DM
    import conceptspace.analysis.guidance as G
    import conceptspace.analysis.underspecification as U

    traj = frames["trajectories"]
    thr = float(cfg.thresholds[0])
    dist = CD.distance_to_time(probe, traj, cfg)
    fits, curves, skipped = DM.fit_held_out(traj)
    g_traj = G.trajectories(interv, traj, sigma=cfg.sigma)
    g_lt = G.learning_times(interv, thr, sigma=cfg.lt_sigma, k=cfg.persistence)
    if U.COLUMN not in run_info:
        run_info = run_info.assign(**{U.COLUMN: 0.0})
    u_tab = U.table(frames["learning_times_summary"], run_info)
    u_applies = U.applies(run_info)

    metrics = {
        "concept_distance": {
            "convergence_accuracy": CD.CONVERGENCE_ACC,
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
    out = {
        "concept_distance": dist,
        "dynamics_fit": fits,
        "dynamics_curves": curves,
        "guidance_trajectories": g_traj,
        "guidance_learning_times": g_lt,
        "underspecification": u_tab,
    }
    return out, _jsonable(metrics)
