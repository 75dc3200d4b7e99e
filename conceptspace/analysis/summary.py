"""The study's ``summary.md``: its verdicts, per run and across seeds, as markdown tables
(docs/method.md §8). Pure: metrics in, text out."""

from __future__ import annotations

import numpy as np
import pandas as pd


def _table(header: str, rows: list[str]) -> list[str]:
    """A markdown table after a blank line: ``header`` (``| a | b |``), its rule, ``rows``."""
    return ["", header, "|" + "---|" * (header.count("|") - 1), *rows]


def _yes_no(verdict: bool | None) -> str:
    """A verdict cell: ``n/a`` where it cannot be tested (docs/method.md §8)."""
    return "n/a" if verdict is None else ("yes" if verdict else "no")


def _number(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


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


def _seed_row(seed: str, v: dict) -> str:
    """A seed's verdicts and its best lead (``≥``: a lower bound at the budget's end)."""
    flags = [_yes_no(v[k]) for k in ("signal_order", "memorization", "hidden_capability")]
    lead = v["best_lead_steps"]
    lead = "-" if lead is None else f"{'≥' if v['best_lead_is_lower_bound'] else ''}{lead:.0f}"
    return f"| {seed} | " + " | ".join(flags) + f" | {lead} |"


def across_seeds_markdown(a: dict, points: pd.DataFrame) -> list[str]:
    """The verdicts across seeds (docs/method.md §8): k of n seeds per phenomenon, the pooled
    order test, the 1/T fit, and per separation the medians over seeds and each seed's
    memorized class."""
    seeds = ", ".join(str(s) for s in a["seeds"])
    shares = []
    for name, p in a["phenomena"].items():
        lo, hi = p["ci_fraction"]
        ci = "-" if lo is None else f"[{lo:.2f}, {hi:.2f}]"
        held = ", ".join(str(s) for s in p["seeds_holding"]) or "none"
        shares.append(f"| {name} | {p['holds_in']} of {p['n']} | {ci} | {held} |")
    lines = [
        "",
        f"## Across seeds ({a['n_seeds']}: {seeds})",
        *_table(
            "| phenomenon | holds in | 95% interval of the share | seeds where it holds |", shares
        ),
    ]
    pooled = a["phenomena"]["signal_order"]["pooled"]
    fit = a["fit_inverse_time"]
    d, pv = _number(pooled["d"], "+.2f", "n/a"), _number(pooled["p_value"], ".3g", "n/a")
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
    by_sep = []
    for row in a["by_separation"]:
        at = points[np.isclose(points["sep"], row["sep"])].sort_values("seed")
        mem = ", ".join(
            f"{s}: {c if isinstance(c, str) else '-'}"
            for s, c in zip(at["seed"], at["nearest_class"], strict=True)
        )
        turned = f"{row['n_turned']} of {row['n_turn_tested']}"
        by_sep.append(
            f"| {row['sep']:g} | {_steps(row, 'held_out')} | {_steps(row, 'train')} | "
            f"{_steps(row, 'lead')} | {mem} | {turned} |"
        )
    lines += _table(
        f"| Δ{a['concept']} | held-out median [95% CI] | training median | best lead over "
        "naive at the capability threshold | memorized class per seed | turned |",
        by_sep,
    )
    by_seed = a.get("by_seed", {})
    if by_seed:
        lines += _table(
            "| seed | signal order | memorization | hidden capability | best lead over naive |",
            [_seed_row(seed, v) for seed, v in by_seed.items()],
        )
    lines += _imitated_table(a.get("leads_by_imitated_class", {}))
    lines += [
        "",
        "Steps; `>`: a lower bound (not reached within the budget in some seeds); "
        "`≥` a lead measured against a naive prompt that never reached the threshold within "
        "the budget (a lower bound at the budget's end, not a lead inside it).",
    ]
    return lines


def _imitated_table(groups: dict) -> list[str]:
    """Each (run, seed)'s best lead by the training class its held-out prompt first imitates
    (:func:`~.across_seeds.leads_by_imitated_class`), one column per kind of lead."""

    def lead(x: dict) -> str:
        if x["lead"] is None:
            return f"{x['run']}/{x['seed']}"
        return f"{x['run']}/{x['seed']}: {'≥' if x['kind'] == 'lower_bound' else ''}{x['lead']:.0f}"

    def cell(g: dict, kind: str) -> str:
        return f"{g[kind]}: " + (", ".join(lead(x) for x in g["leads"] if x["kind"] == kind) or "-")

    rows = [
        f"| {cls} | {g['runs']} | {cell(g, 'inside')} | {cell(g, 'lower_bound')} | "
        f"{cell(g, 'none')} |"
        for cls, g in groups.items()
    ]
    if not rows:
        return []
    return _table(
        "| first imitates | runs | best lead measured inside the budget (run/seed: steps) | "
        "a lower bound at the budget's end | no method's lower bound reached the threshold |",
        rows,
    )


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


def _run_row(run: str, r: dict) -> str:
    """A run's signal, held-out learning times, memorized class, turn and best lead."""
    sig = ", ".join(f"{k} {v:.4f}" for k, v in r["signal"].items())
    lt = ", ".join(
        f"{k}: {'>' if v['censored_seeds'] else ''}{v['mean']:.0f}"
        for k, v in r["learning_time_held_out"].items()
    )
    t = r["trajectory"]
    if "by_class" in t:  # several held-out classes: class -> memorized class
        mem = ", ".join(f"{h}: {v['nearest_class']}" for h, v in t["by_class"].items())
        turned = ", ".join(f"{h}: {v['turned']}" for h, v in t["by_class"].items())
    else:
        mem, turned = t["nearest_class"], t["turned"]
    return f"| {run} | {sig} | {lt} | {mem} | {turned} | {_lead_text(r['emergence'])} |"


def summary_markdown(metrics: dict, points: pd.DataFrame | None = None) -> str:
    lines = [
        "# Study summary",
        *_table(
            "| phenomenon | holds | statement |",
            [
                f"| {name} | {_yes_no(d['holds'])} | {d['statement']} |"
                for name, d in metrics["phenomena_detail"].items()
            ],
        ),
    ]
    lines += _table(
        "| run | signal | held-out learning times | memorized | turned | best lead over naive |",
        [_run_row(run, r) for run, r in metrics["runs"].items()],
    )
    lines += [
        "",
        "Best lead: median over seeds of the per-seed leads, each read with the binomial "
        "intervals (the best dose's Bonferroni-Wilson lower bound at or above the threshold "
        "before naive prompting's upper bound is), [that lead, the lead with the bounds "
        "swapped]; `≥`: naive prompting never reached the threshold, a lower bound at the "
        "budget's end (docs/method.md §6).",
    ]
    if "concept_distance" in metrics:
        rel = metrics["concept_distance"]["relation"]
        rho = _number(rel["spearman_rho"], "+.2f", "n/a")
        lines += [
            "",
            f"Distance to the target corner at training convergence vs class-learned time: "
            f"Spearman rho {rho} over {rel['n']} held-out classes ({rel['n_censored']} never "
            "learned); table concept_distance.csv.",
        ]
    fits = metrics.get("dynamics_model", {}).get("fits", {})
    if fits:
        lines += _table(
            "| ODE fit (run/class) | a | switch step | R² | at search bound |",
            [
                f"| {k} | {_number(f['a'], '.2f')} | {_number(f['switch_step'], '.0f')} | "
                f"{_number(f['r2'], '.2f')} | {f.get('at_bound') or '-'} |"
                for k, f in fits.items()
            ],
        )
    if "across_seeds" in metrics and points is not None:
        lines += across_seeds_markdown(metrics["across_seeds"], points)
    return "\n".join(lines) + "\n"
