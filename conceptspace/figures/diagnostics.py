"""Diagnostics: generated samples over training, concept-embedding similarity, training
curves (docs/method.md §9).
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

from conceptspace.figures.style import (  # noqa: E402
    PAIR_COLORS,
    fmt_steps,
    log_steps,
    ordered_runs,
    panel_grid,
    pretty_class,
    save_figure,
    seed_band,
    to_display,
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
                ax.set_title(f"step {fmt_steps(float(steps[p]))}", fontsize=9)
        name = class_names[c]
        is_held = name in held_out
        axes[i, 0].set_ylabel(
            pretty_class(name) + ("\n(held out)" if is_held else ""),
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
    n_r, n_c = panel_grid(len(runs))
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
            color = PAIR_COLORS[pi % len(PAIR_COLORS)]
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
        log_steps(ax)
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
    """Loss against step, one panel per run (so runs are told apart), at README width:
    validation solid, held-out class dashed, training batches thin and faint; means over seeds,
    NaNs skipped. The loss axis is symmetric-log (linear within ±10): the VDM bound can turn
    negative late in training, which a log axis would drop.

    :param logs: ``run, seed, step, train_loss, val_loss, held_out_loss``.
    :param run_info: optional; with ``sep_<color_by>`` the runs are ordered and titled by that
        separation.
    """
    runs = ordered_runs(logs, run_info, color_by)
    titles = {r: str(r) for r in runs}
    if run_info is not None and f"sep_{color_by}" in run_info:
        seps = run_info.drop_duplicates("run").set_index("run")[f"sep_{color_by}"]
        titles = {r: f"{r} (Δ{color_by} {seps[r]:g})" for r in runs}
    n = len(runs)
    cols = 1 if n == 1 else (2 if n in (2, 4) else 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(10.0, 2.8 * rows + 1.0), squeeze=False, sharex=True, sharey=True
    )
    curves = (
        ("train_loss", "-", 0.8, 0.35, "training batches", "0.45"),
        ("val_loss", "-", 1.8, 1.0, "validation (training classes)", "tab:blue"),
        ("held_out_loss", "--", 1.8, 1.0, "held-out class", "tab:red"),
    )
    for k, run in enumerate(runs):
        ax = axes.flat[k]
        g = logs[logs["run"] == run]
        for col, ls, lw, alpha, _, color in curves:
            if col not in g:
                continue
            s, m, _, _ = seed_band(g, col)
            ax.plot(s, m, ls=ls, lw=lw, alpha=alpha, color=color)
        ax.axhline(0, color="0.6", lw=0.8)
        log_steps(ax)
        ax.set_yscale("symlog", linthresh=10.0)
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=9)
        ax.set_title(titles[run], fontsize=9.5, loc="left")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("training step (log scale)", fontsize=9.5)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss (symlog)", fontsize=9.5)
    handles = [
        Line2D([], [], color=c, lw=lw, ls=ls, alpha=a, label=lab) for _, ls, lw, a, lab, c in curves
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9.5, frameon=False)
    n_seeds = int(logs["seed"].nunique()) if "seed" in logs else 1
    seeds = f"mean over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    fig.suptitle(f"{title} ({seeds})", fontsize=11)
    fig.tight_layout(rect=(0, 0.45 / fig.get_figheight(), 1, 1))
    save_figure(fig, path, pdf=True)
