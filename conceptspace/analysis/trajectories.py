"""Concept-space trajectories: where each class stands, when it saturates, turns and memorizes.

docs/method.md §5.4-§5.5. A trajectory frame (:func:`trajectories`) has one row per (run,
[seed,] class, step) with one column per concept (its smoothed coordinate, mean P(value 1)) and
``target_<concept>`` columns (the class's corner). Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from conceptspace.analysis.curves import smooth

# --------------------------------------------------------------------------------------------
# Concept-space trajectories
# --------------------------------------------------------------------------------------------


def concepts_of(traj: pd.DataFrame) -> list[str]:
    """Concept names of a trajectory frame, read from its ``target_<concept>`` columns."""
    return [c.removeprefix("target_") for c in traj.columns if c.startswith("target_")]


def trajectories(probe: pd.DataFrame, *, sigma: float = 2.0, by_seed: bool = False) -> pd.DataFrame:
    """Concept-space trajectory of every (run, class[, seed]) (docs/method.md §5.1).

    The coordinate on concept k is ``p1``; with ``by_seed=False`` it is averaged over seeds
    first, then (in both cases) smoothed along the checkpoint index with ``sigma`` checkpoints.

    Output (wide, sorted by run, [seed,] class, step) columns: ``run, [seed,] class, held_out,
    step, <concept>..., target_<concept>...`` with concepts in order of first appearance.
    """
    concepts = list(pd.unique(probe["concept"]))
    keys = ["run", "seed", "class"] if by_seed else ["run", "class"]
    mean = probe.groupby(keys + ["held_out", "step", "concept"], sort=True)["p1"].mean()
    wide = mean.unstack("concept")[concepts].reset_index()
    wide.columns.name = None
    parts = []
    for _, g in wide.groupby(keys, sort=True):
        g = g.sort_values("step").copy()
        g[concepts] = smooth(g[concepts].to_numpy(), sigma, axis=0)
        parts.append(g)
    wide = pd.concat(parts, ignore_index=True)

    targets = probe.groupby(["run", "class", "concept"])["target"].first().unstack("concept")
    targets = targets[concepts].add_prefix("target_").reset_index()
    targets.columns.name = None
    out = wide.merge(targets, on=["run", "class"], how="left")
    return out[keys + ["held_out", "step", *concepts, *(f"target_{c}" for c in concepts)]]


def trajectory_arrays(traj: pd.DataFrame, cls: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps [T], xy [T, d])`` of class ``cls`` in one run's trajectory frame."""
    g = traj[traj["class"] == cls].sort_values("step")
    if g.empty:
        raise KeyError(f"class {cls!r} not in trajectory frame")
    if g["step"].duplicated().any():
        raise ValueError("duplicate steps: pass one run (and one seed) only")
    return g["step"].to_numpy(dtype=float), g[concepts_of(traj)].to_numpy(dtype=float)


def training_targets(traj: pd.DataFrame) -> dict[str, tuple[float, ...]]:
    """``{class: target corner}`` of the training (non-held-out) classes of a trajectory frame."""
    cols = [f"target_{c}" for c in concepts_of(traj)]
    train = traj[~traj["held_out"].astype(bool)].drop_duplicates("class")
    return {r["class"]: tuple(float(r[c]) for c in cols) for _, r in train.iterrows()}


def _single_run(traj: pd.DataFrame) -> None:
    if traj["run"].nunique() > 1 or ("seed" in traj and traj["seed"].nunique() > 1):
        raise ValueError("pass the trajectory frame of a single run (and a single seed)")


def saturation_step(traj: pd.DataFrame, *, tol: float = 0.01) -> float | None:
    """First step at which the training classes have reached their corners (docs/method.md §5.1).

    ``traj``: one run's output of :func:`trajectories`. At each step the squared Euclidean
    distance of every training class from its target corner is averaged over the training
    classes; returns the first step where that mean is ``< tol``, or None if never.
    """
    _single_run(traj)
    concepts = concepts_of(traj)
    train = traj[~traj["held_out"].astype(bool)]
    xy = train[concepts].to_numpy(dtype=float)
    target = train[[f"target_{c}" for c in concepts]].to_numpy(dtype=float)
    d2 = pd.Series(((xy - target) ** 2).sum(axis=1), index=train.index)
    mean_d2 = d2.groupby(train["step"]).mean().sort_index()
    below = mean_d2[mean_d2 < tol]
    return None if below.empty else float(below.index[0])


def concept_speed(steps: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Speed ‖dC/dt‖ in concept units per step (docs/method.md §5.4).

    steps: [T] strictly increasing (non-uniform allowed); xy: [T, d] (or [T]). Uses second-order
    central differences with respect to the actual steps (``np.gradient``). Returns [T].
    """
    steps = np.asarray(steps, dtype=float)
    xy = np.asarray(xy, dtype=float)
    xy = xy[:, None] if xy.ndim == 1 else xy
    if xy.shape[0] != steps.shape[0]:
        raise ValueError(f"steps {steps.shape} and xy {xy.shape} disagree on T")
    if steps.size < 2:
        return np.zeros(steps.size)
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    return np.linalg.norm(np.gradient(xy, steps, axis=0), axis=1)


def heading_changes(
    steps: np.ndarray, xy: np.ndarray, *, window: int = 1, min_disp_frac: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Change of heading along a trajectory, in degrees, robust to jitter and stalls.

    steps: [T]; xy: [T, d]. The heading leaving checkpoint i is ``d_i = xy[i+window] - xy[i]``
    (spanning ``window`` checkpoints averages out jitter). Headings shorter than
    ``min_disp_frac`` × the longest one are ignored: the direction of a near-standstill is
    noise, and a saturated tail would otherwise produce the largest "turns". At each checkpoint
    i with a kept heading, the change is the angle between ``d_i`` and the last kept heading
    that ended by i (``d_j`` with ``j + window <= i``). So a trajectory that stalls at the
    memorised corner and then leaves in a new direction turns where it leaves (with
    ``window > 1`` up to ``window - 1`` checkpoints early, as ``d_i`` already sees the departure).
    ``window=1`` is the plain angle between successive displacement vectors.
    Returns ``(vertex_steps [M], angles_deg [M])``.
    """
    steps = np.asarray(steps, dtype=float)
    xy = np.asarray(xy, dtype=float)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if len(steps) <= window:
        return np.empty(0), np.empty(0)
    disp = xy[window:] - xy[:-window]  # disp[i] leaves checkpoint i
    norm = np.linalg.norm(disp, axis=1)
    if norm.max() <= 0:
        return np.empty(0), np.empty(0)
    kept = np.flatnonzero(norm >= min_disp_frac * norm.max())
    v_steps, angles = [], []
    for i in kept:
        prior = kept[kept + window <= i]
        if prior.size == 0:
            continue
        j = prior[-1]
        cos = disp[j] @ disp[i] / (norm[j] * norm[i])
        v_steps.append(steps[i])
        angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return np.asarray(v_steps, dtype=float), np.asarray(angles, dtype=float)


def turn_step(
    steps: np.ndarray,
    xy: np.ndarray,
    *,
    after: float | None = None,
    window: int = 1,
    min_disp_frac: float = 0.1,
) -> dict:
    """Locate the sudden turn of a (held-out) trajectory (docs/method.md §5.5).

    steps: [T]; xy: [T, d], ideally smoothed. Two estimates, both restricted to steps ``>= after``
    when given (e.g. ``after`` = :func:`speed_collapse_step` of the training classes):

    * ``heading_step``: checkpoint of the largest heading change (see :func:`heading_changes`),
      with that change as ``angle_deg``;
    * ``speed_peak_step``: step of the maximum of ‖dC/dt‖, with the speed as ``speed_peak``.

    Missing estimates are None (steps) / NaN (values). On a trajectory smoothed with sigma
    checkpoints a sharp turn shows up to about 2·sigma checkpoints early (the kernel starts the
    departure before it happens).
    """
    steps = np.asarray(steps, dtype=float)
    xy = np.asarray(xy, dtype=float)
    lo = -np.inf if after is None else float(after)
    out: dict = {"heading_step": None, "angle_deg": float("nan")}
    v_steps, angles = heading_changes(steps, xy, window=window, min_disp_frac=min_disp_frac)
    ok = v_steps >= lo
    if ok.any():
        i = np.argmax(np.where(ok, angles, -np.inf))
        out.update(heading_step=float(v_steps[i]), angle_deg=float(angles[i]))
    speed = concept_speed(steps, xy)
    ok = steps >= lo
    out.update(speed_peak_step=None, speed_peak=float("nan"))
    if ok.any():
        i = np.argmax(np.where(ok, speed, -np.inf))
        out.update(speed_peak_step=float(steps[i]), speed_peak=float(speed[i]))
    return out


def speed_collapse_step(
    steps: np.ndarray, train_xy_list: Sequence[np.ndarray], *, frac: float = 0.2
) -> float | None:
    """When the training classes stop moving in concept space.

    steps: [T]; train_xy_list: one [T, d] trajectory per training class. Their speeds are
    averaged; returns the first step after the peak of that mean speed at which it falls below
    ``frac`` × the peak, or None if it never does.
    """
    speeds = np.mean([concept_speed(steps, xy) for xy in train_xy_list], axis=0)
    peak = int(np.argmax(speeds))
    below = np.flatnonzero(speeds[peak + 1 :] < frac * speeds[peak])
    return None if below.size == 0 else float(np.asarray(steps)[peak + 1 + below[0]])


def nearest_corner_path(xy: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest corner at each checkpoint.

    xy: [T, d]; corners: [K, d]. Returns ``(nearest [T] int index into corners, dist [T, K])``
    with Euclidean distances in concept space.
    """
    xy = np.asarray(xy, dtype=float)
    corners = np.asarray(corners, dtype=float)
    dist = np.linalg.norm(xy[:, None, :] - corners[None, :, :], axis=-1)
    return dist.argmin(axis=1), dist


def memorization(
    traj_held_out: pd.DataFrame,
    targets_train: Mapping[str, Sequence[float]],
    *,
    until_step: float | None,
    since_step: float | None = None,
    concepts: Sequence[str] | None = None,
) -> dict:
    """Which training class a held-out trajectory imitates before it turns (docs/method.md §5.5).

    ``traj_held_out``: the rows of one held-out class (one run [, one seed]) with ``step`` and one
    column per concept; concepts default to its ``target_<concept>`` columns. The window is
    ``since_step <= step <= until_step`` (None = open end), e.g. up to the turn or the
    saturation step. The memorised class is the one with the smallest *mean* distance over the
    window. E.g. at weak color separation the small-blue prompt first yields small red, at strong
    color separation large blue.

    Returns ``nearest_class, mean_distance, frac_nearest`` (fraction of window checkpoints at
    which that class is the nearest), ``min_distance, min_distance_step`` (closest approach),
    ``n_checkpoints`` and ``mean_distances`` ({class: mean distance}).
    """
    concepts = list(concepts) if concepts is not None else concepts_of(traj_held_out)
    if not concepts:
        raise ValueError("no concept columns: pass `concepts` or a frame with target_ columns")
    g = traj_held_out.sort_values("step")
    mask = np.ones(len(g), dtype=bool)
    if until_step is not None:
        mask &= g["step"].to_numpy() <= until_step
    if since_step is not None:
        mask &= g["step"].to_numpy() >= since_step
    names = list(targets_train)
    if not mask.any() or not names:
        return {
            "nearest_class": None,
            "mean_distance": float("nan"),
            "frac_nearest": float("nan"),
            "min_distance": float("nan"),
            "min_distance_step": None,
            "n_checkpoints": int(mask.sum()),
            "mean_distances": {},
        }
    steps = g["step"].to_numpy(dtype=float)[mask]
    corners = np.array([targets_train[c] for c in names], dtype=float)
    nearest, dist = nearest_corner_path(g[concepts].to_numpy(dtype=float)[mask], corners)
    mean_d = dist.mean(axis=0)
    j = int(mean_d.argmin())
    return {
        "nearest_class": names[j],
        "mean_distance": float(mean_d[j]),
        "frac_nearest": float(np.mean(nearest == j)),
        "min_distance": float(dist[:, j].min()),
        "min_distance_step": float(steps[dist[:, j].argmin()]),
        "n_checkpoints": int(mask.sum()),
        "mean_distances": {c: float(d) for c, d in zip(names, mean_d, strict=True)},
    }


def turn_summary(traj: pd.DataFrame, *, tol: float = 0.01, frac: float = 0.2) -> dict:
    """Saturation, speed collapse and turn of one run's trajectory frame (docs/method.md §5.5).

    ``traj``: one run (one seed, or seed-averaged) from :func:`trajectories` with exactly one
    held-out class. The turn is searched after the training speed collapse. Returns a flat dict:
    ``saturation_step, speed_collapse_step, heading_step, angle_deg, speed_peak_step,
    speed_peak``. Memorization has its own window: see :func:`memorization_window`.
    """
    _single_run(traj)
    held = traj.loc[traj["held_out"].astype(bool), "class"].unique()
    if len(held) != 1:
        raise ValueError(f"expected one held-out class, found {list(held)}")
    targets = training_targets(traj)
    steps, _ = trajectory_arrays(traj, next(iter(targets)))
    collapse = speed_collapse_step(
        steps, [trajectory_arrays(traj, c)[1] for c in targets], frac=frac
    )
    h_steps, h_xy = trajectory_arrays(traj, held[0])
    turn = turn_step(h_steps, h_xy, after=collapse)
    return {
        "saturation_step": saturation_step(traj, tol=tol),
        "speed_collapse_step": collapse,
        **turn,
    }


def memorization_window(
    steps: np.ndarray,
    train_acc: np.ndarray,
    saturation: float | None,
    *,
    ready_acc: float,
    sigma: float,
) -> dict:
    """The window in which memorization is read (docs/method.md §5.5).

    It opens at the first checkpoint at which the training classes are recognisable (their mean
    per-image accuracy ``train_acc`` [T], smoothed with ``sigma`` checkpoints, ``>= ready_acc``;
    earlier samples are noisy blobs) and closes at training saturation (``saturation``), or at
    the last checkpoint when training does not saturate after it opens (``end`` says which).
    When the training classes are never recognisable there is no window: ``window`` is None
    and ``reason`` says why. Returns ``window`` ([since, until] or None), ``end``, ``reason``.
    """
    steps = np.asarray(steps, dtype=float)
    ready = np.flatnonzero(smooth(np.asarray(train_acc, dtype=float), sigma) >= ready_acc)
    if ready.size == 0:
        return {
            "window": None,
            "end": None,
            "reason": f"the training classes never reach smoothed accuracy {ready_acc:g}",
        }
    since = float(steps[ready[0]])
    if saturation is not None and saturation > since:
        return {"window": [since, float(saturation)], "end": "saturation", "reason": None}
    return {"window": [since, float(steps[-1])], "end": "last checkpoint", "reason": None}
