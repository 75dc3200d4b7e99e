"""Figures. Every function draws from arrays or tidy tables and saves PNG (+ optional PDF)
atomically; nothing here computes results."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from conceptspace.io import write_with  # noqa: E402


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
