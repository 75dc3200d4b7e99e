"""Learning time against concept signal (docs/method.md §5.3)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import transforms as mtransforms  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from conceptspace.figures.style import (  # noqa: E402
    fmt_steps,
    save_figure,
    threshold_style,
)

BUDGET_STYLE = {"color": "0.5", "ls": ":"}  # the training budget's line in the T panels

# --------------------------------------------------------------------------------------------
# 2. learning time vs concept signal
# --------------------------------------------------------------------------------------------


def _bound_arrow(ax, x: float, y_from: float, y_to: float, color, transform) -> None:
    """An arrow from ``y_from`` to ``y_to`` at ``x``: the value is only a bound that way."""
    ax.annotate(
        "",
        xy=(x, y_to),
        xytext=(x, y_from),
        xycoords=transform,
        textcoords=transform,
        arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.4},
    )


def _censored_points(ax, x, y, cens, marker, color, transform, label=None) -> None:
    """Measured points filled, censored ones (a bound, not a value) open."""
    ax.plot(x[~cens], y[~cens], marker, color=color, ms=7, ls="", label=label, transform=transform)
    ax.plot(
        x[cens], y[cens], marker, mfc="white", mec=color, mew=1.6, ms=8, ls="", transform=transform
    )


def _fit_for(fits: Mapping, concept: str, thr: float):
    for key in ((concept, thr), (concept, float(thr)), f"{concept}@{thr:g}"):
        if key in fits:
            return fits[key]
    return None


def learning_time_figure(
    lt_summary: pd.DataFrame,
    run_info: pd.DataFrame,
    fits: Mapping,
    path: str | Path,
    *,
    fit_threshold: float | None = None,
    title: str = "Learning time of the held-out class vs concept signal",
) -> None:
    """Held-out learning time (top) and speed 1/T (bottom) against measured concept signal,
    one column per concept (docs/method.md §5.3).

    :param lt_summary: :func:`analysis.summarize_over_seeds` output; rows of group ``held_out``
        are the data, group ``train`` is drawn faintly for reference.
    :param run_info: one row per run with ``run`` and ``signal_<concept>`` for each concept.
    :param fits: ``fits[concept]`` = :func:`analysis.fit_inverse_time` dict (slope, intercept,
        r2[, n]) drawn as one line; per-threshold fits may instead be keyed ``(concept,
        threshold)`` and are drawn in that threshold's colour.
    :param fit_threshold: the threshold a plain ``fits[concept]`` was fitted at (legend only).
    """
    info = run_info.drop_duplicates("run").set_index("run")
    concepts = _swept_concepts(lt_summary, info)
    n_seeds = int(lt_summary["n_seeds"].max()) if "n_seeds" in lt_summary else 1
    thresholds = sorted(float(t) for t in pd.unique(lt_summary["threshold"]))
    n = len(concepts)
    fig, axes = plt.subplots(
        2, n, figsize=(max(6.0, 5.0 * n), 9.0), squeeze=False, gridspec_kw={"hspace": 0.5}
    )
    plain_fits = not any(isinstance(k, tuple) or "@" in str(k) for k in fits)

    for j, concept in enumerate(concepts):
        ax_t, ax_v = axes[0, j], axes[1, j]
        col = f"signal_{concept}"
        d = lt_summary[lt_summary["concept"] == concept].copy()
        d["signal"] = d["run"].map(info[col]) if col in info.columns else np.nan
        d = d.dropna(subset=["signal"])
        x_all = d["signal"].to_numpy(float)
        for i, thr in enumerate(thresholds):
            # thresholds side by side (a few points apart) so equal values stay visible
            dx = 4.0 * (i - (len(thresholds) - 1) / 2)
            shift = [
                mtransforms.offset_copy(ax.transData, fig=fig, x=dx, y=0, units="points")
                for ax in (ax_t, ax_v)
            ]
            style = threshold_style(thr, i)
            rows = d[np.isclose(d["threshold"], thr)]
            _draw_training_reference(ax_t, rows[rows["group"] == "train"], thr, style)
            held_out = rows[rows["group"] == "held_out"].sort_values("signal")
            if held_out.empty:
                continue
            _draw_held_out(ax_t, ax_v, shift, held_out, thr, i, style, n_seeds)
            fit = _fit_for(fits, concept, thr)
            if fit is not None:
                _draw_fit(ax_v, fit, x_all, style[0], f"fit θ={thr:g}")

        if plain_fits and concept in fits:
            lab = f"{concept}: linear fit" + (
                f" (θ={fit_threshold:g})" if fit_threshold is not None else ""
            )
            _draw_fit(ax_v, fits[concept], x_all, "black", lab)
        _label_column(ax_t, ax_v, d, concept)

    handles, labels = _legend_entries(axes, lt_summary["budget"].dropna())
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    spread = f"mean ± std over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    fig.suptitle(f"{title}  ({spread})", fontsize=12)
    rows = -(-len(handles) // 2)
    fig.subplots_adjust(
        left=0.09, right=0.98, top=0.88, hspace=0.5, wspace=0.3,
        bottom=(0.25 * rows + 0.75) / fig.get_figheight(),
    )  # fmt: skip
    save_figure(fig, path, pdf=True)


def _swept_concepts(lt_summary: pd.DataFrame, info: pd.DataFrame) -> list[str]:
    """The concepts to draw a column for: those with a measured signal, and of them those whose
    signal varies over the runs (one that is not swept gives a degenerate column)."""
    concepts = [
        c for c in pd.unique(lt_summary["concept"]) if f"signal_{c}" in info.columns
    ] or list(pd.unique(lt_summary["concept"]))
    varied = [c for c in concepts if f"signal_{c}" in info and info[f"signal_{c}"].nunique() > 1]
    return varied or concepts


def _draw_training_reference(ax_t, train: pd.DataFrame, thr: float, style) -> None:
    """The training classes' learning time at one threshold, faint, for reference."""
    if train.empty:
        return
    color, _, marker = style
    train = train.sort_values("signal")
    ax_t.plot(
        train["signal"],
        train["learning_time_mean"],
        ls="--",
        lw=1.0,
        color=color,
        alpha=0.35,
        marker=marker,
        ms=4,
        mfc="none",
        label=f"training classes, θ={thr:g}",
    )


def _draw_held_out(ax_t, ax_v, shift, ho: pd.DataFrame, thr: float, i: int, style, n_seeds: int):
    """The held-out class at one threshold: learning time T on ``ax_t`` and speed 1/T on
    ``ax_v``, each with its spread over seeds and an arrow at a censored (bound) value.
    ``shift``: the two axes' data transforms moved sideways by this threshold's offset."""
    color, ls, marker = style
    tr_t, tr_v = shift
    x = ho["signal"].to_numpy(float)
    t = ho["learning_time_mean"].to_numpy(float)
    # a spread over seeds only where there are several seeds
    sd = np.nan_to_num(ho["learning_time_std"].to_numpy(float)) * (n_seeds > 1)
    cens = ho["mean_is_lower_bound"].to_numpy(bool)
    ncens = ho["n_censored"].to_numpy(int)
    nseed = ho["n_seeds"].to_numpy(int) if "n_seeds" in ho else np.full(len(ho), -1)
    ax_t.plot(x, t, ls=ls, color=color, lw=1.8, label=f"held-out class, θ={thr:g}")
    ax_t.errorbar(
        x, t, yerr=sd, fmt="none", ecolor=color, elinewidth=1.2, capsize=3, transform=tr_t
    )
    _censored_points(ax_t, x, t, cens, marker, color, tr_t)
    _register_extent(ax_t, x, np.where(t - sd > 0, t - sd, t), t + sd)  # positive: log axis
    for xi, ti, k, m in zip(x[cens], t[cens], ncens[cens], nseed[cens], strict=True):
        _bound_arrow(ax_t, xi, ti * 1.06, ti * 1.5, color, tr_t)
        if m > 1 and k < m:  # short count beside the arrow: k of m seeds censored
            ax_t.annotate(
                f"{k}/{m}",
                (xi, ti * 1.5),
                xycoords=tr_t,
                xytext=(-4 if i == 0 else 4, 0),
                textcoords="offset points",
                fontsize=8.5,
                color=color,
                ha="right" if i == 0 else "left",
                va="bottom",
            )
    # speed 1/T (x1000); a censored T gives an upper bound on 1/T
    v = 1000.0 / t
    v_lo = 1000.0 / (t + sd)
    v_hi = 1000.0 / np.maximum(t - sd, 1e-9)
    ax_v.errorbar(
        x, v, yerr=[v - v_lo, v_hi - v], fmt="none", ecolor=color, elinewidth=1, capsize=3,
        transform=tr_v,
    )  # fmt: skip
    _censored_points(ax_v, x, v, cens, marker, color, tr_v, label=f"θ={thr:g}")
    for xi, vi in zip(x[cens], v[cens], strict=True):
        _bound_arrow(ax_v, xi, vi * 0.95, vi * 0.55, color, tr_v)
    _register_extent(ax_v, x, v_lo, v_hi)


def _register_extent(ax, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Offset transforms do not autoscale: register the extent of what was drawn through one
    (the points at ``x`` and their spread from ``lo`` to ``hi``)."""
    ax.update_datalim(np.column_stack([np.r_[x, x], np.r_[lo, hi]]))
    ax.autoscale_view()


def _label_column(ax_t, ax_v, d: pd.DataFrame, concept: str) -> None:
    """One concept's column: the budget line, scales, axis labels, titles and the run names on
    a top axis at their signal."""
    budgets = d["budget"].dropna().unique()
    for b in budgets:
        ax_t.axhline(b, color=BUDGET_STYLE["color"], ls=BUDGET_STYLE["ls"], lw=1)
    if len(budgets):  # named in the legend: a label here would cover a censored point
        ax_t.set_ylim(top=max(budgets) * 2.8)
    ax_t.set_yscale("log")
    ax_t.margins(x=0.15)  # room for the k/n counts beside the outermost points
    for ax in (ax_t, ax_v):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.set_xlabel(f"measured {concept} signal (pixel MSE)")
        ax.grid(True, which="major", alpha=0.3)
    runs_x = d.drop_duplicates("run")[["run", "signal"]].sort_values("signal")
    top = ax_t.secondary_xaxis("top")
    top.set_xticks(runs_x["signal"].to_numpy(float), [str(r) for r in runs_x["run"]])
    top.tick_params(labelsize=8.5, colors="0.35", rotation=30, length=2)
    ax_t.set_ylabel("learning time T (training steps, log)")
    ax_t.set_title(f"{concept}: steps until the held-out class reaches θ", fontsize=10)

    ax_v.axhline(0, color="0.6", lw=0.8)
    ax_v.margins(x=0.15)
    ax_v.set_ylabel("learning speed 1/T (per 1000 steps)")
    ax_v.set_title(f"{concept}: learning speed 1/T", fontsize=10)
    ax_v.set_xlim(ax_t.get_xlim())  # one signal axis per column: read a run straight down


def _legend_entries(axes, budgets: pd.Series) -> tuple[list, list[str]]:
    """One legend under the panels, never over the data: the top-left panel's entries, each
    speed panel's fits once, the open-marker key and the budget's line."""
    h_t, l_t = axes[0, 0].get_legend_handles_labels()
    h_v, l_v = [], []
    for ax in axes[1]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in l_v and lab not in l_t and not lab.startswith("θ="):
                h_v.append(h)
                l_v.append(lab)
    open_marker = plt.Line2D(
        [], [], marker="o", mfc="white", mec="0.3", ls="", ms=7,
        label="open marker ↑: not reached within the budget (a lower bound; k/n seeds)",
    )  # fmt: skip
    keys = [open_marker]
    if len(budgets):
        label = f"budget ({fmt_steps(budgets.max())} steps): the last checkpoint"
        keys.append(plt.Line2D([], [], lw=1, label=label, **BUDGET_STYLE))
    return h_t + h_v + keys, l_t + l_v + [k.get_label() for k in keys]


def _draw_fit(ax, fit: Mapping, x: np.ndarray, color, label: str) -> None:
    slope, intercept = fit.get("slope", np.nan), fit.get("intercept", np.nan)
    r2 = fit.get("r2", np.nan)
    if x.size == 0 or not (np.isfinite(slope) and np.isfinite(intercept)):
        ax.plot([], [], color=color, lw=1.4, label=f"{label}: not enough points")
        return
    lo, hi = float(np.min(x)), float(np.max(x))
    pad = 0.05 * (hi - lo) if hi > lo else 0.05
    xs = np.linspace(lo - pad, hi + pad, 50)
    extra = f", n={fit['n']}" if "n" in fit else ""
    if fit.get("n") is not None and fit["n"] < 3:  # a line through two points says nothing
        ax.plot([], [], color=color, lw=1.4, label=f"{label}: not drawn (n={fit['n']} < 3)")
        return
    ax.plot(
        xs,
        1000.0 * (slope * xs + intercept),
        color=color,
        lw=1.4,
        alpha=0.85,
        label=f"{label}: R²={r2:.2f}{extra}",
    )
