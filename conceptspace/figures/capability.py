"""Hidden capabilities: capability under each elicitation method against naive prompting
(docs/method.md §6).
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

from conceptspace.figures.style import (  # noqa: E402
    METHOD_COLORS,
    METHOD_LABELS,
    log_steps,
    method_color,
    pretty_class,
    save_figure,
    seed_band,
)

# --------------------------------------------------------------------------------------------
# 3. hidden capabilities: capability vs naive prompting
# --------------------------------------------------------------------------------------------


def capability_figure(
    cap: pd.DataFrame,
    train_acc: pd.DataFrame,
    emergence: pd.DataFrame,
    path: str | Path,
    *,
    threshold: float = 0.8,
    logx: bool = True,
    run_labels: Mapping[str, str] | None = None,
    title: str = "Hidden capabilities: elicited vs naively prompted accuracy of the held-out class",
) -> None:
    """Capability curves against training step, one panel per run (rows: held-out classes when
    there are several) (docs/method.md §6.2).

    :param cap: :func:`analysis.capability_curves` output (``run, seed, step, method, class,
        capability, n_settings``); drawn as the mean over seeds with a min–max band.
    :param train_acc: ``run, seed, step, acc``: mean training-class accuracy (dashed blue).
    :param emergence: :func:`analysis.emergence` output; the rows at ``threshold`` give the
        dotted vertical lines and the lead annotations. With per-seed rows every seed's line is
        drawn and the lead shown is the mean over seeds.
    """
    run_labels = run_labels or {}
    runs = sorted(pd.unique(cap["run"]), key=str)
    classes = sorted(pd.unique(cap["class"]), key=str)
    n_rows, n_cols = len(classes), len(runs)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(4.6 * n_cols + 0.4, 3.9 * n_rows + 0.9),
        squeeze=False,
        sharey=True,
    )
    others: dict = {}
    methods = list(pd.unique(cap["method"]))
    methods.sort(
        key=lambda m: (
            m != "naive",
            list(METHOD_COLORS).index(m) if m in METHOD_COLORS else 99,
            str(m),
        )
    )
    em = emergence[np.isclose(emergence["threshold"].astype(float), threshold)]
    handles: dict[str, Line2D] = {}

    for ci, cls in enumerate(classes):
        for ri, run in enumerate(runs):
            ax = axes[ci, ri]
            ta = train_acc[train_acc["run"] == run]
            if not ta.empty:
                s, m, lo, hi = seed_band(ta, "acc")
                ax.fill_between(s, lo, hi, color=METHOD_COLORS["train"], alpha=0.12, lw=0)
                (h,) = ax.plot(s, m, "--", color=METHOD_COLORS["train"], lw=1.6)
                handles.setdefault("train", h).set_label("training classes (mean)")
            c_run = cap[(cap["run"] == run) & (cap["class"] == cls)]
            em_run = em[(em["run"] == run) & (em["class"] == cls)]
            leads = []
            for method in methods:
                g = c_run[c_run["method"] == method]
                if g.empty:
                    continue
                color = method_color(method, others)
                s, m, lo, hi = seed_band(g, "capability")
                ax.fill_between(s, lo, hi, color=color, alpha=0.18, lw=0)
                lw = 2.0 if method == "naive" else 1.7
                (h,) = ax.plot(s, m, "-", color=color, lw=lw)
                n_set = int(g["n_settings"].max()) if "n_settings" in g else 1
                lab = METHOD_LABELS.get(method, str(method))
                if n_set > 1:
                    lab += f" (best of {n_set})"
                handles.setdefault(method, h).set_label(lab)
                e = em_run[em_run["method"] == method]
                reached = e[~e["censored"].astype(bool)]
                for step in pd.unique(reached["emergence_step"]):
                    ax.axvline(step, color=color, ls=":", lw=1.4, zorder=1)
                if method != "naive" and not e.empty:
                    leads.append((method, color, e))
            ax.axhline(threshold, color="0.35", lw=0.9, ls="-.", zorder=1)
            _annotate_leads(ax, leads, em_run)
            if logx:
                log_steps(ax)
            ax.set_ylim(-0.02, 1.04)
            ax.grid(True, alpha=0.25)
            head = run_labels.get(run, str(run))
            if n_rows > 1:
                head += f" — {pretty_class(cls)}"
            ax.set_title(head, fontsize=10)
            if ci == n_rows - 1:
                ax.set_xlabel("training step" + (" (log scale)" if logx else ""))
            if ri == 0:
                lab = "accuracy (P(target) of generated images)"
                if n_rows > 1:
                    lab = f"{pretty_class(cls)}\n" + lab
                ax.set_ylabel(lab)

    thr_handle = Line2D([], [], color="0.35", lw=0.9, ls="-.", label=f"threshold {threshold:g}")
    em_handle = Line2D([], [], color="0.35", lw=1.4, ls=":", label="emergence step (dotted)")
    order = ["train"] + [m for m in methods if m in handles]
    fig.legend(
        handles=[handles[k] for k in order if k in handles] + [thr_handle, em_handle],
        loc="lower center",
        ncol=min(4, len(order) + 2),
        fontsize=8.5,
        frameon=False,
        bbox_to_anchor=(0.5, -0.01),
    )
    fig.suptitle(title + "\n(mean over seeds, band: min–max over seeds)", fontsize=11)
    fig.tight_layout(rect=(0, 0.1 if len(order) + 2 > 4 else 0.06, 1, 1))
    save_figure(fig, path, pdf=True)


def _annotate_leads(ax, leads: list, em_run: pd.DataFrame) -> None:
    """Text box (lower right) with each method's lead over naive prompting, and a double arrow
    from the method's emergence step to the naive one."""
    lines = []
    naive = em_run[em_run["method"] == "naive"]
    naive_cens = bool(naive["censored"].astype(bool).all()) if not naive.empty else True
    for k, (method, color, e) in enumerate(leads):
        short = {"overprompt": "overprompt", "linear": "linear"}.get(method, str(method))
        cens = e["censored"].astype(bool).to_numpy()
        if cens.all():
            lines.append((f"{short}: not reached", color))
            continue
        lead = e["lead_steps"].astype(float)
        if lead.notna().sum() == 0:
            lines.append((f"{short}: emerges, no naive curve", color))
            continue
        lb = bool(e.get("lead_is_lower_bound", pd.Series([False])).astype(bool).any())
        mean_lead = float(lead.mean())
        if mean_lead >= 0:
            amount = f"≥ {mean_lead:,.0f}" if lb else f"+{mean_lead:,.0f}"
            lines.append((f"{short}: {amount} steps earlier", color))
        else:
            lines.append((f"{short}: {-mean_lead:,.0f} steps later", color))
        t_m = float(e.loc[~e["censored"].astype(bool), "emergence_step"].mean())
        t_n = float(e["naive_step"].astype(float).mean())
        if np.isfinite(t_m) and np.isfinite(t_n) and t_n != t_m:
            y = 0.06 + 0.07 * k
            ax.annotate(
                "",
                xy=(t_n, y),
                xytext=(t_m, y),
                arrowprops={"arrowstyle": "<|-|>" if not lb else "<|-", "color": color, "lw": 1.3},
                zorder=6,
            )
    if lines:
        lines.insert(0, ("lead over naive prompting:", "0.25"))
    if naive_cens and not naive.empty:
        lines.append(("naive: not reached (lead ≥)", METHOD_COLORS["naive"]))
    for k, (text, color) in enumerate(reversed(lines)):
        ax.text(
            0.98,
            0.30 + 0.075 * k,
            text,
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color=color,
            fontweight="bold",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            zorder=8,
        )
