"""Every table of a study, and its metrics: the one entry point of the analysis package.

:func:`study_tables` turns the sweep's probe and intervention tables and its run information
into every derived table (trajectories, learning times, capability and emergence, and the
extension analyses); :func:`~.verdicts.study_metrics` turns those tables into the metrics;
:func:`analyze_study` does both. Nothing here reads or writes files.
"""

from __future__ import annotations

import pandas as pd

import conceptspace.analysis.capability as CP
import conceptspace.analysis.concept_distance as CD
import conceptspace.analysis.curves as CV
import conceptspace.analysis.dynamics_model as DM
import conceptspace.analysis.guidance as G
import conceptspace.analysis.trajectories as TJ
import conceptspace.analysis.underspecification as U
from conceptspace.analysis.verdicts import study_metrics

#: tables of the extension analyses, written by the analyze stage as ``<name>.csv`` (always;
#: header only where an analysis does not apply, so a study's outputs never change shape)
EXTENSION_TABLES = (
    "concept_distance",
    "dynamics_fit",
    "guidance_learning_times",
    "underspecification",
)


def study_tables(
    probe: pd.DataFrame, interv: pd.DataFrame, run_info: pd.DataFrame, analyze
) -> dict[str, pd.DataFrame]:
    """All tables of a sweep. ``run_info``: run, sep_<concept>, signal_<concept>[, mask_fraction];
    ``analyze``: the ``analyze`` params section.

    Returns ``trajectories``, ``trajectories_by_seed``, ``learning_times`` (per seed),
    ``learning_times_summary`` (mean over seeds), ``capability`` (best dose per checkpoint with
    its Bonferroni interval), ``dose_response`` (per-concept accuracy per dose), ``emergence``
    (per seed, read with the intervals), ``leads`` (the per-seed leads summarized over seeds),
    ``train_accuracy``, and those of the extensions:
    ``concept_distance``, ``dynamics_fit``, ``dynamics_curves``, ``dynamics_skipped``,
    ``guidance_trajectories``, ``guidance_learning_times``, ``underspecification``.
    """
    thresholds = tuple(analyze.thresholds)
    traj = TJ.trajectories(probe, sigma=analyze.sigma)
    lt = CV.learning_times(probe, thresholds, sigma=analyze.lt_sigma, k=analyze.persistence)
    lt_sum = CV.summarize_over_seeds(lt)
    train_acc = CV.training_accuracy(probe)
    since = CP.readable_from(train_acc, analyze.ready_acc, analyze.sigma)
    em = CP.emergence(
        interv,
        thresholds,
        sigma=analyze.emergence_sigma,
        k=analyze.emergence_persistence,
        since=since,
    )
    fits, curves, skipped = DM.fit_held_out(traj)
    if U.COLUMN not in run_info:
        run_info = run_info.assign(**{U.COLUMN: 0.0})
    thr = float(thresholds[0])
    return {
        "trajectories": traj,
        "trajectories_by_seed": TJ.trajectories(probe, sigma=analyze.sigma, by_seed=True),
        "learning_times": lt,
        "learning_times_summary": lt_sum,
        "capability": CP.capability_curves(interv),
        "dose_response": CP.dose_response(interv),
        "emergence": em,
        "leads": CP.summarize_leads(em),
        "train_accuracy": train_acc,
        "concept_distance": CD.distance_to_time(probe, traj, analyze),
        "dynamics_fit": fits,
        "dynamics_curves": curves,
        "dynamics_skipped": pd.DataFrame(skipped, columns=["run", "class", "reason"]),
        "guidance_trajectories": G.trajectories(interv, traj, sigma=analyze.sigma),
        "guidance_learning_times": G.learning_times(
            interv, thr, sigma=analyze.lt_sigma, k=analyze.persistence
        ),
        "underspecification": U.table(lt_sum, run_info),
    }


def analyze_study(
    probe: pd.DataFrame, interv: pd.DataFrame, run_info: pd.DataFrame, analyze
) -> tuple[dict[str, pd.DataFrame], dict]:
    """``(tables, metrics)`` of a sweep: :func:`study_tables`, then :func:`study_metrics`."""
    tables = study_tables(probe, interv, run_info, analyze)
    return tables, study_metrics(tables, run_info, analyze)
