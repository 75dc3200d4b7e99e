"""The study's headline: a few dozen numbers for ``metrics.json`` (what ``dvc metrics show``
prints), taken from the full metrics (``details.json``). Nothing is computed here."""

from __future__ import annotations

from typing import Any


def _flat_times(times: dict[str, Any]) -> dict[str, Any]:
    """``{"color@0.8": {"mean": .., "censored_seeds": ..}}`` -> ``{"color@0.8": mean}`` (the
    censored ones are listed beside them)."""
    return {k: v.get("mean") for k, v in times.items()}


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """Verdicts; per run: held-out learning times (censored ones listed), the class its
    prompts memorize, whether it turned, and the best elicitation lead over naive prompting
    (median over the seeds that have one, whether it is a lower bound at the budget's end, its
    interval, in how many seeds, and per seed);
    across seeds: each phenomenon's "k of n", the seeds where it holds, each seed's verdicts
    and best lead, the pooled order
    test, the slope of 1/T with its interval, per separation the median held-out learning
    time and lead over seeds with their intervals, and how many runs have each kind of lead
    per class the held-out prompt first imitates."""
    out: dict[str, Any] = {"phenomena": dict(metrics["phenomena"]), "runs": {}}
    for run, m in metrics["runs"].items():
        times = m.get("learning_time_held_out", {})
        traj = m.get("trajectory", {})
        # the per-seed leads summarized over seeds (docs/method.md §6), never a lead read on
        # seed-averaged curves
        leads = [
            (v["lead_steps"], k)
            for k, v in m.get("emergence", {}).items()
            if not k.startswith("naive") and v.get("lead_steps") is not None
        ]
        best = max(leads) if leads else (None, None)
        e = m.get("emergence", {}).get(best[1], {}) if best[1] else {}
        out["runs"][run] = {
            "learning_time_held_out": _flat_times(times),
            "censored": sorted(k for k, v in times.items() if v.get("censored_seeds")),
            "memorized": traj.get("nearest_class"),
            "turned": traj.get("turned"),
            "best_lead_steps": best[0],
            "best_lead_method": best[1],
            "best_lead_is_lower_bound": bool(e.get("lead_is_lower_bound", False)),
            "best_lead_interval": [best[0], e.get("lead_high")] if best[1] else None,
            "best_lead_seeds": f"{e['n_leads']} of {e['n_seeds']}" if "n_leads" in e else None,
            "best_lead_per_seed": e.get("per_seed"),
        }
    seeds = metrics.get("across_seeds")
    if seeds:
        phen = seeds["phenomena"]
        fit = seeds["fit_inverse_time"]
        out["across_seeds"] = {
            "n_seeds": seeds["n_seeds"],
            "concept": seeds["concept"],
            **{f"{name}_holds_in": f"{p['holds_in']} of {p['n']}" for name, p in phen.items()},
            "seeds_holding": {name: p["seeds_holding"] for name, p in phen.items()},
            "per_seed": {
                s: {k: v[k] for k in (*phen, "best_lead_steps", "best_lead_is_lower_bound")}
                for s, v in seeds.get("by_seed", {}).items()
            },
            "signal_order_somers_d": phen["signal_order"]["pooled"]["d"],
            "signal_order_p": phen["signal_order"]["pooled"]["p_value"],
            "inverse_time_slope": fit["slope"],
            "inverse_time_slope_ci": fit["slope_ci_bootstrap_seeds"],
            "held_out_median": {
                f"{row['sep']:g}": _median(row, "held_out") for row in seeds["by_separation"]
            },
            "lead_median": {
                f"{row['sep']:g}": _median(row, "lead") for row in seeds["by_separation"]
            },
            # the counts only; each run's lead is in details.json and summary.md
            "leads_by_imitated_class": {
                cls: {k: g[k] for k in ("runs", "inside", "lower_bound", "none")}
                for cls, g in seeds.get("leads_by_imitated_class", {}).items()
            },
        }
    return out


def _median(row: dict[str, Any], name: str) -> dict[str, Any]:
    """A per-separation median over seeds with its bootstrap interval; ``lower_bound`` when
    censored values could raise it."""
    return {
        "median": row[f"{name}_median"],
        "ci": [row[f"{name}_ci_low"], row[f"{name}_ci_high"]],
        "lower_bound": row[f"{name}_median_is_lower_bound"],
    }


def terse(metrics: dict[str, Any]) -> dict[str, Any]:
    """What ``dvc metrics show`` prints for a study (``headline.json``, one terminal line):
    each phenomenon's verdict, as "k of n seeds" where the study has several seeds."""
    seeds = metrics.get("across_seeds")
    if seeds:
        return {
            name: f"{p['holds_in']} of {p['n']} seeds" for name, p in seeds["phenomena"].items()
        }
    return {name: "yes" if v else "no" for name, v in metrics["phenomena"].items()}
