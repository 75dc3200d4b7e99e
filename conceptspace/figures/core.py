"""Paper figures (paper_spec §5.1, §5.3, §6): drawing only, data in, files out.

Every ``*_figure`` function takes the tidy tables produced by :mod:`conceptspace.analysis.core` (or
the stage outputs they are built from), draws them, and writes ``path`` (a ``.png``) plus a
``.pdf`` next to it, atomically, through ``style.save_figure``. Nothing here
measures anything: the only arithmetic is reshaping, averaging curves over seeds for display,
and the distance of a point to its target corner.

Conventions shared by the figures:

* concept-space coordinates are probabilities of value index 1 (``color`` → P(blue), ``size``
  → P(small)), drawn in the unit square;
* runs are coloured by a separation (default: the color separation Δcolor) with a truncated
  sequential colormap whose lightest colour is still visible on white;
* training steps are drawn on a log axis (checkpoints are roughly geometric in step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib import colors as mcolors  # noqa: E402
from matplotlib import transforms as mtransforms  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from conceptspace.data.concepts import CONCEPTS  # noqa: E402
from conceptspace.figures.style import save_figure, to_display  # noqa: E402
from conceptspace.io import write_with  # noqa: E402

#: sequential colormap for concept signal: plasma without its pale-yellow end
SIGNAL_CMAP = mcolors.ListedColormap(
    plt.get_cmap("plasma")(np.linspace(0.0, 0.82, 256)), name="plasma_trunc"
)

#: colours of the capability-figure curves
METHOD_COLORS = {
    "train": "tab:blue",
    "naive": "tab:red",
    "overprompt": "tab:green",
    "linear": "tab:purple",
    "guidance": "tab:orange",
}
_EXTRA_COLORS = ["tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]

METHOD_LABELS = {
    "naive": "naive prompting",
    "overprompt": "overprompting",
    "linear": "linear latent intervention",
    "guidance": "classifier-free guidance",
}

#: colours / line styles of the learning-time thresholds
_THRESHOLD_STYLE = {0.8: ("#1f4e9c", "-", "o"), 0.9: ("#d95f02", "--", "s")}
_THRESHOLD_FALLBACK = [("#1b9e77", ":", "D"), ("#7570b3", "-.", "^")]

_PAIR_COLORS = ["tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _log_steps(ax, axis: str = "x") -> None:
    """Log-scaled step axis with plain labels on major ticks only (minor labels collide when
    the range spans less than a decade or two)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    a.set_minor_formatter(NullFormatter())


def _step(v) -> float | None:
    """A step value from a turn-summary dict, or None when missing / NaN."""
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _value_label(concept: str) -> str:
    """Axis label of a concept coordinate, e.g. ``"color: P(blue)"``."""
    if concept in CONCEPTS:
        return f"{concept}: P({CONCEPTS[concept][1]})"
    return f"{concept}: P(value 1)"


def _pretty_class(name) -> str:
    return str(name).replace("_", " ")


def _fmt_steps(n: float) -> str:
    return f"{n:,.0f}"


def _sep_norm(values: Sequence[float]) -> mcolors.Normalize:
    vals = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if vals.size == 0:
        return mcolors.Normalize(0.0, 1.0)
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.05, hi + 0.05
    return mcolors.Normalize(lo, hi)


def _run_colors(run_info: pd.DataFrame, runs: Sequence[str], color_by: str):
    """``({run: rgba}, norm, {run: separation})`` colouring runs by ``sep_<color_by>``."""
    col = f"sep_{color_by}"
    info = run_info.drop_duplicates("run").set_index("run")
    seps = {
        r: float(info.at[r, col]) if (r in info.index and col in info) else float("nan")
        for r in runs
    }
    norm = _sep_norm(list(seps.values()))
    if not np.isfinite(list(seps.values())).any():  # no separations (e.g. real images)
        return {r: plt.get_cmap("tab10")(i % 10) for i, r in enumerate(runs)}, norm, seps
    colors = {
        r: SIGNAL_CMAP(norm(s)) if np.isfinite(s) else (0.4, 0.4, 0.4, 1.0) for r, s in seps.items()
    }
    return colors, norm, seps


def _separation_colorbar(fig, cax, norm, seps: Mapping, color_by: str) -> None:
    """The colour scale of the runs' separations; hidden when no run has one."""
    if not np.isfinite(list(seps.values())).any():
        cax.set_visible(False)
        return
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=SIGNAL_CMAP), cax=cax)
    cb.set_label(f"{color_by} separation Δ{color_by}")


def _method_color(method: str, others: dict) -> str:
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    if method not in others:
        others[method] = _EXTRA_COLORS[len(others) % len(_EXTRA_COLORS)]
    return others[method]


def _threshold_style(thr: float, i: int) -> tuple[str, str, str]:
    for key, style in _THRESHOLD_STYLE.items():
        if abs(thr - key) < 1e-9:
            return style
    return _THRESHOLD_FALLBACK[i % len(_THRESHOLD_FALLBACK)]


def _seed_band(df: pd.DataFrame, value: str) -> tuple[np.ndarray, ...]:
    """``(steps, mean, min, max)`` of ``value`` over seeds at each step (NaNs dropped)."""
    g = df.dropna(subset=[value]).groupby("step")[value]
    out = g.agg(["mean", "min", "max"]).sort_index()
    return (out.index.to_numpy(float), *(out[c].to_numpy(float) for c in ("mean", "min", "max")))


def _ordered_runs(df: pd.DataFrame, run_info: pd.DataFrame | None = None, by: str | None = None):
    runs = list(pd.unique(df["run"]))
    if run_info is not None and by is not None and f"sep_{by}" in run_info:
        sep = run_info.drop_duplicates("run").set_index("run")[f"sep_{by}"]
        runs.sort(key=lambda r: (float(sep.get(r, np.inf)), str(r)))
    else:
        runs.sort(key=str)
    return runs


def _panel_grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


# --------------------------------------------------------------------------------------------
# 1. concept-space trajectories
# --------------------------------------------------------------------------------------------


def _seed_average(traj: pd.DataFrame, concepts: Sequence[str]) -> pd.DataFrame:
    """Trajectory frames are expected seed-averaged; a per-seed frame is averaged for display."""
    if "seed" not in traj:
        return traj
    keys = ["run", "class", "held_out", "step"]
    targets = [f"target_{c}" for c in concepts]
    return traj.groupby(keys, as_index=False, sort=True)[list(concepts) + targets].mean()


def _corner_targets(traj: pd.DataFrame, concepts: Sequence[str]) -> pd.DataFrame:
    cols = [f"target_{c}" for c in concepts]
    return traj.drop_duplicates("class")[["class", "held_out", *cols]]


def _draw_concept_space(
    ax,
    traj: pd.DataFrame,
    colors: dict,
    turns: Mapping[str, Mapping],
    concepts: Sequence[str],
    runs: Sequence[str],
    *,
    upto_step: float | None = None,
) -> None:
    """Corners, trajectories (up to ``upto_step``), start points and turn markers."""
    cx, cy = concepts
    ax.plot([0, 1, 1, 0, 0], [0, 0, 1, 1, 0], color="0.8", lw=0.8, zorder=0)
    corners = _corner_targets(traj, concepts)
    # several classes share a corner when a grid has more than the two drawn concepts
    for (x, y), grp in corners.groupby([f"target_{cx}", f"target_{cy}"], sort=True):
        x, y = float(x), float(y)
        held = bool(grp["held_out"].astype(bool).any())
        ax.plot(x, y, "o", ms=9, color="red" if held else "black", zorder=6, clip_on=False)
        names = [
            _pretty_class(c) + (" (held out)" if h else "")
            for c, h in zip(grp["class"], grp["held_out"].astype(bool), strict=True)
        ]
        label = "\n".join(names)
        ax.annotate(
            label,
            (x, y),
            xytext=(0, 8 if y > 0.5 else -8),
            textcoords="offset points",
            ha="right" if x > 0.5 else "left",
            va="bottom" if y > 0.5 else "top",
            fontsize=8.5,
            fontweight="bold",
            color="red" if held else "black",
            zorder=7,
        )

    for run in runs:
        rt = traj[traj["run"] == run]
        c = colors[run]
        for _, g in rt.groupby("class", sort=True):
            g = g.sort_values("step")
            if upto_step is not None:
                g = g[g["step"] <= upto_step]
            if g.empty:
                continue
            x, y = g[cx].to_numpy(float), g[cy].to_numpy(float)
            if bool(g["held_out"].iloc[0]):
                ax.plot(x, y, "-", color=c, lw=1.8, marker="o", ms=2.6, zorder=4)
                ax.plot(x[0], y[0], "o", ms=7, mfc="white", mec="black", mew=1.2, zorder=8)
                turn = turns.get(run, {}) or {}
                steps = g["step"].to_numpy(float)
                for key, marker, ms in (("saturation_step", "*", 16), ("heading_step", "^", 9)):
                    s = _step(turn.get(key))
                    if s is None or (upto_step is not None and s > upto_step):
                        continue
                    i = int(np.argmin(np.abs(steps - s)))
                    ax.plot(x[i], y[i], marker, ms=ms, mfc=c, mec="black", mew=0.9, zorder=9)
            else:
                ax.plot(x, y, "--", color=c, lw=0.9, alpha=0.75, zorder=3)

    ax.set_xlim(-0.06, 1.06)
    ax.set_ylim(-0.13, 1.13)  # room for the corner labels above / below the unit square
    ax.set_aspect("equal")
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel(_value_label(cx) + "  (probe)")
    ax.set_ylabel(_value_label(cy) + "  (probe)")


def _space_legend_handles() -> list:
    return [
        Line2D([], [], color="0.35", ls="--", lw=0.9, label="training classes"),
        Line2D([], [], color="0.35", ls="-", lw=1.8, marker="o", ms=2.6, label="held-out class"),
        Line2D([], [], ls="", marker="o", ms=7, mfc="white", mec="black", label="start"),
        Line2D(
            [],
            [],
            ls="",
            marker="*",
            ms=13,
            mfc="0.6",
            mec="black",
            label="training classes saturated",
        ),
        Line2D(
            [], [], ls="", marker="^", ms=8, mfc="0.6", mec="black", label="largest heading change"
        ),
        Line2D([], [], ls="", marker="o", ms=7, color="black", label="training corner"),
        Line2D([], [], ls="", marker="o", ms=7, color="red", label="held-out corner"),
    ]


def trajectory_figure(
    traj: pd.DataFrame,
    run_info: pd.DataFrame,
    turns: Mapping[str, Mapping],
    path: str | Path,
    *,
    concepts: Sequence[str] = ("color", "size"),
    color_by: str = "color",
    title: str = "Learning dynamics in concept space",
) -> None:
    """Concept-space trajectories of all runs (paper_spec §5.1, §5.5) and the held-out class's
    distance to its corner against training step.

    :param traj: :func:`analysis.trajectories` output for all runs (seed-averaged; a frame with a
        ``seed`` column is averaged over seeds for display).
    :param run_info: one row per run with ``run`` and ``sep_<color_by>`` (the colour scale).
    :param turns: run → :func:`analysis.turn_summary` dict; ``saturation_step`` (star) and
        ``heading_step`` (triangle) are marked, missing/None values are skipped.
    :param concepts: (x, y) concept columns of ``traj``.
    :param color_by: concept whose separation colours the runs (default Δcolor).
    """
    concepts = tuple(concepts)
    if len(concepts) != 2:
        raise ValueError(f"trajectory_figure draws two concepts, got {concepts}")
    traj = _seed_average(traj, concepts)
    runs = _ordered_runs(traj, run_info, color_by)
    colors, norm, seps = _run_colors(run_info, runs, color_by)

    fig = plt.figure(figsize=(13.0, 6.0))
    gs = fig.add_gridspec(1, 2, width_ratios=[1.0, 1.05], wspace=0.42)
    ax = fig.add_subplot(gs[0, 0])
    ax2 = fig.add_subplot(gs[0, 1])
    cax = ax.inset_axes([1.03, 0.0, 0.04, 1.0])  # follows the square panel

    _draw_concept_space(ax, traj, colors, turns, concepts, runs)
    ax.set_title("Trajectories of generated images (mean over seeds)", fontsize=10)
    _separation_colorbar(fig, cax, norm, seps, color_by)

    # distance of the held-out class to its own corner
    cx, cy = concepts
    for run in runs:
        h = traj[(traj["run"] == run) & traj["held_out"].astype(bool)]
        if h.empty:
            continue
        c = colors[run]
        for cls, g in h.groupby("class", sort=True):
            g = g.sort_values("step")
            steps = g["step"].to_numpy(float)
            d = np.hypot(
                g[cx].to_numpy(float) - g[f"target_{cx}"].to_numpy(float),
                g[cy].to_numpy(float) - g[f"target_{cy}"].to_numpy(float),
            )
            sep = seps[run]
            lab = f"{run} (Δ{color_by}={sep:g})" if np.isfinite(sep) else str(run)
            if h["class"].nunique() > 1:
                lab += f", {_pretty_class(cls)}"
            ax2.plot(steps, d, "-", color=c, lw=1.8, marker="o", ms=2.6, label=lab)
            turn = turns.get(run, {}) or {}
            for key, marker, ms in (("saturation_step", "*", 15), ("heading_step", "^", 8)):
                s = _step(turn.get(key))
                if s is None:
                    continue
                i = int(np.argmin(np.abs(steps - s)))
                ax2.plot(steps[i], d[i], marker, ms=ms, mfc=c, mec="black", mew=0.9, zorder=5)
                if key == "heading_step":
                    ax2.axvline(s, color=c, ls=":", lw=1.1, alpha=0.9, zorder=1)
    _log_steps(ax2)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("training step (log scale)")
    ax2.set_ylabel("distance of held-out class to its corner\n(concept-space units)")
    ax2.set_title(
        "Held-out class: distance to target (dotted: heading turn)",
        fontsize=10,
    )
    ax2.grid(True, which="major", alpha=0.3)
    if ax2.lines:
        ax2.legend(loc="upper right", fontsize=8, title="run", title_fontsize=8, framealpha=0.9)

    fig.legend(
        handles=_space_legend_handles(),
        loc="lower center",
        ncol=7,
        fontsize=8.5,
        frameon=False,
        bbox_to_anchor=(0.5, -0.035),
    )
    fig.suptitle(title, fontsize=12)
    save_figure(fig, path, pdf=True)


# --------------------------------------------------------------------------------------------
# 5. animation of the trajectories
# --------------------------------------------------------------------------------------------


def trajectory_animation(
    traj: pd.DataFrame,
    run_info: pd.DataFrame,
    path_gif: str | Path,
    *,
    fps: int = 4,
    turns: Mapping[str, Mapping] | None = None,
    concepts: Sequence[str] = ("color", "size"),
    color_by: str = "color",
    max_frames: int = 36,
    dpi: int = 90,
) -> None:
    """Animated GIF of the concept-space trajectories growing over checkpoints (as panel 1 of
    :func:`trajectory_figure`). At most ``max_frames`` evenly spaced checkpoints are shown (the
    last one held for 2 s); written atomically to ``path_gif``."""
    from PIL import Image

    concepts = tuple(concepts)
    traj = _seed_average(traj, concepts)
    runs = _ordered_runs(traj, run_info, color_by)
    colors, norm, seps = _run_colors(run_info, runs, color_by)
    turns = turns or {}
    steps = np.sort(traj["step"].unique())
    if steps.size == 0:
        raise ValueError("empty trajectory frame")
    idx = np.unique(np.round(np.linspace(0, steps.size - 1, min(max_frames, steps.size))))
    frame_steps = steps[idx.astype(int)]

    fig = plt.figure(figsize=(5.6, 5.0), dpi=dpi)
    ax = fig.add_axes([0.13, 0.11, 0.66, 0.78])
    cax = fig.add_axes([0.84, 0.11, 0.03, 0.78])
    _separation_colorbar(fig, cax, norm, seps, color_by)
    frames = []
    for s in frame_steps:
        ax.cla()
        _draw_concept_space(ax, traj, colors, turns, concepts, runs, upto_step=float(s))
        ax.set_title(f"Concept-space trajectories, step {_fmt_steps(s)}", fontsize=10)
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())
        frames.append(Image.fromarray(rgba[..., :3].copy()))
    plt.close(fig)

    palette = frames[-1].quantize(colors=96, method=Image.Quantize.MEDIANCUT)
    frames = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    durations = [int(1000 / max(fps, 1))] * len(frames)
    durations[-1] = 2000

    def _write(tmp: Path) -> None:
        frames[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=0,
            optimize=True,
        )

    write_with(path_gif, _write)


# --------------------------------------------------------------------------------------------
# 2. learning time vs concept signal
# --------------------------------------------------------------------------------------------


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
    one column per concept (paper_spec §5.3).

    :param lt_summary: :func:`analysis.summarize_over_seeds` output; rows of group ``held_out``
        are the data, group ``train`` is drawn faintly for reference.
    :param run_info: one row per run with ``run`` and ``signal_<concept>`` for each concept.
    :param fits: ``fits[concept]`` = :func:`analysis.fit_inverse_time` dict (slope, intercept,
        r2[, n]) drawn as one line; per-threshold fits may instead be keyed ``(concept,
        threshold)`` and are drawn in that threshold's colour.
    :param fit_threshold: the threshold a plain ``fits[concept]`` was fitted at (legend only).
    """
    info = run_info.drop_duplicates("run").set_index("run")
    concepts = [
        c for c in pd.unique(lt_summary["concept"]) if f"signal_{c}" in info.columns
    ] or list(pd.unique(lt_summary["concept"]))
    thresholds = sorted(float(t) for t in pd.unique(lt_summary["threshold"]))
    n = len(concepts)
    fig, axes = plt.subplots(
        2, n, figsize=(5.4 * n + 0.6, 9.0), squeeze=False, gridspec_kw={"hspace": 0.45}
    )
    plain_fits = not any(isinstance(k, tuple) or "@" in str(k) for k in fits)

    for j, concept in enumerate(concepts):
        ax_t, ax_v = axes[0, j], axes[1, j]
        col = f"signal_{concept}"
        d = lt_summary[lt_summary["concept"] == concept].copy()
        d["signal"] = d["run"].map(info[col]) if col in info.columns else np.nan
        d = d.dropna(subset=["signal"])
        budgets = d["budget"].dropna().unique()
        x_all = d["signal"].to_numpy(float)
        labelled_censored: set[float] = set()

        for i, thr in enumerate(thresholds):
            color, ls, marker = _threshold_style(thr, i)
            # thresholds side by side (a few points apart) so equal values stay visible
            dx = 4.0 * (i - (len(thresholds) - 1) / 2)
            tr_t = mtransforms.offset_copy(ax_t.transData, fig=fig, x=dx, y=0, units="points")
            tr_v = mtransforms.offset_copy(ax_v.transData, fig=fig, x=dx, y=0, units="points")
            # training classes (reference)
            tr = d[(d["group"] == "train") & np.isclose(d["threshold"], thr)].sort_values("signal")
            if not tr.empty:
                ax_t.plot(
                    tr["signal"],
                    tr["learning_time_mean"],
                    ls="--",
                    lw=1.0,
                    color=color,
                    alpha=0.35,
                    marker=marker,
                    ms=4,
                    mfc="none",
                    label=f"training classes, θ={thr:g}",
                )
            ho = d[(d["group"] == "held_out") & np.isclose(d["threshold"], thr)]
            ho = ho.sort_values("signal")
            if ho.empty:
                continue
            x = ho["signal"].to_numpy(float)
            t = ho["learning_time_mean"].to_numpy(float)
            sd = np.nan_to_num(ho["learning_time_std"].to_numpy(float))
            cens = ho["mean_is_lower_bound"].to_numpy(bool)
            ncens = ho["n_censored"].to_numpy(int)
            nseed = ho["n_seeds"].to_numpy(int) if "n_seeds" in ho else np.full(len(ho), -1)
            ax_t.plot(x, t, ls=ls, color=color, lw=1.8, label=f"held-out class, θ={thr:g}")
            ax_t.errorbar(
                x, t, yerr=sd, fmt="none", ecolor=color, elinewidth=1.2, capsize=3, transform=tr_t
            )
            _censored_points(ax_t, x, t, cens, marker, color, tr_t)
            for xi, ti, k, m in zip(x[cens], t[cens], ncens[cens], nseed[cens], strict=True):
                ax_t.annotate(
                    "",
                    xy=(xi, ti * 1.5),
                    xytext=(xi, ti * 1.06),
                    xycoords=tr_t,
                    textcoords=tr_t,
                    arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.4},
                )
                all_cens = m < 0 or k >= m
                if all_cens and xi in labelled_censored:
                    continue
                labelled_censored.add(xi)
                txt = "not reached" if all_cens else f"{k}/{m} seeds not reached"
                ax_t.annotate(
                    txt,
                    (xi, ti * 1.5),
                    xytext=(6, 0),
                    textcoords="offset points",
                    fontsize=7.5,
                    color="0.2" if all_cens else color,
                    ha="left",
                    va="bottom",
                )
            # speed 1/T (x1000); a censored T gives an upper bound on 1/T
            v = 1000.0 / t
            v_lo = 1000.0 / (t + sd)
            v_hi = 1000.0 / np.maximum(t - sd, 1e-9)
            ax_v.errorbar(
                x,
                v,
                yerr=[v - v_lo, v_hi - v],
                fmt="none",
                ecolor=color,
                elinewidth=1,
                capsize=3,
                transform=tr_v,
            )
            _censored_points(ax_v, x, v, cens, marker, color, tr_v, label=f"θ={thr:g}")
            for xi, vi in zip(x[cens], v[cens], strict=True):
                ax_v.annotate(
                    "",
                    xy=(xi, vi * 0.55),
                    xytext=(xi, vi * 0.95),
                    xycoords=tr_v,
                    textcoords=tr_v,
                    arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.4},
                )
            # offset transforms do not autoscale: register the data extent explicitly
            ax_v.update_datalim(np.column_stack([np.r_[x, x], np.r_[v_lo, v_hi]]))
            ax_v.autoscale_view()
            fit = _fit_for(fits, concept, thr)
            if fit is not None:
                _draw_fit(ax_v, fit, x_all, color, f"fit θ={thr:g}")

        if plain_fits and concept in fits:
            lab = "linear fit" + (f" (θ={fit_threshold:g})" if fit_threshold is not None else "")
            _draw_fit(ax_v, fits[concept], x_all, "black", lab)

        for b in budgets:
            ax_t.axhline(b, color="0.5", ls=":", lw=1)
        if len(budgets):
            ax_t.annotate(
                f"budget ({_fmt_steps(max(budgets))} steps)",
                (0.99, max(budgets)),
                xycoords=("axes fraction", "data"),
                xytext=(0, -3),
                textcoords="offset points",
                fontsize=7.5,
                color="0.4",
                ha="right",
                va="top",
            )
            ax_t.set_ylim(top=max(budgets) * 2.8)
        ax_t.set_yscale("log")
        ax_t.margins(x=0.08)
        for ax in (ax_t, ax_v):
            ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
            ax.set_xlabel(f"measured {concept} signal (pixel MSE)")
            ax.grid(True, which="major", alpha=0.3)
        # run names on a top axis at their signal
        runs_x = d.drop_duplicates("run")[["run", "signal"]].sort_values("signal")
        top = ax_t.secondary_xaxis("top")
        top.set_xticks(runs_x["signal"].to_numpy(float), [str(r) for r in runs_x["run"]])
        top.tick_params(labelsize=7, colors="0.35", rotation=30, length=2)
        ax_t.set_ylabel("learning time T (training steps, log)")
        ax_t.set_title(f"{concept}: steps until the held-out class reaches θ", fontsize=10)
        ax_t.legend(fontsize=7.5, loc="lower left", framealpha=0.9)

        ax_v.axhline(0, color="0.6", lw=0.8)
        lo, hi = ax_v.get_ylim()
        ax_v.set_ylim(lo, hi + 0.35 * (hi - lo))  # headroom for the legend
        ax_v.margins(x=0.08)
        ax_v.set_ylabel("learning speed 1/T (per 1000 steps)")
        ax_v.set_title(f"{concept}: learning speed (open marker: not reached)", fontsize=10)
        ax_v.legend(fontsize=7.5, loc="upper left", framealpha=0.9)

    fig.suptitle(title + "  (mean ± std over seeds)", fontsize=12)
    save_figure(fig, path, pdf=True)


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
    ax.plot(
        xs,
        1000.0 * (slope * xs + intercept),
        color=color,
        lw=1.4,
        alpha=0.85,
        label=f"{label}: R²={r2:.2f}{extra}",
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
    there are several) (paper_spec §6 "Comparison").

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
                s, m, lo, hi = _seed_band(ta, "acc")
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
                color = _method_color(method, others)
                s, m, lo, hi = _seed_band(g, "capability")
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
                _log_steps(ax)
            ax.set_ylim(-0.02, 1.04)
            ax.grid(True, alpha=0.25)
            head = run_labels.get(run, str(run))
            if n_rows > 1:
                head += f" — {_pretty_class(cls)}"
            ax.set_title(head, fontsize=10)
            if ci == n_rows - 1:
                ax.set_xlabel("training step" + (" (log scale)" if logx else ""))
            if ri == 0:
                lab = "accuracy (P(target) of generated images)"
                if n_rows > 1:
                    lab = f"{_pretty_class(cls)}\n" + lab
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


# --------------------------------------------------------------------------------------------
# 4. generated samples over training
# --------------------------------------------------------------------------------------------


def samples_over_training_figure(
    images: np.ndarray,
    steps: np.ndarray,
    class_names: Sequence[str],
    class_id: np.ndarray,
    path: str | Path,
    *,
    picks: Sequence[int],
    title: str = "",
    per_cell: int = 4,
    held_out: Sequence[str] = (),
) -> None:
    """Generated images of each class (rows) at selected checkpoints (columns).

    :param images: ``[n_ckpt, M, 3, S, S]`` in [0, 1], first spatial axis "x".
    :param steps: ``[n_ckpt]`` training step of each checkpoint.
    :param class_id: ``[M]`` index into ``class_names`` of each image.
    :param picks: checkpoint indices to show, in column order.
    :param per_cell: images of a class tiled side by side in each cell (the first ones).
    :param held_out: class names to label in red as held out.
    """
    images = np.asarray(images)
    class_id = np.asarray(class_id)
    steps = np.asarray(steps)
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"images must be [n_ckpt, M, 3, S, S], got {images.shape}")
    if class_id.shape != (images.shape[1],):
        raise ValueError(f"class_id must be [{images.shape[1]}], got {class_id.shape}")
    picks = [int(p) for p in picks]
    rows = [c for c in range(len(class_names)) if np.any(class_id == c)]
    n_tile = max(1, min(per_cell, min(int(np.sum(class_id == c)) for c in rows)))
    S = images.shape[-1]
    gap = max(1, S // 16)

    fig, axes = plt.subplots(
        len(rows),
        len(picks),
        figsize=(0.62 * n_tile * len(picks) + 1.6, 0.7 * len(rows) + 0.9),
        squeeze=False,
    )
    for i, c in enumerate(rows):
        idx = np.flatnonzero(class_id == c)[:n_tile]
        for j, p in enumerate(picks):
            ax = axes[i, j]
            shown = to_display(images[p, idx].astype(np.float32))  # [n, S, S, 3]
            mosaic = np.ones((S, n_tile * S + (n_tile - 1) * gap, 3), dtype=np.float32)
            for k, im in enumerate(shown):
                mosaic[:, k * (S + gap) : k * (S + gap) + S] = im
            ax.imshow(mosaic, origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if i == 0:
                ax.set_title(f"step {_fmt_steps(float(steps[p]))}", fontsize=9)
        name = class_names[c]
        is_held = name in held_out
        axes[i, 0].set_ylabel(
            _pretty_class(name) + ("\n(held out)" if is_held else ""),
            rotation=0,
            ha="right",
            va="center",
            fontsize=9,
            color="red" if is_held else "black",
        )
    fig.suptitle(title or "Generated samples over training (rows: prompted class)", fontsize=10)
    fig.subplots_adjust(wspace=0.06, hspace=0.08)
    save_figure(fig, path, pdf=True)


# --------------------------------------------------------------------------------------------
# 6. concept-embedding similarity
# --------------------------------------------------------------------------------------------


def embedding_figure(
    emb: pd.DataFrame,
    path: str | Path,
    *,
    run_labels: Mapping[str, str] | None = None,
    title: str = "Similarity of single-concept embeddings in the U-Net's conditioning pathway",
) -> None:
    """Cosine similarity of concept embeddings against training step, one panel per run.

    :param emb: ``run, seed, step, block, block_index, pair, cosine``. Each line is the mean over
        blocks and seeds; the band spans the blocks (min–max of the seed-mean per block).
    """
    run_labels = run_labels or {}
    runs = sorted(pd.unique(emb["run"]), key=str)
    pairs = list(pd.unique(emb["pair"]))
    n_r, n_c = _panel_grid(len(runs))
    fig, axes = plt.subplots(
        n_r, n_c, figsize=(4.4 * n_c + 0.4, 3.6 * n_r + 0.9), squeeze=False, sharey=True
    )
    for k, run in enumerate(runs):
        ax = axes.flat[k]
        er = emb[emb["run"] == run]
        for pi, pair in enumerate(pairs):
            g = er[er["pair"] == pair]
            if g.empty:
                continue
            per_block = g.groupby(["step", "block_index"])["cosine"].mean().unstack()
            per_block = per_block.sort_index()
            s = per_block.index.to_numpy(float)
            color = _PAIR_COLORS[pi % len(_PAIR_COLORS)]
            ax.fill_between(
                s, per_block.min(axis=1), per_block.max(axis=1), color=color, alpha=0.15, lw=0
            )
            a, _, b = str(pair).partition("|")
            ax.plot(
                s,
                per_block.mean(axis=1),
                "-",
                color=color,
                lw=1.8,
                marker="o",
                ms=2.5,
                label=f"{a} vs {b}" if b else str(pair),
            )
        ax.axhline(0, color="0.6", lw=0.8)
        _log_steps(ax)
        ax.set_ylim(-1.05, 1.05)
        ax.grid(True, alpha=0.25)
        ax.set_title(run_labels.get(run, str(run)), fontsize=10)
        ax.set_xlabel("training step (log scale)")
        if k % n_c == 0:
            ax.set_ylabel("cosine similarity of embeddings")
        ax.legend(fontsize=8, loc="lower left", framealpha=0.9)
    for ax in list(axes.flat)[len(runs) :]:
        ax.set_visible(False)
    fig.suptitle(title + "\n(mean over blocks and seeds; band: range over blocks)", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, pdf=True)


# --------------------------------------------------------------------------------------------
# 7. training curves
# --------------------------------------------------------------------------------------------


def training_curves_figure(
    logs: pd.DataFrame,
    path: str | Path,
    *,
    run_info: pd.DataFrame | None = None,
    color_by: str = "color",
    title: str = "Diffusion training loss",
) -> None:
    """Loss against step (log-log), one colour per run: validation solid, held-out class dashed,
    training loss thin and faint. Curves are means over seeds; NaNs are skipped.

    :param logs: ``run, seed, step, train_loss, val_loss, heldout_loss`` (bits/dim).
    :param run_info: optional; when given (with ``sep_<color_by>``), runs are coloured by that
        separation on the signal colormap, otherwise by a categorical palette.
    """
    runs = _ordered_runs(logs, run_info, color_by)
    if run_info is not None and f"sep_{color_by}" in run_info:
        colors, _, seps = _run_colors(run_info, runs, color_by)
        labels = {r: f"{r} (Δ{color_by}={seps[r]:g})" for r in runs}
    else:
        cyc = plt.get_cmap("tab10")
        colors = {r: cyc(i % 10) for i, r in enumerate(runs)}
        labels = {r: str(r) for r in runs}
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    for run in runs:
        g = logs[logs["run"] == run]
        c = colors[run]
        for col, ls, lw, alpha in (
            ("train_loss", "-", 0.8, 0.35),
            ("val_loss", "-", 1.8, 1.0),
            ("heldout_loss", "--", 1.8, 1.0),
        ):
            if col not in g:
                continue
            s, m, _, _ = _seed_band(g, col)
            ok = m > 0
            if ok.any():
                lab = labels[run] if col == "val_loss" else None
                ax.plot(s[ok], m[ok], ls=ls, lw=lw, alpha=alpha, color=c, label=lab)
    _log_steps(ax)
    ax.set_yscale("log")
    ax.set_xlabel("training step (log scale)")
    ax.set_ylabel("loss (bits/dim, log scale)")
    ax.grid(True, which="major", alpha=0.3)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="minor", labelsize=7)
    style = [
        Line2D([], [], color="0.3", lw=1.8, label="validation (training classes)"),
        Line2D([], [], color="0.3", lw=1.8, ls="--", label="held-out class"),
        Line2D([], [], color="0.3", lw=0.8, alpha=0.4, label="training batches"),
    ]
    leg1 = ax.legend(handles=style, loc="upper right", fontsize=8, title="curve", framealpha=0.9)
    ax.add_artist(leg1)
    ax.legend(loc="lower left", fontsize=8, title="run", framealpha=0.9)
    ax.set_title(title + " (mean over seeds)", fontsize=11)
    save_figure(fig, path, pdf=True)
