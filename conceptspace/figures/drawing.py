"""The one entry point of the figures: :func:`draw_study` draws every figure a study calls for.

The two-concept figures are always drawn (trajectories and their animation, learning times,
capability and the dose-response of each elicitation method, embeddings, training curves,
samples over training per run); the figures of the
extensions only where their analysis applies (docs/method.md §7, §9). Drawing only: the tables
and metrics come from :func:`conceptspace.analysis.tables.analyze_study`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from conceptspace.analysis.trajectories import concepts_of
from conceptspace.figures import extensions as X
from conceptspace.figures.capability import capability_figure, dose_response_figure
from conceptspace.figures.diagnostics import (
    embedding_figure,
    samples_over_training_figure,
    training_curves_figure,
)
from conceptspace.figures.learning_times import learning_time_figure
from conceptspace.figures.trajectories import trajectory_animation, trajectory_figure


def drawn_concepts(traj: pd.DataFrame, info: pd.DataFrame) -> tuple[tuple[str, str], str]:
    """The two concepts of the 2-D trajectory figures (color x size when the grid has them, else
    its first two) and the concept whose separation colours the runs: the swept concept (the
    one whose separation varies, as :func:`conceptspace.analysis.verdicts.swept_concept`: size
    in a size sweep); color when none or several vary, else the first varying one."""
    concepts = concepts_of(traj)
    plane = ("color", "size") if {"color", "size"} <= set(concepts) else tuple(concepts[:2])
    varying = [c for c in concepts if f"sep_{c}" in info and info[f"sep_{c}"].nunique() > 1]
    if len(varying) == 1:
        return plane, varying[0]
    color_by = "color" if "color" in concepts else (varying or concepts)[0]
    return plane, color_by


def _sample_picks(steps: np.ndarray, heading_step: float | None) -> list[int]:
    """Checkpoints of the sample grid: first, a quarter in, the turn (else the middle), last."""
    marks = [steps[0], heading_step or steps[len(steps) // 2], steps[-1]]
    return sorted({int(np.searchsorted(steps, m)) for m in marks} | {len(steps) // 4})


def draw_study(
    tables: Mapping[str, pd.DataFrame],
    metrics: dict,
    run_info: pd.DataFrame,
    fig_dir: str | Path,
    params,
    *,
    embeddings: pd.DataFrame,
    losses: pd.DataFrame,
    samples: Mapping[str, dict[str, np.ndarray]],
) -> None:
    """Draw every figure of a study into ``fig_dir``.

    ``tables``/``metrics``: of :func:`~conceptspace.analysis.tables.analyze_study`;
    ``run_info``: one row per run (separations, signals, masked fraction); ``params``: the
    validated params (``analyze``, ``grid_for``, ``seeds``); ``embeddings``/``losses``: the
    intervene stage's embedding table and the training logs; ``samples``: run -> the probe
    stage's ``samples.npz`` of the first seed (``steps``, ``images``, ``class_id``).
    """
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    analyze, traj = params.analyze, tables["trajectories"]
    turns = {r: m["trajectory"] for r, m in metrics["runs"].items()}
    plane, color_by = drawn_concepts(traj, run_info)
    style = {"concepts": plane, "color_by": color_by}
    trajectory_figure(traj, run_info, turns, fig_dir / "trajectories.png", **style)
    trajectory_animation(traj, run_info, fig_dir / "trajectories.gif", turns=turns, **style)
    thr = analyze.thresholds[0]
    fits = {
        c: {k: np.nan if v is None else v for k, v in by_thr[str(thr)].items()}
        for c, by_thr in metrics["fits_inverse_time"].items()
    }
    learning_time_figure(
        tables["learning_times_summary"],
        run_info,
        fits,
        fig_dir / "learning_times.png",
        fit_threshold=thr,
    )
    capability_figure(
        tables["capability"],
        tables["train_accuracy"],
        tables["emergence"],
        fig_dir / "capability.png",
        threshold=analyze.capability_threshold,
    )
    # the dose-response behind each elicited capability curve (docs/method.md §6)
    dose = tables["dose_response"]
    for method in sorted(set(dose["method"]) - {"naive", "guidance"}):
        dose_response_figure(
            dose,
            {r: t.get("heading_step") for r, t in turns.items()},
            fig_dir / f"dose_response_{method}.png",
            method=method,
            threshold=analyze.capability_threshold,
        )
    embedding_figure(embeddings, fig_dir / "embeddings.png")
    training_curves_figure(
        losses, fig_dir / "training_curves.png", run_info=run_info, color_by=color_by
    )
    seed = params.seeds[0]
    for run, s in samples.items():
        grid = params.grid_for(run)
        samples_over_training_figure(
            s["images"],
            s["steps"],
            grid.class_names,
            s["class_id"],
            fig_dir / f"samples_{run}.png",
            picks=_sample_picks(s["steps"], turns[run].get("heading_step")),
            held_out=[grid.class_name(k) for k in grid.held_out_classes],
            title=f"{run}: generated samples over training (seed {seed})",
        )
    _extension_figures(tables, metrics, fig_dir, threshold=float(thr))


def _extension_figures(tables, metrics: dict, fig_dir: Path, *, threshold: float) -> None:
    """The figures of the analyses beyond two concepts, each drawn only where it applies (the
    report lists whatever PNGs the folder holds)."""
    traj, dist, cd = tables["trajectories"], tables["concept_distance"], metrics["concept_distance"]
    # distance at convergence against learning time is a three-concept analysis (§7.1): with
    # two concepts there is one held-out class per run and nothing to relate
    if not dist.empty and len(concepts_of(traj)) >= 3:
        X.distance_time_figure(dist, cd["relation"], fig_dir / "distance_vs_learning_time.png")
    if len(traj) and len(concepts_of(traj)) >= 3:
        X.cube_trajectory_figure(traj, cd["convergence_step"], fig_dir / "trajectories_3d.png")
    if not tables["dynamics_fit"].empty:
        X.dynamics_fit_figure(
            tables["dynamics_curves"], tables["dynamics_fit"], fig_dir / "dynamics_model_fit.png"
        )
    if not tables["guidance_learning_times"].empty:
        X.guidance_figure(
            tables["guidance_trajectories"],
            tables["guidance_learning_times"],
            fig_dir / "guidance.png",
        )
    if metrics["underspecification"]["applicable"]:
        X.underspecification_figure(
            tables["underspecification"],
            traj,
            metrics["underspecification"]["mask_fractions"],
            fig_dir / "underspecification.png",
            threshold=threshold,
        )
