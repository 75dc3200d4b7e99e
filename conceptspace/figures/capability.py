"""Hidden capabilities: capability under each elicitation method against naive prompting, and
the dose-response behind it (docs/method.md §6).

Both figures are sized for README width (10 inches, about 1,000 px when shown; text 9 pt or
more at that size) with at most three panels a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from conceptspace.analysis.capability import wilson_interval  # noqa: E402
from conceptspace.figures.style import (  # noqa: E402
    METHOD_COLORS,
    METHOD_LABELS,
    log_steps,
    method_color,
    pretty_class,
    save_figure,
)

#: README width of every figure here, inches (≈1,000 px as shown; text ≥ 9 pt there)
WIDTH = 10.0
FONT = 9.5


def _methods(names) -> list[str]:
    names = list(names)
    names.sort(
        key=lambda m: (
            m != "naive",
            list(METHOD_COLORS).index(m) if m in METHOD_COLORS else 99,
            str(m),
        )
    )
    return names


def _grid(n: int) -> tuple[int, int]:
    cols = 1 if n == 1 else (2 if n in (2, 4) else 3)
    return -(-n // cols), cols


def _seed_curve(g: pd.DataFrame, value: str = "capability"):
    """(steps, mean over seeds, envelope low, envelope high) of a capability curve: the band is
    the union of the seeds' intervals (each seed's own interval when there is one seed)."""
    agg = {"mean": (value, "mean")}
    has_ci = {"lower", "upper"} <= set(g.columns)
    if has_ci:
        agg |= {"lo": ("lower", "min"), "hi": ("upper", "max")}
    out = g.groupby("step").agg(**agg).sort_index()
    s = out.index.to_numpy(float)
    if not has_ci:
        return s, out["mean"].to_numpy(float), None, None
    return s, out["mean"].to_numpy(float), out["lo"].to_numpy(float), out["hi"].to_numpy(float)


def lead_label(e: pd.DataFrame) -> str | None:
    """A method's lead over naive prompting from its per-seed emergence rows: the median over
    the seeds that have one, ``≥`` where it is a lower bound at the budget's end, and in how many
    seeds; None when no seed's lower bound reached the threshold."""
    lead = e["lead_steps"].astype(float)
    have = e[lead.notna()]
    n = int(e["seed"].nunique()) if "seed" in e else 1
    if have.empty:
        return None
    med = float(np.median(have["lead_steps"].astype(float)))
    lb = bool(have["lead_is_lower_bound"].astype(bool).any())
    sign = "≥ " if lb else ("+" if med > 0 else "")
    seeds = f", {len(have)} of {n} seeds" if n > 1 else ""
    return f"{sign}{med:,.0f} steps{seeds}"


def capability_figure(
    cap: pd.DataFrame,
    train_acc: pd.DataFrame,
    emergence: pd.DataFrame,
    path: str | Path,
    *,
    threshold: float = 0.8,
    logx: bool = True,
    run_labels: Mapping[str, str] | None = None,
    title: str = "Hidden capability: best dose of each elicitation vs naive prompting",
) -> None:
    """Capability curves against training step, one panel per run (per run and class when there
    are several held-out classes), at most three a row.

    :param cap: :func:`analysis.capability.capability_curves` output; each method's line is the
        mean over seeds, its band the seeds' binomial intervals (Bonferroni-Wilson over the
        doses; docs/method.md §6), the union of them with several seeds.
    :param train_acc: ``run, seed, step, acc``: mean training-class accuracy (dashed).
    :param emergence: :func:`analysis.capability.emergence` output (per seed, or without a
        ``seed`` column); at ``threshold``: a filled triangle where a method's lower bound
        reaches it (per seed), an open circle where naive prompting's upper bound does, and the
        lead in the panel title (never over the data).
    """
    run_labels = run_labels or {}
    runs = sorted(pd.unique(cap["run"]), key=str)
    classes = sorted(pd.unique(cap["class"]), key=str)
    panels = [(r, c) for c in classes for r in runs]
    n_rows, n_cols = _grid(len(panels))
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(WIDTH, 3.0 * n_rows + 1.2),
        squeeze=False,
        sharey=True,
        sharex=True,
    )
    others: dict = {}
    methods = _methods(pd.unique(cap["method"]))
    em = emergence[np.isclose(emergence["threshold"].astype(float), threshold)]
    handles: dict[str, object] = {}
    n_seeds = int(cap["seed"].nunique()) if "seed" in cap else 1
    for k, (run, cls) in enumerate(panels):
        ax = axes.flat[k]
        ta = train_acc[train_acc["run"] == run]
        if not ta.empty:
            m = ta.groupby("step")["acc"].mean().sort_index()
            (h,) = ax.plot(m.index, m.to_numpy(), "--", color=METHOD_COLORS["train"], lw=1.3)
            handles.setdefault("train", h)
        c_run = cap[(cap["run"] == run) & (cap["class"] == cls)]
        em_run = em[(em["run"] == run) & (em["class"] == cls)]
        leads = []
        for method in methods:
            g = c_run[c_run["method"] == method]
            if g.empty:
                continue
            color = method_color(method, others)
            lead = _draw_method(ax, g, em_run[em_run["method"] == method], method, color,
                                threshold, handles)  # fmt: skip
            if lead is not None:
                leads.append(lead)
        head = run_labels.get(run, str(run))
        if len(classes) > 1:
            head += f", {pretty_class(cls)}"
        # one line per method, so that a panel's title never runs into its neighbour's
        _finish_panel(ax, head + "".join(f"\nlead, {text}" for text in leads), threshold, logx)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("training step" + (" (log scale)" if logx else ""), fontsize=FONT)
    for ax in axes[:, 0]:
        ax.set_ylabel("joint accuracy", fontsize=FONT)
    if "train" in handles:
        handles["train"].set_label("training classes (mean)")
    band = "binomial interval" + (" (union over seeds)" if n_seeds > 1 else "")
    extra = [
        Line2D([], [], color="0.4", lw=0.9, ls="-.", label=f"threshold {threshold:g}"),
        Line2D([], [], ls="none", marker="v", color="0.3", ms=7, label="elicited lower bound ≥ it"),
        Line2D(
            [], [], ls="none", marker="o", mfc="white", mec="0.3", ms=7,
            label="naive upper bound ≥ it",
        ),  # fmt: skip
        Patch(color="0.5", alpha=0.3, label=band),
    ]  # fmt: skip
    order = ["train"] + [m for m in methods if m in handles]
    fig.legend(
        handles=[handles[k] for k in order if k in handles] + extra,
        loc="lower center",
        ncol=3,
        fontsize=FONT,
        frameon=False,
    )
    seeds = f"mean of {n_seeds} seeds" if n_seeds > 1 else "one seed"
    fig.suptitle(f"{title} ({seeds})", fontsize=FONT + 1.5)
    n_leg = len(order) + len(extra)
    legend_in = 0.25 * -(-n_leg // 3) + 0.1  # legend rows at the bottom, inches
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    save_figure(fig, path, pdf=True)


def _draw_method(ax, g: pd.DataFrame, e: pd.DataFrame, method: str, color, threshold: float,
                 handles: dict) -> str | None:  # fmt: skip
    """One method's curve in a panel: the mean over seeds, the seeds' binomial band, and a
    marker per seed where it crosses ``threshold`` (naive prompting: its upper bound, open
    circle; an elicitation: its lower bound, filled triangle). Returns the elicitation's lead
    for the panel's title ("<method> <lead>" or "<method> none"), None for naive prompting."""
    s, mean, lo, hi = _seed_curve(g)
    if lo is not None:
        ax.fill_between(s, lo, hi, color=color, alpha=0.15, lw=0)
    (h,) = ax.plot(s, mean, "-", color=color, lw=2.0 if method == "naive" else 1.6)
    n_set = int(g["n_settings"].max()) if "n_settings" in g else 1
    lab = METHOD_LABELS.get(method, str(method))
    handles.setdefault(method, h).set_label(
        lab + (f" (best of {n_set} doses)" if n_set > 1 else "")
    )
    lead = None
    if method == "naive":
        col = "naive_step"
        ok = e["naive_censored"].astype(bool) == False  # noqa: E712
        marker = {"marker": "o", "mfc": "white", "mec": color, "mew": 1.5}
    else:
        col, ok = "emergence_step", ~e["censored"].astype(bool)
        marker = {"marker": "v", "mfc": color, "mec": color}
        if not e.empty:
            text = lead_label(e)
            lead = f"{method} {text}" if text else f"{method} none"
    for step in e.loc[ok, col].astype(float):
        ax.plot([step], [threshold], ls="none", ms=7, zorder=6, **marker)
    return lead


def _finish_panel(ax, title: str, threshold: float, logx: bool) -> None:
    """A capability panel's threshold line, axes and title."""
    ax.axhline(threshold, color="0.4", lw=0.9, ls="-.", zorder=1)
    if logx:
        log_steps(ax)
    ax.set_ylim(-0.02, 1.04)
    ax.grid(True, alpha=0.25)
    ax.tick_params(labelsize=FONT)
    ax.set_title(title, fontsize=FONT, loc="left")


# --------------------------------------------------------------------------------------------
# dose-response
# --------------------------------------------------------------------------------------------


def pick_checkpoints(steps: Sequence[float], turn: float | None) -> dict[str, float]:
    """Early (a quarter of the checkpoints in), at the turn (else the middle checkpoint), late
    (the last): the checkpoints a dose-response panel is drawn at."""
    steps = np.sort(np.asarray(steps, float))
    mid = steps[len(steps) // 2]
    at = (
        steps[int(np.argmin(np.abs(steps - turn)))]
        if turn is not None and np.isfinite(turn)
        else mid
    )
    return {
        "early": float(steps[len(steps) // 4]),
        "at the turn" if turn is not None and np.isfinite(turn) else "middle": float(at),
        "late": float(steps[-1]),
    }


def _pooled(g: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Per dose: pooled share over seeds with its 95% Wilson interval."""
    k = np.round(g["acc"] * g["count"])
    agg = g.assign(k=k).groupby("setting").agg(k=("k", "sum"), n=("count", "sum")).sort_index()
    lo, hi = wilson_interval(agg["k"].to_numpy(), agg["n"].to_numpy())
    share = agg["k"].to_numpy() / agg["n"].to_numpy()
    return agg.index.to_numpy(float), share, lo, hi


CONCEPT_STYLE = {"joint": ("k", "-", "o")}
CONCEPT_FALLBACK = [("tab:blue", "--", "s"), ("tab:orange", ":", "^"), ("tab:green", "-.", "D")]


def dose_response_figure(
    dose: pd.DataFrame,
    turns: Mapping[str, float | None],
    path: str | Path,
    *,
    method: str,
    threshold: float = 0.8,
    run_labels: Mapping[str, str] | None = None,
) -> bool:
    """Per-concept accuracy against dose for one method: one row per run, one column per
    checkpoint (:func:`pick_checkpoints`: early, at the run's turn, late), and a last column with
    the best dose against step (one marker per seed). Shares are pooled over seeds with their 95%
    Wilson intervals. A reader sees the dose at which pushing one concept starts breaking the
    other. ``dose``: :func:`analysis.capability.dose_response`. Returns False (draws nothing)
    when the method has fewer than two doses."""
    run_labels = run_labels or {}
    d = dose[dose["method"] == method]
    if d["setting"].nunique() < 2:
        return False
    runs = sorted(pd.unique(d["run"]), key=str)
    concepts = [c for c in pd.unique(d["concept"]) if c != "joint"] + ["joint"]
    style = {
        c: CONCEPT_STYLE.get(c, CONCEPT_FALLBACK[i % len(CONCEPT_FALLBACK)])
        for i, c in enumerate(concepts)
    }
    doses = np.sort(d["setting"].unique())
    logd = doses.min() > 0 and doses.max() / doses.min() >= 4
    fig, axes = plt.subplots(len(runs), 4, figsize=(WIDTH, 2.3 * len(runs) + 1.2), squeeze=False)
    for i, run in enumerate(runs):
        g = d[d["run"] == run]
        cls = sorted(pd.unique(g["class"]), key=str)[0]  # the first held-out class
        g = g[g["class"] == cls]
        picks = pick_checkpoints(g["step"].unique(), turns.get(run))
        for j, (name, step) in enumerate(picks.items()):
            ax = axes[i, j]
            at = g[np.isclose(g["step"], step)]
            for c in concepts:
                x, y, lo, hi = _pooled(at[at["concept"] == c])
                color, ls, mk = style[c]
                ax.errorbar(
                    x, y, yerr=[y - lo, hi - y], color=color, ls=ls, marker=mk, ms=4,
                    lw=1.4, capsize=2, label=c if c != "joint" else "joint (both right)",
                )  # fmt: skip
            ax.axhline(threshold, color="0.5", lw=0.8, ls="-.")
            if logd:
                ax.set_xscale("log", base=2)
            ax.set_xticks(doses, [f"{v:g}" for v in doses])
            ax.minorticks_off()
            ax.set_ylim(-0.03, 1.05)
            if j:
                ax.tick_params(labelleft=False)
            ax.grid(True, alpha=0.25)
            ax.tick_params(labelsize=FONT)
            ax.set_title(f"{name}: step {step:,.0f}", fontsize=FONT)
            if i == len(runs) - 1:
                ax.set_xlabel("dose", fontsize=FONT)
        ax = axes[i, 3]
        best = g[g["concept"] == "joint"]
        idx = best.groupby(["seed", "step"])["acc"].idxmax()
        b = best.loc[idx]
        for k, (seed, bs) in enumerate(b.groupby("seed")):
            ax.plot(bs["step"], bs["setting"], ls="none", marker="os^D"[k % 4], ms=4, mfc="none",
                    color="0.2", label=f"seed {seed}")  # fmt: skip
        log_steps(ax)
        if logd:
            ax.set_yscale("log", base=2)
        ax.set_yticks(doses, [f"{v:g}" for v in doses])
        ax.yaxis.set_tick_params(labelleft=True)
        ax.minorticks_off()
        ax.set_ylim(doses.min() / (1.4 if logd else 1) - (0 if logd else 0.1), doses.max() * 1.4)
        ax.grid(True, alpha=0.25)
        ax.tick_params(labelsize=FONT)
        ax.set_title("best dose", fontsize=FONT)
        if i == len(runs) - 1:
            ax.set_xlabel("training step (log)", fontsize=FONT)
        axes[i, 0].set_ylabel(f"{run_labels.get(run, run)}\naccuracy", fontsize=FONT)
    h, lab = axes[0, 0].get_legend_handles_labels()
    h2, lab2 = axes[0, 3].get_legend_handles_labels()
    fig.legend(h + h2, lab + lab2, loc="lower center", ncol=min(6, len(h) + len(h2)),
               fontsize=FONT, frameon=False)  # fmt: skip
    label = METHOD_LABELS.get(method, method)
    fig.suptitle(
        f"Dose-response of {label}: accuracy per concept against dose "
        f"(pooled over seeds, 95% Wilson intervals)",
        fontsize=FONT + 1,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save_figure(fig, path, pdf=True)
    return True
