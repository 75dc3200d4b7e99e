"""Figure of the verdicts across seeds: drawing only, tables in, PNG (+ PDF) out.

Takes the frames of :func:`conceptspace.analysis.across_seeds.summarize` (``points`` and
``by_separation``) and, optionally, its metrics dict for the annotations. Nothing is measured
here: the medians and their intervals come from the analysis.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from conceptspace.figures.style import save_figure  # noqa: E402


def _bools(s: pd.Series) -> np.ndarray:
    return s.map(lambda v: bool(v) if v is not None and v == v else False).to_numpy(bool)


def _jitter(seps: np.ndarray, n_seeds: int) -> np.ndarray:
    """Horizontal offsets of the seeds (data units), spread evenly over 0.4 of the smallest gap
    between separations, so that equal values of different seeds stay visible."""
    u = np.unique(seps)
    gap = np.min(np.diff(u)) if u.size > 1 else 0.1
    if n_seeds < 2:
        return np.zeros(1)
    return np.linspace(-0.2 * gap, 0.2 * gap, n_seeds)


def _steps_axis(ax) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _median_band(ax, by_sep: pd.DataFrame, name: str, color, label: str, ls="-") -> None:
    """Median over seeds (filled; open where it is a lower bound) and its interval band."""
    x = by_sep["sep"].to_numpy(float)
    med = by_sep[f"{name}_median"].to_numpy(float)
    lo = by_sep[f"{name}_ci_low"].to_numpy(float)
    hi = by_sep[f"{name}_ci_high"].to_numpy(float)
    bound = _bools(by_sep[f"{name}_median_is_lower_bound"])
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        # NaN (no interval: one seed there) breaks the band instead of bridging it; the bars
        # keep an interval visible where both neighbours have none
        ax.fill_between(x, lo, hi, color=color, alpha=0.16, lw=0, zorder=1)
        ax.vlines(x[ok], lo[ok], hi[ok], color=color, lw=1.0, alpha=0.5, zorder=1)
    fin = np.isfinite(med)
    ax.plot(x[fin], med[fin], ls=ls, color=color, lw=2.4, zorder=4, label=label)
    ax.plot(x[fin & ~bound], med[fin & ~bound], "s", color=color, ms=6, zorder=5)
    ax.plot(x[fin & bound], med[fin & bound], "s", mfc="white", mec=color, mew=1.6, ms=7, zorder=5)


def across_seeds_figure(
    points: pd.DataFrame,
    by_separation: pd.DataFrame,
    path: str | Path,
    *,
    metrics: Mapping | None = None,
    concept: str = "color",
    title: str | None = None,
) -> None:
    """Held-out learning time (left) and hidden-capability lead (right) against separation.

    Every seed is drawn thin (one colour per seed; filled markers measured, open markers
    censored: drawn at the budget, a lower bound); the median over seeds is the thick black
    line with its bootstrap interval as a band where there are three seeds or more (open
    square: the median is a lower bound), the training classes' median dashed grey. Right: each
    seed's best lead of an elicitation method over naive prompting, read with the binomial
    intervals (docs/method.md §6): a filled circle a lead measured inside the budget, an upward
    triangle a lead against a naive prompt that never reached the threshold (a lower bound at
    the budget's end); seeds without a lead are not drawn, only counted at the top ("k/n
    ahead"). One marker, one meaning.

    :param points: ``frames["points"]`` of ``summarize``: ``run, seed, sep, t_held_out,
        held_out_censored, budget`` [, ``lead_steps, lead_is_lower_bound``].
    :param by_separation: ``frames["by_separation"]``: ``sep, held_out_median, held_out_ci_low,
        held_out_ci_high, held_out_median_is_lower_bound`` [, ``train_*``, ``lead_*``,
        ``n_ahead``].
    :param metrics: the metrics of ``summarize``; adds the signal-order test and the k-of-n
        counts to the titles.
    """
    seeds = sorted(pd.unique(points["seed"]))
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(seeds)}
    offsets = dict(zip(seeds, _jitter(points["sep"].to_numpy(float), len(seeds)), strict=True))
    by_sep = by_separation.sort_values("sep")
    has_lead = "lead_steps" in points and "lead_median" in by_sep
    fig, axes = plt.subplots(
        1, 2 if has_lead else 1, figsize=(12.0 if has_lead else 6.6, 6.0), squeeze=False
    )
    args = (points, by_sep, seeds, colors, offsets, concept, metrics)
    _learning_time_panel(axes[0, 0], *args)
    if has_lead:
        _lead_panel(axes[0, 1], *args, xlim=axes[0, 0].get_xlim())

    fig.suptitle(title or f"Across seeds: learning of the held-out class vs {concept} separation")
    fig.tight_layout()
    save_figure(fig, path, pdf=True)


def _bootstrap_note(by_sep: pd.DataFrame) -> str:
    """The legend's note on the median's band: a bootstrap interval needs three seeds."""
    return ", 95% bootstrap" if by_sep["n_seeds"].max() >= 3 else ""


def _learning_time_panel(ax, points, by_sep, seeds, colors, offsets, concept, metrics) -> None:
    """Left: each seed's held-out learning time against separation (open markers: censored, at
    the budget), the training and held-out medians with their bands, and the signal-order
    test in the title."""
    budget = float(points["budget"].max())
    ax.axhline(budget, color="0.5", ls=":", lw=1)
    ax.annotate(
        f"budget ({budget:,.0f} steps)",
        (0.99, budget),
        xycoords=("axes fraction", "data"),
        xytext=(0, 3),
        textcoords="offset points",
        fontsize=9,
        color="0.4",
        ha="right",
        va="bottom",
    )
    for s in seeds:
        g = points[points["seed"] == s].sort_values("sep")
        x = g["sep"].to_numpy(float) + offsets[s]
        t = g["t_held_out"].to_numpy(float)
        cens = _bools(g["held_out_censored"])
        ax.plot(x, t, "-", color=colors[s], lw=0.9, alpha=0.55, zorder=2)
        ax.plot(x[~cens], t[~cens], "o", color=colors[s], ms=5, alpha=0.85, zorder=3)
        ax.plot(x[cens], t[cens], "o", mfc="white", mec=colors[s], mew=1.3, ms=6, zorder=3)
    if "train_median" in by_sep:
        _median_band(ax, by_sep, "train", "0.55", "training classes: median", ls="--")
    boot = _bootstrap_note(by_sep)
    _median_band(ax, by_sep, "held_out", "black", f"held-out class: median{boot}")
    _steps_axis(ax)
    ax.set_ylim(top=budget * 1.6)
    ax.set_xlabel(f"{concept} separation Δ{concept}")
    ax.set_ylabel("learning time (training steps, log)")
    ax.grid(True, which="major", alpha=0.3)
    seed_handles = [
        Line2D([], [], color=colors[s], marker="o", lw=0.9, ms=5, label=f"seed {s}") for s in seeds
    ]
    extra = [
        Line2D([], [], color="0.3", marker="o", mfc="white", ls="", label="not reached (≥ budget)")
    ]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(
        handles=handles + seed_handles + extra,
        fontsize=9,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=3,
        frameon=False,
    )
    head = f"held-out {concept} learning time, {len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    if metrics is not None:
        so = metrics["phenomena"]["signal_order"]
        pooled = so.get("pooled", {})
        d, p = pooled.get("d"), pooled.get("p_value")
        stat = "" if d is None or p is None else f"Somers' D {d:+.2f}, one-sided p {p:.3g}; "
        head += f"\n{stat}monotone in {so['holds_in']} of {so['n']} seeds"
    ax.set_title(head, fontsize=10)


def _lead_panel(ax, points, by_sep, seeds, colors, offsets, concept, metrics, xlim) -> None:
    """Right: each seed's best lead of an elicitation method over naive prompting (a filled
    circle measured inside the budget, a triangle a lower bound), the median lead with its
    band, and the count of seeds ahead at the top of each separation."""
    boot = _bootstrap_note(by_sep)
    ax.axhline(0, color="0.5", lw=0.9)
    for s in seeds:
        g = points[points["seed"] == s].sort_values("sep")
        x = g["sep"].to_numpy(float) + offsets[s]
        v = g["lead_steps"].astype(float).to_numpy()
        bound = (
            _bools(g["lead_is_lower_bound"])
            if "lead_is_lower_bound" in g
            else np.zeros(len(g), bool)
        )
        ok = np.isfinite(v)
        ax.plot(x[ok & ~bound], v[ok & ~bound], "o", color=colors[s], ms=6, alpha=0.85)
        ax.plot(x[ok & bound], v[ok & bound], "^", color=colors[s], ms=7, alpha=0.85)
    _median_band(ax, by_sep, "lead", "black", f"median lead{boot}")
    if "n_ahead" in by_sep:
        for r in by_sep.itertuples():
            ax.annotate(
                f"{r.n_ahead}/{r.n_seeds} ahead",
                (r.sep, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(0, -4),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=9,
                color="0.3",
            )
    ax.set_xlim(xlim)  # every separation, with a lead or not
    ax.set_xlabel(f"{concept} separation Δ{concept}")
    ax.set_ylabel("lead over naive prompting (steps)")
    ax.grid(True, which="major", alpha=0.3)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo - 0.08 * (hi - lo), hi + 0.12 * (hi - lo))
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(
        handles=handles
        + [
            Line2D([], [], color="0.3", marker="o", ls="", label="lead inside the budget"),
            Line2D(
                [],
                [],
                color="0.3",
                marker="^",
                ls="",
                label="≥ lead (naive never reached)",
            ),  # fmt: skip
        ],
        fontsize=9,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=4,
        frameon=False,
    )
    head = "best elicitation lead over naive prompting, per seed"
    if metrics is not None:
        hc = metrics["phenomena"]["hidden_capability"]
        head += f"\n≥ 1 checkpoint ahead in {hc['holds_in']} of {hc['n']} seeds"
    head += "\n(top: seeds ahead; seeds without a lead not drawn)"
    ax.set_title(head, fontsize=10)
