"""Concept-space trajectories (docs/method.md §5.4, §5.5): the 2-D figure and its animation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from conceptspace.figures.style import (  # noqa: E402
    as_step,
    fmt_steps,
    log_steps,
    ordered_runs,
    pretty_class,
    run_colors,
    save_figure,
    separation_colorbar,
    value_label,
)
from conceptspace.io import write_with  # noqa: E402

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
            pretty_class(c) + (" (held out)" if h else "")
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
                    s = as_step(turn.get(key))
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
    ax.set_xlabel(value_label(cx) + "  (probe)")
    ax.set_ylabel(value_label(cy) + "  (probe)")


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
    """Concept-space trajectories of all runs (docs/method.md §5.1, §5.5) and the held-out class's
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
    runs = ordered_runs(traj, run_info, color_by)
    colors, norm, seps = run_colors(run_info, runs, color_by)

    fig = plt.figure(figsize=(13.0, 6.0))
    gs = fig.add_gridspec(1, 2, width_ratios=[1.0, 1.05], wspace=0.42)
    ax = fig.add_subplot(gs[0, 0])
    ax2 = fig.add_subplot(gs[0, 1])
    cax = ax.inset_axes([1.03, 0.0, 0.04, 1.0])  # follows the square panel

    _draw_concept_space(ax, traj, colors, turns, concepts, runs)
    ax.set_title("Trajectories of generated images (mean over seeds)", fontsize=10)
    separation_colorbar(fig, cax, norm, seps, color_by)

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
                lab += f", {pretty_class(cls)}"
            ax2.plot(steps, d, "-", color=c, lw=1.8, marker="o", ms=2.6, label=lab)
            turn = turns.get(run, {}) or {}
            for key, marker, ms in (("saturation_step", "*", 15), ("heading_step", "^", 8)):
                s = as_step(turn.get(key))
                if s is None:
                    continue
                i = int(np.argmin(np.abs(steps - s)))
                ax2.plot(steps[i], d[i], marker, ms=ms, mfc=c, mec="black", mew=0.9, zorder=5)
                if key == "heading_step":
                    ax2.axvline(s, color=c, ls=":", lw=1.1, alpha=0.9, zorder=1)
    log_steps(ax2)
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
    runs = ordered_runs(traj, run_info, color_by)
    colors, norm, seps = run_colors(run_info, runs, color_by)
    turns = turns or {}
    steps = np.sort(traj["step"].unique())
    if steps.size == 0:
        raise ValueError("empty trajectory frame")
    idx = np.unique(np.round(np.linspace(0, steps.size - 1, min(max_frames, steps.size))))
    frame_steps = steps[idx.astype(int)]

    fig = plt.figure(figsize=(5.6, 5.0), dpi=dpi)
    ax = fig.add_axes([0.13, 0.11, 0.66, 0.78])
    cax = fig.add_axes([0.84, 0.11, 0.03, 0.78])
    separation_colorbar(fig, cax, norm, seps, color_by)
    frames = []
    for s in frame_steps:
        ax.cla()
        _draw_concept_space(ax, traj, colors, turns, concepts, runs, upto_step=float(s))
        ax.set_title(f"Concept-space trajectories, step {fmt_steps(s)}", fontsize=10)
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
