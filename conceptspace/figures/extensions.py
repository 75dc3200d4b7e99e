"""Figures of the experiments beyond two concepts: drawing only, data in, files out.

* :func:`cube_trajectory_figure`: 2x2x2 trajectories in 3-D with the cube's corners and the
  three 2-D projections (docs/method.md §7.1);
* :func:`distance_time_figure`: distance to the target corner at training convergence against
  the class-learned time, with its fit (§7.1);
* :func:`guidance_figure`: held-out trajectories and learning times per guidance weight (§7.3);
* :func:`dynamics_fit_figure`: measured held-out coordinates and the fitted ODE (§5.6);
* :func:`underspecification_figure`: learning time and trajectories against the masked
  fraction (§7.6).

Conventions are those of :mod:`conceptspace.figures.style` (its helpers are reused); every function
writes a PNG and a PDF next to it through :func:`conceptspace.figures.style.save_figure`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from conceptspace.figures.style import (  # noqa: E402
    SIGNAL_CMAP,
    log_steps,
    pretty_class,
    save_figure,
    sep_norm,
    value_label,
)

#: colours of held-out classes (training classes are grey)
HELD_COLORS = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]
TRAIN_COLOR = "0.45"
CONCEPT_STYLES = ["-", "--", ":", "-."]
WEIGHT_CMAP = plt.get_cmap("viridis")


def _class_colors(traj: pd.DataFrame) -> dict[str, str]:
    held = sorted(traj.loc[traj["held_out"].astype(bool), "class"].unique(), key=str)
    out = {c: HELD_COLORS[i % len(HELD_COLORS)] for i, c in enumerate(held)}
    for c in traj.loc[~traj["held_out"].astype(bool), "class"].unique():
        out[c] = TRAIN_COLOR
    return out


def cube_trajectory_figure(
    traj: pd.DataFrame,
    convergence: Mapping[str, float],
    path: str | Path,
    *,
    concepts: Sequence[str] | None = None,
    title: str = "Learning dynamics in a 2×2×2 concept space",
) -> None:
    """One row per run: the trajectories in the unit cube (3-D) and their projections on each
    pair of concepts. Training classes grey dashed, held-out classes coloured; open circle =
    start, cross = position at training convergence (``convergence[run]``, a step).

    :param traj: seed-averaged :func:`analysis.trajectories` with at least three concepts.
    """
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401, PLC0415  (registers "3d")

    concepts = list(
        concepts or [c.removeprefix("target_") for c in traj.columns if c.startswith("target_")]
    )[:3]
    if len(concepts) != 3:
        raise ValueError(f"cube_trajectory_figure needs three concepts, got {concepts}")
    runs = list(pd.unique(traj["run"]))
    colors = _class_colors(traj)
    pairs = list(itertools.combinations(range(3), 2))
    fig = plt.figure(figsize=(17.0, 4.4 * len(runs) + 0.8))
    corners = np.array(list(itertools.product((0, 1), repeat=3)), dtype=float)
    targets = traj.drop_duplicates("class")
    held_corners = {
        tuple(r[[f"target_{c}" for c in concepts]].astype(float))
        for _, r in targets[targets["held_out"].astype(bool)].iterrows()
    }

    for i, run in enumerate(runs):
        rt = traj[traj["run"] == run]
        conv = convergence.get(run)
        ax3 = fig.add_subplot(len(runs), 4, 4 * i + 1, projection="3d")
        for a, b in itertools.combinations(range(8), 2):
            if np.abs(corners[a] - corners[b]).sum() == 1:
                ax3.plot(*corners[[a, b]].T, color="0.85", lw=0.7)
        for k in corners:
            held = tuple(k) in held_corners
            ax3.scatter(*k, color="red" if held else "black", s=30, depthshade=False)
        axes2 = [fig.add_subplot(len(runs), 4, 4 * i + 2 + j) for j in range(3)]
        for cls, g in rt.groupby("class", sort=True):
            g = g.sort_values("step")
            xyz = g[concepts].to_numpy(float)
            held = bool(g["held_out"].iloc[0])
            style = dict(color=colors[cls], lw=1.8 if held else 1.0, ls="-" if held else "--")
            ax3.plot(*xyz.T, **style)
            at = None
            if conv is not None and held:
                k = int(np.argmin(np.abs(g["step"].to_numpy(float) - conv)))
                at = xyz[k]
                ax3.scatter(*at, marker="X", s=60, color=colors[cls], edgecolor="black")
            for ax, (p, q) in zip(axes2, pairs, strict=True):
                ax.plot(xyz[:, p], xyz[:, q], **style)
                if held:
                    ax.plot(xyz[0, p], xyz[0, q], "o", ms=6, mfc="white", mec="black")
                    if at is not None:
                        ax.plot(at[p], at[q], "X", ms=8, color=colors[cls], mec="black")
        ax3.set_xlabel(concepts[0], labelpad=-2)
        ax3.set_ylabel(concepts[1], labelpad=-2)
        ax3.set_zlabel(concepts[2], labelpad=-2)
        ax3.set_xlim(0, 1)
        ax3.set_ylim(0, 1)
        ax3.set_zlim(0, 1)
        ax3.tick_params(labelsize=7)
        ax3.set_title(f"{run}: 3-D", fontsize=10)
        for ax, (p, q) in zip(axes2, pairs, strict=True):
            for k in {(c[p], c[q]) for c in corners}:
                held = all(tuple(c) in held_corners for c in corners if (c[p], c[q]) == k)
                ax.plot(*k, "o", ms=8, color="red" if held else "black", clip_on=False)
            ax.plot([0, 1, 1, 0, 0], [0, 0, 1, 1, 0], color="0.85", lw=0.8, zorder=0)
            ax.set_xlim(-0.05, 1.05)
            ax.set_ylim(-0.05, 1.05)
            ax.set_aspect("equal")
            ax.set_xlabel(value_label(concepts[p]), fontsize=9)
            ax.set_ylabel(value_label(concepts[q]), fontsize=9)
            ax.set_title(f"{run}: {concepts[p]} × {concepts[q]}", fontsize=10)
            ax.grid(True, alpha=0.2)

    handles = [
        Line2D([], [], color=c, lw=1.8, label=pretty_class(n))
        for n, c in colors.items()
        if c != TRAIN_COLOR
    ]
    handles += [
        Line2D([], [], color=TRAIN_COLOR, lw=1.0, ls="--", label="training classes"),
        Line2D([], [], ls="", marker="o", mfc="white", mec="black", label="start"),
        Line2D(
            [],
            [],
            ls="",
            marker="X",
            ms=8,
            color="0.5",
            mec="black",
            label="at training convergence",
        ),
        Line2D([], [], ls="", marker="o", color="black", label="training corner"),
        Line2D([], [], ls="", marker="o", color="red", label="held-out corner"),
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=min(len(handles), 5),
        fontsize=8.5,
        frameon=False,
        bbox_to_anchor=(0.5, -0.01),
    )
    fig.suptitle(
        title + " (mean over seeds; a projected corner is red when all its classes are held out)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    save_figure(fig, path, pdf=True)


# --------------------------------------------------------------------------------------------
# 2. distance at convergence vs learning time
# --------------------------------------------------------------------------------------------


def distance_time_figure(
    table: pd.DataFrame,
    relation: Mapping,
    path: str | Path,
    *,
    title: str = "Distance to the target corner at training convergence vs class-learned time",
) -> None:
    """One point per (run, held-out class) (:func:`concept_distance.distance_to_time`),
    coloured by class, marker by run; open markers with an arrow = never learned (plotted at
    the budget, a lower bound). The line is the least-squares fit on the learned points."""
    fig, ax = plt.subplots(figsize=(7.6, 5.2))
    classes = sorted(pd.unique(table["class"]), key=str)
    runs = list(pd.unique(table["run"]))
    markers = ["o", "s", "D", "^", "v", "P", "*", "h"]
    ccol = {c: HELD_COLORS[i % len(HELD_COLORS)] for i, c in enumerate(classes)}
    rmark = {r: markers[i % len(markers)] for i, r in enumerate(runs)}
    for r in table.to_dict("records"):
        cls, cens = r["class"], bool(r["censored"])
        x, t = r["distance"], r["learning_time"]
        ax.plot(
            x, t, rmark[r["run"]], ms=9, mfc="white" if cens else ccol[cls], mec=ccol[cls], mew=1.8
        )
        if cens:
            ax.annotate(
                "",
                xy=(x, t * 1.25),
                xytext=(x, t * 1.02),
                arrowprops={"arrowstyle": "-|>", "color": ccol[cls], "lw": 1.3},
            )
    slope, intercept = relation.get("slope"), relation.get("intercept")
    x = table["distance"].to_numpy(float)
    if slope is not None and intercept is not None and np.isfinite([slope, intercept]).all():
        xs = np.linspace(x.min(), x.max(), 50)
        r2 = relation.get("r2")
        r2_txt = "n/a" if r2 is None or not np.isfinite(r2) else f"{r2:.2f}"
        ax.plot(
            xs,
            slope * xs + intercept,
            color="black",
            lw=1.3,
            label=f"least squares on learned points: R²={r2_txt}, n={relation.get('n_fit')}",
        )
    for b in pd.unique(table["budget"]):
        ax.axhline(b, color="0.5", ls=":", lw=1)
    rho = relation.get("spearman_rho")
    rho_txt = (
        "n/a (fewer than 3 points)"
        if rho is None or not np.isfinite(rho)
        else (f"{rho:+.2f} (p={relation.get('spearman_p'):.2g}, censored = latest)")
    )
    ax.set_title(f"Spearman ρ = {rho_txt}", fontsize=10)
    ax.set_xlabel("distance to target corner at training convergence (concept-space units)")
    ax.set_ylabel("class-learned time (training steps)")
    ax.set_ylim(0, float(table["budget"].max()) * 1.35)
    ax.set_xlim(0, max(float(x.max()) * 1.08, 0.1) if x.size else 1.0)
    ax.grid(True, alpha=0.3)
    handles = [
        Line2D([], [], ls="", marker="o", color=ccol[c], label=pretty_class(c)) for c in classes
    ]
    handles += [
        Line2D([], [], ls="", marker=rmark[r], color="0.4", mfc="none", label=str(r)) for r in runs
    ]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", label="not learned (≥ budget)")
    ]
    handles += ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper left", ncol=2, framealpha=0.9)
    fig.suptitle(title, fontsize=11)
    save_figure(fig, path, pdf=True)


# --------------------------------------------------------------------------------------------
# 3. classifier-free guidance
# --------------------------------------------------------------------------------------------


def guidance_figure(
    g_traj: pd.DataFrame,
    g_lt: pd.DataFrame,
    path: str | Path,
    *,
    concepts: Sequence[str] | None = None,
    title: str = "Classifier-free guidance: held-out classes per guidance weight w",
) -> None:
    """Top row, one panel per run: held-out trajectories (first two concepts) coloured by w,
    one line style per class. Bottom row: class-learned time (all concepts above threshold)
    against w, per class; open markers = not reached (budget, a lower bound)."""
    if concepts is None:
        concepts = [c for c in g_traj.columns if f"target_{c}" in g_traj.columns][:2]
    cx, cy = list(concepts)[:2]
    runs = list(pd.unique(g_traj["run"]))
    weights = np.sort(pd.unique(g_traj["w"]).astype(float))
    norm = mcolors.Normalize(
        weights.min(), weights.max() if weights.max() > weights.min() else weights.min() + 1
    )
    classes = sorted(pd.unique(g_traj["class"]), key=str)
    ls = {c: CONCEPT_STYLES[i % len(CONCEPT_STYLES)] for i, c in enumerate(classes)}
    fig, axes = plt.subplots(2, len(runs), figsize=(4.8 * len(runs) + 1.2, 9.4), squeeze=False)
    for j, run in enumerate(runs):
        ax = axes[0, j]
        ax.plot([0, 1, 1, 0, 0], [0, 0, 1, 1, 0], color="0.85", lw=0.8, zorder=0)
        rt = g_traj[g_traj["run"] == run]
        for (cls, w), g in rt.groupby(["class", "w"], sort=True):
            g = g.sort_values("step")
            ax.plot(g[cx], g[cy], ls=ls[cls], color=WEIGHT_CMAP(norm(w)), lw=1.5)
            ax.plot(g[cx].iloc[-1], g[cy].iloc[-1], "o", ms=4, color=WEIGHT_CMAP(norm(w)))
            if f"target_{cx}" in g:
                ax.plot(
                    g[f"target_{cx}"].iloc[0],
                    g[f"target_{cy}"].iloc[0],
                    "o",
                    ms=9,
                    color="red",
                    clip_on=False,
                )
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.set_aspect("equal")
        ax.set_xlabel(value_label(cx))
        ax.set_ylabel(value_label(cy))
        ax.set_title(f"{run}: trajectories (dot: last checkpoint)", fontsize=10)
        ax.grid(True, alpha=0.2)

        ax = axes[1, j]
        lt = g_lt[(g_lt["run"] == run) & (g_lt["concept"] == "all")]
        for i, (cls, g) in enumerate(lt.groupby("class", sort=True)):
            g = g.sort_values("w")
            c = HELD_COLORS[i % len(HELD_COLORS)]
            cens = g["censored"].to_numpy(bool)
            ax.plot(
                g["w"], g["learning_time"], ls=ls[cls], color=c, lw=1.4, label=pretty_class(cls)
            )
            ax.plot(g["w"][~cens], g["learning_time"][~cens], "o", color=c, ms=7)
            ax.plot(g["w"][cens], g["learning_time"][cens], "o", mfc="white", mec=c, mew=1.6, ms=8)
        for b in pd.unique(lt["budget"]):
            ax.axhline(b, color="0.5", ls=":", lw=1)
        thr = float(lt["threshold"].iloc[0]) if len(lt) else float("nan")
        ax.set_xlabel("guidance weight w")
        ax.set_ylabel(f"class-learned time (all concepts ≥ {thr:g}, steps)")
        ax.set_title(f"{run}: learning time per w (open: not reached)", fontsize=10)
        ax.set_ylim(0, float(lt["budget"].max()) * 1.1 if len(lt) else 1)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left", framealpha=0.9)
    cb = fig.colorbar(
        ScalarMappable(norm=norm, cmap=WEIGHT_CMAP), ax=axes[0, :].tolist(), shrink=0.8
    )
    cb.set_label("guidance weight w")
    fig.suptitle(title + " (mean over seeds)", fontsize=11)
    save_figure(fig, path, pdf=True)


# --------------------------------------------------------------------------------------------
# 4. the ODE model fitted to measured trajectories
# --------------------------------------------------------------------------------------------


def dynamics_fit_figure(
    curves: pd.DataFrame,
    fits: pd.DataFrame,
    path: str | Path,
    *,
    title: str = "Phenomenological ODE model fitted to held-out trajectories",
) -> None:
    """One panel per fitted (run, class): the two measured coordinates (markers) and the fitted
    model (lines) against training step, with the fitted signal ratio a and R². README width
    (at most three panels a row), one legend under the panels (never over the data), the step
    axis over the measured checkpoints only; a switch step beyond them is named in the title."""
    keys = list(fits[["run", "class"]].itertuples(index=False, name=None))
    n = max(1, len(keys))
    n_c = 1 if n == 1 else (2 if n in (2, 4) else 3)
    n_r = int(np.ceil(len(keys) / n_c)) if keys else 1
    fig, axes = plt.subplots(n_r, n_c, figsize=(10.0, 2.9 * n_r + 1.4), squeeze=False, sharey=True)
    colors = ["tab:blue", "tab:orange"]
    for k, (run, cls) in enumerate(keys):
        ax = axes.flat[k]
        f = fits[(fits["run"] == run) & (fits["class"] == cls)].iloc[0]
        for i, concept in enumerate((f["concept_1"], f["concept_2"])):
            g = curves[
                (curves["run"] == run) & (curves["class"] == cls) & (curves["concept"] == concept)
            ]
            g = g.sort_values("step")
            ax.plot(
                g["step"],
                g["measured"],
                "o",
                ms=3.5,
                color=colors[i],
                alpha=0.8,
                label=f"{value_label(concept)} measured",
            )
            ax.plot(g["step"], g["fitted"], "-", lw=1.8, color=colors[i], label=f"{concept}: model")
        steps = curves.loc[(curves["run"] == run) & (curves["class"] == cls), "step"]
        lo, hi = float(steps.min()), float(steps.max())
        sw = f["switch_step"]
        inside = sw is not None and np.isfinite(sw) and lo <= sw <= hi
        if inside:
            ax.axvline(sw, color="0.4", ls=":", lw=1.2, label="switch step")
        log_steps(ax)
        ax.set_xlim(lo / 1.08, hi * 1.08)  # the study's checkpoints, not the model's range
        ax.set_ylim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=9)
        notes = [f"at search bound: {f['at_bound']}"] if f.get("at_bound") else []
        if not inside and sw is not None and np.isfinite(sw):
            notes.append(f"switch at {sw:,.0f}, outside the checkpoints")
        ax.set_title(
            f"{run}, {pretty_class(cls)}: a={f['a']:.2f}, R²={f['r2']:.2f}"
            + (f"\n({'; '.join(notes)})" if notes else ""),
            fontsize=9.5,
            loc="left",
        )
        if k >= len(keys) - n_c:
            ax.set_xlabel("training step (log scale)", fontsize=9.5)
        if k % n_c == 0:
            ax.set_ylabel("concept-space coordinate", fontsize=9.5)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    handles, labels = {}, []
    for ax in axes.flat[: len(keys)]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    labels = list(handles)
    fig.legend([handles[k] for k in labels], labels, loc="lower center", ncol=3, fontsize=9,
               frameon=False)  # fmt: skip
    fig.suptitle(
        title + "\n(a > 1: the second concept has the stronger pull; dotted: switch α = ½)",
        fontsize=11,
    )
    rows = -(-len(labels) // 3)
    fig.tight_layout(rect=(0, (0.25 * rows + 0.15) / fig.get_figheight(), 1, 1))
    save_figure(fig, path, pdf=True)


# --------------------------------------------------------------------------------------------
# 5. underspecification
# --------------------------------------------------------------------------------------------


def underspecification_figure(
    tab: pd.DataFrame,
    traj: pd.DataFrame,
    fractions: Mapping[str, float],
    path: str | Path,
    *,
    threshold: float,
    concepts: Sequence[str] | None = None,
    title: str = "Underspecified prompts: held-out learning against the masked fraction p",
) -> None:
    """Left: held-out learning time of each concept against p (open = not reached, at the
    budget). Right: held-out trajectories (first two concepts) coloured by p."""
    if concepts is None:
        concepts = [c.removeprefix("target_") for c in traj.columns if c.startswith("target_")][:2]
    cx, cy = list(concepts)[:2]
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(13.0, 5.6), gridspec_kw={"width_ratios": [1.2, 1.0]}
    )
    d = tab[np.isclose(tab["threshold"].astype(float), threshold)]
    for i, (concept, g) in enumerate(d.groupby("concept", sort=False)):
        g = g.groupby("mask_fraction", as_index=False).agg(
            t=("learning_time_mean", "mean"), cens=("mean_is_lower_bound", "any")
        )
        c = HELD_COLORS[i % len(HELD_COLORS)]
        x, t, cens = g["mask_fraction"], g["t"], g["cens"].to_numpy(bool)
        ax.plot(x, t, "-", color=c, lw=1.5, label=concept)
        ax.plot(x[~cens], t[~cens], "o", color=c, ms=7)
        ax.plot(x[cens], t[cens], "o", mfc="white", mec=c, mew=1.6, ms=8)
    for b in pd.unique(d["budget"]):
        ax.axhline(b, color="0.5", ls=":", lw=1)
    ax.set_xlabel("masked fraction p (realized)")
    ax.set_ylabel(f"held-out learning time at θ={threshold:g} (steps)")
    ax.set_title("learning time per concept (open: not reached)", fontsize=10)
    ax.set_ylim(0, float(d["budget"].max()) * 1.1 if len(d) else 1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="concept")

    norm = sep_norm(list(fractions.values()))
    ax2.plot([0, 1, 1, 0, 0], [0, 0, 1, 1, 0], color="0.85", lw=0.8, zorder=0)
    held = traj[traj["held_out"].astype(bool)]
    classes = sorted(pd.unique(held["class"]), key=str)
    ls = {c: CONCEPT_STYLES[i % len(CONCEPT_STYLES)] for i, c in enumerate(classes)}
    for (run, cls), g in held.groupby(["run", "class"], sort=True):
        g = g.sort_values("step")
        color = SIGNAL_CMAP(norm(fractions.get(run, np.nan)))
        ax2.plot(g[cx], g[cy], ls=ls[cls], color=color, lw=1.6, marker="o", ms=2.2)
        ax2.plot(g[f"target_{cx}"].iloc[0], g[f"target_{cy}"].iloc[0], "o", ms=9, color="red")
    ax2.set_xlim(-0.05, 1.05)
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_aspect("equal")
    ax2.set_xlabel(value_label(cx))
    ax2.set_ylabel(value_label(cy))
    ax2.set_title("held-out trajectories (mean over seeds)", fontsize=10)
    if len(classes) > 1:
        ax2.legend(
            handles=[Line2D([], [], color="0.3", ls=ls[c], label=pretty_class(c)) for c in classes],
            fontsize=8,
        )
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=SIGNAL_CMAP), ax=ax2, shrink=0.85)
    cb.set_label("masked fraction p")
    fig.suptitle(title, fontsize=11)
    save_figure(fig, path, pdf=True)


__all__ = [
    "cube_trajectory_figure",
    "distance_time_figure",
    "dynamics_fit_figure",
    "guidance_figure",
    "underspecification_figure",
]
