"""The study's ``summary.md``: its verdicts, per run and across seeds, as markdown tables
(docs/method.md §8). Pure: metrics in, text out."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _steps(row: dict, name: str) -> str:
    """``median [low, high]`` in steps over seeds, ``>`` marking a lower bound (censored)."""
    med = row[f"{name}_median"]
    if med is None:
        return "-"
    text = f"{'>' if row[f'{name}_median_is_lower_bound'] else ''}{med:.0f}"
    lo, hi = row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if lo is not None and hi is not None:
        lo_b, hi_b = (row[f"{name}_ci_{k}_is_lower_bound"] for k in ("low", "high"))
        text += f" [{'>' if lo_b else ''}{lo:.0f}, {'>' if hi_b else ''}{hi:.0f}]"
    return text


def across_seeds_markdown(a: dict, points: pd.DataFrame) -> list[str]:
    """The verdicts across seeds (docs/method.md §8): k of n seeds per phenomenon, the pooled
    order test, the 1/T fit, and per separation the medians over seeds and each seed's
    memorized class."""
    seeds = ", ".join(str(s) for s in a["seeds"])
    lines = [
        "",
        f"## Across seeds ({a['n_seeds']}: {seeds})",
        "",
        "| phenomenon | holds in | 95% interval of the share | seeds where it holds |",
        "|---|---|---|---|",
    ]
    for name, p in a["phenomena"].items():
        lo, hi = p["ci_fraction"]
        ci = "-" if lo is None else f"[{lo:.2f}, {hi:.2f}]"
        held = ", ".join(str(s) for s in p["seeds_holding"]) or "none"
        lines.append(f"| {name} | {p['holds_in']} of {p['n']} | {ci} | {held} |")
    pooled = a["phenomena"]["signal_order"]["pooled"]
    fit = a["fit_inverse_time"]
    d = "n/a" if pooled["d"] is None else f"{pooled['d']:+.2f}"
    pv = "n/a" if pooled["p_value"] is None else f"{pooled['p_value']:.3g}"
    lines += [
        "",
        f"Pooled signal order over {pooled['n_points']} (separation, seed) points "
        f"({pooled['n_censored']} censored): Somers' D {d}, one-sided permutation p {pv} "
        f"({pooled['p_method']}, permutations within seeds).",
    ]
    if fit["slope"] is not None:
        lo, hi = fit["slope_ci_bootstrap_seeds"]
        ci = "" if lo is None else f", 95% interval over seeds [{lo:.3g}, {hi:.3g}]"
        lines.append(
            f"Learning speed: 1/T against the {a['concept']} {fit['x']}, slope {fit['slope']:.3g}"
            f"{ci} ({fit['n']} measured points; {fit['n_excluded_censored']} censored left out)."
        )
    lines += [
        "",
        f"| Δ{a['concept']} | held-out median [95% CI] | training median | best lead over "
        "naive at the capability threshold | memorized class per seed | turned |",
        "|---|---|---|---|---|---|",
    ]
    for row in a["by_separation"]:
        at = points[np.isclose(points["sep"], row["sep"])].sort_values("seed")
        mem = ", ".join(
            f"{s}: {c if isinstance(c, str) else '-'}"
            for s, c in zip(at["seed"], at["nearest_class"], strict=True)
        )
        turned = f"{row['n_turned']} of {row['n_turn_tested']}"
        lines.append(
            f"| {row['sep']:g} | {_steps(row, 'held_out')} | {_steps(row, 'train')} | "
            f"{_steps(row, 'lead')} | {mem} | {turned} |"
        )
    by_seed = a.get("by_seed", {})
    if by_seed:
        lines += [
            "",
            "| seed | signal order | memorization | hidden capability | best lead over naive |",
            "|---|---|---|---|---|",
        ]
        for seed, v in by_seed.items():
            flags = [
                "n/a" if v[k] is None else ("yes" if v[k] else "no")
                for k in ("signal_order", "memorization", "hidden_capability")
            ]
            lead = v["best_lead_steps"]
            lead = (
                "-" if lead is None else f"{'≥' if v['best_lead_is_lower_bound'] else ''}{lead:.0f}"
            )
            lines.append(f"| {seed} | " + " | ".join(flags) + f" | {lead} |")
    lines += [
        "",
        "Steps; `>`: a lower bound (not reached within the budget in some seeds); "
        "`≥` a lead measured against a naive prompt that never reached the threshold within "
        "the budget (a lower bound at the budget's end, not a lead inside it).",
    ]
    return lines


def _lead_text(emergence: dict) -> str:
    """The run's best lead over naive prompting: the median over the seeds that have one
    (docs/method.md §6), ``≥`` when it is a lower bound at the budget's end, its interval and in
    how many seeds it was read."""
    leads = [
        (v["lead_steps"], k)
        for k, v in emergence.items()
        if v["lead_steps"] is not None and not k.startswith("naive")
    ]
    if not leads:
        return "-"
    steps, key = max(leads)
    e = emergence[key]
    text = f"{key} {'≥' if e['lead_is_lower_bound'] else '+'}{steps:.0f} steps"
    high = e.get("lead_high")
    if high is not None:
        text += f" [{steps:.0f}, {'≥' if e.get('lead_high_is_lower_bound') else ''}{high:.0f}]"
    if "n_leads" in e:
        text += f" ({e['n_leads']} of {e['n_seeds']} seeds)"
    return text


def summary_markdown(metrics: dict, points: pd.DataFrame | None = None) -> str:
    lines = ["# Study summary", "", "| phenomenon | holds | statement |", "|---|---|---|"]
    for name, d in metrics["phenomena_detail"].items():
        holds = "n/a" if d["holds"] is None else ("yes" if d["holds"] else "no")
        lines.append(f"| {name} | {holds} | {d['statement']} |")
    lines += [
        "",
        "| run | signal | held-out learning times | memorized | turned | best lead over naive |",
        "|---|---|---|---|---|---|",
    ]
    notes = [
        "",
        "Best lead: median over seeds of the per-seed leads, each read with the binomial "
        "intervals (the best dose's Bonferroni-Wilson lower bound at or above the threshold "
        "before naive prompting's upper bound is), [that lead, the lead with the bounds "
        "swapped]; `≥`: naive prompting never reached the threshold, a lower bound at the "
        "budget's end (docs/method.md §6).",
    ]
    for run, r in metrics["runs"].items():
        sig = ", ".join(f"{k} {v:.4f}" for k, v in r["signal"].items())
        lt = ", ".join(
            f"{k}: {'>' if v['censored_seeds'] else ''}{v['mean']:.0f}"
            for k, v in r["learning_time_held_out"].items()
        )
        lead = _lead_text(r["emergence"])
        t = r["trajectory"]
        if "by_class" in t:  # several held-out classes: class -> memorized class
            mem = ", ".join(f"{h}: {v['nearest_class']}" for h, v in t["by_class"].items())
            turned = ", ".join(f"{h}: {v['turned']}" for h, v in t["by_class"].items())
        else:
            mem, turned = t["nearest_class"], t["turned"]
        lines.append(f"| {run} | {sig} | {lt} | {mem} | {turned} | {lead} |")
    lines += notes
    if "concept_distance" in metrics:
        rel = metrics["concept_distance"]["relation"]
        rho = "n/a" if rel["spearman_rho"] is None else f"{rel['spearman_rho']:+.2f}"
        lines += [
            "",
            f"Distance to the target corner at training convergence vs class-learned time: "
            f"Spearman rho {rho} over {rel['n']} held-out classes ({rel['n_censored']} never "
            "learned); table concept_distance.csv.",
        ]
    fits = metrics.get("dynamics_model", {}).get("fits", {})
    if fits:
        lines += [
            "",
            "| ODE fit (run/class) | a | switch step | R² | at search bound |",
            "|---|---|---|---|---|",
        ]
        for k, f in fits.items():
            a, sw, r2 = (
                "-" if f[x] is None else format(f[x], spec)
                for x, spec in (("a", ".2f"), ("switch_step", ".0f"), ("r2", ".2f"))
            )
            lines.append(f"| {k} | {a} | {sw} | {r2} | {f.get('at_bound') or '-'} |")
    if "across_seeds" in metrics and points is not None:
        lines += across_seeds_markdown(metrics["across_seeds"], points)
    return "\n".join(lines) + "\n"
