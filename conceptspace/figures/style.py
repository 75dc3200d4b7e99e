"""Shared style of every figure: colours, markers, axes and labels, and saving.

Conventions shared by the figures (docs/method.md §9):

* concept-space coordinates are probabilities of value index 1 (``color`` → P(blue), ``size``
  → P(small)), drawn in the unit square;
* runs are coloured by a separation (default: the color separation Δcolor) with a truncated
  sequential colormap whose lightest colour is still visible on white;
* training steps are drawn on a log axis (checkpoints are roughly geometric in step);
* every figure is written as PNG plus PDF (:func:`save_figure`), atomically.
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
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from conceptspace.data.concepts import CONCEPTS  # noqa: E402
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
EXTRA_COLORS = ["tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray"]

METHOD_LABELS = {
    "naive": "naive prompting",
    "overprompt": "overprompting",
    "linear": "linear latent intervention",
    "guidance": "classifier-free guidance",
}

#: colours / line styles of the learning-time thresholds
THRESHOLD_STYLE = {0.8: ("#1f4e9c", "-", "o"), 0.9: ("#d95f02", "--", "s")}
THRESHOLD_FALLBACK = [("#1b9e77", ":", "D"), ("#7570b3", "-.", "^")]

PAIR_COLORS = ["tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]


def log_steps(ax, axis: str = "x") -> None:
    """Log-scaled step axis with plain labels on major ticks only (minor labels collide when
    the range spans less than a decade or two)."""
    from matplotlib.ticker import LogLocator, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    a.set_minor_formatter(NullFormatter())


def as_step(v) -> float | None:
    """A step value from a turn-summary dict, or None when missing / NaN."""
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def value_label(concept: str) -> str:
    """Axis label of a concept coordinate, e.g. ``"color: P(blue)"``."""
    if concept in CONCEPTS:
        return f"{concept}: P({CONCEPTS[concept][1]})"
    return f"{concept}: P(value 1)"


def pretty_class(name) -> str:
    return str(name).replace("_", " ")


def fmt_steps(n: float) -> str:
    return f"{n:,.0f}"


def sep_norm(values: Sequence[float]) -> mcolors.Normalize:
    vals = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if vals.size == 0:
        return mcolors.Normalize(0.0, 1.0)
    lo, hi = float(vals.min()), float(vals.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.05, hi + 0.05
    return mcolors.Normalize(lo, hi)


def run_colors(run_info: pd.DataFrame, runs: Sequence[str], color_by: str):
    """``({run: rgba}, norm, {run: separation})`` colouring runs by ``sep_<color_by>``."""
    col = f"sep_{color_by}"
    info = run_info.drop_duplicates("run").set_index("run")
    seps = {
        r: float(info.at[r, col]) if (r in info.index and col in info) else float("nan")
        for r in runs
    }
    norm = sep_norm(list(seps.values()))
    if not np.isfinite(list(seps.values())).any():  # no separations (e.g. real images)
        return {r: plt.get_cmap("tab10")(i % 10) for i, r in enumerate(runs)}, norm, seps
    colors = {
        r: SIGNAL_CMAP(norm(s)) if np.isfinite(s) else (0.4, 0.4, 0.4, 1.0) for r, s in seps.items()
    }
    return colors, norm, seps


def separation_colorbar(fig, cax, norm, seps: Mapping, color_by: str) -> None:
    """The colour scale of the runs' separations; hidden when no run has one."""
    if not np.isfinite(list(seps.values())).any():
        cax.set_visible(False)
        return
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=SIGNAL_CMAP), cax=cax)
    cb.set_label(f"{color_by} separation Δ{color_by}")


def method_color(method: str, others: dict) -> str:
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    if method not in others:
        others[method] = EXTRA_COLORS[len(others) % len(EXTRA_COLORS)]
    return others[method]


def threshold_style(thr: float, i: int) -> tuple[str, str, str]:
    for key, style in THRESHOLD_STYLE.items():
        if abs(thr - key) < 1e-9:
            return style
    return THRESHOLD_FALLBACK[i % len(THRESHOLD_FALLBACK)]


def seed_band(df: pd.DataFrame, value: str) -> tuple[np.ndarray, ...]:
    """``(steps, mean, min, max)`` of ``value`` over seeds at each step (NaNs dropped)."""
    g = df.dropna(subset=[value]).groupby("step")[value]
    out = g.agg(["mean", "min", "max"]).sort_index()
    return (out.index.to_numpy(float), *(out[c].to_numpy(float) for c in ("mean", "min", "max")))


def ordered_runs(df: pd.DataFrame, run_info: pd.DataFrame | None = None, by: str | None = None):
    runs = list(pd.unique(df["run"]))
    if run_info is not None and by is not None and f"sep_{by}" in run_info:
        sep = run_info.drop_duplicates("run").set_index("run")[f"sep_{by}"]
        runs.sort(key=lambda r: (float(sep.get(r, np.inf)), str(r)))
    else:
        runs.sort(key=str)
    return runs


def panel_grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def to_display(images: np.ndarray) -> np.ndarray:
    """``[N, 3, S, S]`` with the first spatial axis "x" -> ``[N, S, S, 3]`` for imshow
    (origin lower), clipped to [0, 1]."""
    return np.clip(images.transpose(0, 3, 2, 1), 0, 1)


def save_figure(fig, path: str | Path, *, pdf: bool = False) -> None:
    path = Path(path)
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight"))
    if pdf:
        pdf_path = path.with_suffix(".pdf")
        write_with(  # no creation date: the same figure gives the same bytes
            pdf_path,
            lambda tmp: fig.savefig(
                tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None}
            ),
        )
    plt.close(fig)


def sample_grid(
    rows: list[np.ndarray], row_labels: list[str], path: str | Path, *, title: str = ""
) -> None:
    """One row of images per label (e.g. per class); each entry of ``rows`` is ``[n, 3, S, S]``."""
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(0.9 * n_cols + 1.2, 0.95 * len(rows) + 0.4), squeeze=False
    )
    for i, (imgs, label) in enumerate(zip(rows, row_labels, strict=True)):
        shown = to_display(imgs)
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(shown):
                ax.imshow(shown[j], origin="lower", interpolation="nearest")
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    save_figure(fig, path)
