"""Learning-dynamics analyses in concept space (paper_spec §5 and §6).

Pure functions: numpy arrays and pandas tables in, numbers and tables out. No file I/O, no
plotting. The input tables are the tidy outputs of the `probe` and `intervene` stages:

* probe table, one row per (run, seed, step, class, concept): ``run, seed, step, class,
  held_out, concept, target, p1, acc, count``. The concept-space coordinate of a class on
  concept k is ``p1`` (the mean over images of P(value index 1), e.g. P(blue), P(small)).
* intervention table, one row per (run, seed, step, method, setting, class): ``run, seed, step,
  method, setting, class, p_<concept>..., acc_<concept>..., joint_acc, count``.
* run info, one row per run: ``run, signal_<concept>..., sep_<concept>...``.

Conventions used throughout:

* Smoothing is along the *checkpoint index*, not along the step axis (as in the paper), with a
  Gaussian of width ``sigma`` checkpoints (``mode="nearest"``, ``truncate=6``).
* A "crossing" is *sustained*: ``k`` consecutive checkpoints at or above the threshold; the
  reported step is the first checkpoint of that run of ``k``.
* A curve that never crosses is *censored*: its time is reported as the last checkpoint step
  (the training budget) with ``censored=True``. That value is a lower bound, not a measurement.
* Seed aggregation (``aggregate_seeds=True``) averages the *curves* over seeds first and then
  measures one time; such tables have a column ``n_seeds`` instead of ``seed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.ndimage import gaussian_filter1d

#: values of the ``group`` column of :func:`learning_times`
GROUP_CLASS = "class"
GROUP_HELD_OUT = "held_out"
GROUP_TRAIN = "train"

NAIVE = "naive"


# --------------------------------------------------------------------------------------------
# Curves: smoothing and sustained threshold crossings
# --------------------------------------------------------------------------------------------


def smooth(y: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """Gaussian-smooth ``y`` along ``axis`` (the checkpoint index).

    Uses ``gaussian_filter1d(mode="nearest", truncate=6)`` as the authors' analysis does, so
    the ends are not pulled towards zero. ``sigma`` is in checkpoints; ``sigma <= 0`` returns an
    unsmoothed float copy. Input must be finite (NaNs would spread over the kernel width).
    """
    y = np.asarray(y, dtype=float)
    if sigma <= 0:
        return y.copy()
    return gaussian_filter1d(y, float(sigma), axis=axis, mode="nearest", truncate=6.0)


def _first_sustained_index(values: np.ndarray, threshold: float, k: int) -> int | None:
    """Index of the first element of the first run of ``k`` values ``>= threshold``.

    NaN never counts as above. A run shorter than ``k`` that reaches the end of the series does
    not count (as with the authors' binary erosion), so series shorter than ``k`` give None.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    above = np.asarray(values, dtype=float) >= threshold
    run = 0
    for i, is_above in enumerate(above):
        run = run + 1 if is_above else 0
        if run >= k:
            return i - k + 1
    return None


def _check_curve(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steps, values = np.asarray(steps), np.asarray(values, dtype=float)
    if steps.ndim != 1 or steps.shape != values.shape:
        raise ValueError(f"steps {steps.shape} and values {values.shape} must be equal 1-D")
    if steps.size > 1 and np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    return steps, values


def first_sustained_crossing(
    steps: np.ndarray, values: np.ndarray, threshold: float, k: int = 3
) -> int | float | None:
    """First step at which ``values`` stays ``>= threshold`` for ``k`` consecutive checkpoints.

    steps, values: shape [T], steps strictly increasing. Returns the step of the *first*
    checkpoint of that run (the authors' code returns the centre of a 3-window instead, which is
    one checkpoint later), or None if it never happens (censored).
    """
    steps, values = _check_curve(steps, values)
    i = _first_sustained_index(values, threshold, k)
    return None if i is None else steps[i].item()


def learning_time(
    steps: np.ndarray, acc: np.ndarray, threshold: float, *, sigma: float = 1.5, k: int = 3
) -> tuple[float, bool]:
    """Learning time of one accuracy curve (paper_spec §5.3): smooth, then sustained crossing.

    steps, acc: shape [T]. Returns ``(step, censored)``. When the smoothed curve never stays
    above ``threshold`` the result is ``(steps[-1], True)``: the training budget, which is only a
    *lower bound* on the true learning time (the authors' code caps at the budget the same way).
    """
    steps, acc = _check_curve(steps, acc)
    t = first_sustained_crossing(steps, smooth(acc, sigma), threshold, k)
    if t is None:
        return float(steps[-1]), True
    return float(t), False


def joint_learning_time(
    steps: np.ndarray, acc: np.ndarray, threshold: float, *, sigma: float = 1.5, k: int = 3
) -> tuple[float, bool]:
    """When *every* concept of a class is learned: the first sustained crossing of the worst
    concept's smoothed accuracy (paper_spec §7.1 "class-learned time").

    steps: [T]; acc: [T, K], one accuracy curve per concept. Each column is smoothed on its own
    (as in :func:`learning_time`), then the minimum over columns must stay ``>= threshold`` for
    ``k`` checkpoints. Returns ``(step, censored)``; censored gives the budget ``steps[-1]``.
    """
    acc = np.asarray(acc, dtype=float)
    acc = acc[:, None] if acc.ndim == 1 else acc
    steps, worst = _check_curve(steps, smooth(acc, sigma, axis=0).min(axis=1))
    t = first_sustained_crossing(steps, worst, threshold, k)
    if t is None:
        return float(steps[-1]), True
    return float(t), False


# --------------------------------------------------------------------------------------------
# Learning times from the probe table
# --------------------------------------------------------------------------------------------


def _accuracy_curves(probe: pd.DataFrame) -> pd.DataFrame:
    """Per-class and pooled accuracy curves, long format.

    Returns columns ``run, seed, group, class, held_out, concept, step, acc``. Pooled groups
    (``held_out``/``train``) are the unweighted mean over their classes at each step, and their
    ``class`` is the "+"-joined sorted member class names.
    """
    keys = ["run", "seed", "class", "held_out", "concept", "step"]
    per_class = probe.groupby(keys, as_index=False, sort=True)["acc"].mean()
    per_class.insert(2, "group", GROUP_CLASS)

    members = (
        per_class.groupby(["run", "held_out"])["class"]
        .agg(lambda s: "+".join(sorted(s.unique())))
        .rename("pooled_class")
        .reset_index()
    )
    pooled = per_class.groupby(["run", "seed", "held_out", "concept", "step"], as_index=False)[
        "acc"
    ].mean()
    pooled = pooled.merge(members, on=["run", "held_out"]).rename(columns={"pooled_class": "class"})
    pooled["group"] = np.where(pooled["held_out"], GROUP_HELD_OUT, GROUP_TRAIN)
    cols = ["run", "seed", "group", "class", "held_out", "concept", "step", "acc"]
    return pd.concat([per_class[cols], pooled[cols]], ignore_index=True)


def _seed_mean(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean of ``value`` over seeds per ``keys`` (which must include ``step``), plus n_seeds."""
    out = df.groupby(keys, as_index=False, sort=True).agg(
        **{value: (value, "mean"), "n_seeds": ("seed", "nunique")}
    )
    # one n_seeds per curve (the largest count over its steps), not per step
    curve_keys = [c for c in keys if c != "step"]
    out["n_seeds"] = out.groupby(curve_keys)["n_seeds"].transform("max")
    return out


def learning_times(
    probe: pd.DataFrame,
    thresholds: Sequence[float] = (0.8, 0.9),
    *,
    sigma: float = 1.5,
    k: int = 3,
    aggregate_seeds: bool = False,
) -> pd.DataFrame:
    """Learning time of every accuracy curve in a probe table (paper_spec §5.3).

    Curves are the per-image accuracy ``acc`` against step, for

    * ``group == "class"``: each class on its own (``class`` = the class name);
    * ``group == "held_out"`` / ``"train"``: the unweighted mean of ``acc`` over the held-out /
      training classes at each step (``class`` = the "+"-joined member names).

    With ``aggregate_seeds=False`` there is one row per (run, seed, group, class, concept,
    threshold); with ``True`` the curves are first averaged over seeds (the paper instead averages
    per-seed times: see :func:`summarize_over_seeds`) and ``seed`` is replaced by ``n_seeds``.

    Output columns: ``run, seed | n_seeds, group, class, held_out, concept, threshold,
    learning_time, censored, budget``. ``learning_time`` equals ``budget`` (the last checkpoint
    step) when ``censored`` — a lower bound.
    """
    curves = _accuracy_curves(probe)
    curve_keys = ["run", "seed", "group", "class", "held_out", "concept"]
    id_cols = ["run", "seed"]
    if aggregate_seeds:
        curve_keys.remove("seed")
        curves = _seed_mean(curves, curve_keys + ["step"], "acc")
        id_cols = ["run", "n_seeds"]

    rows = []
    for key, g in curves.groupby(curve_keys, sort=True):
        g = g.sort_values("step")
        steps, acc = g["step"].to_numpy(), g["acc"].to_numpy()
        row = dict(zip(curve_keys, key, strict=True))
        if aggregate_seeds:
            row["n_seeds"] = int(g["n_seeds"].iloc[0])
        for thr in thresholds:
            t, cens = learning_time(steps, acc, thr, sigma=sigma, k=k)
            rows.append(
                {
                    **row,
                    "threshold": float(thr),
                    "learning_time": t,
                    "censored": cens,
                    "budget": float(steps[-1]),
                }
            )
    cols = id_cols + ["group", "class", "held_out", "concept", "threshold"]
    cols += ["learning_time", "censored", "budget"]
    return pd.DataFrame(rows, columns=cols)


def summarize_over_seeds(times: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over seeds of per-seed learning times (the paper's aggregation).

    ``times``: output of ``learning_times(aggregate_seeds=False)``. Censored seeds enter at the
    budget, so any censored seed makes the mean a lower bound (``mean_is_lower_bound``).
    Output columns: ``run, group, class, held_out, concept, threshold, learning_time_mean,
    learning_time_std, n_seeds, n_censored, mean_is_lower_bound, budget``.
    """
    keys = ["run", "group", "class", "held_out", "concept", "threshold"]
    out = times.groupby(keys, as_index=False, sort=True).agg(
        learning_time_mean=("learning_time", "mean"),
        learning_time_std=("learning_time", lambda s: float(np.std(s, ddof=0))),
        n_seeds=("seed", "nunique"),
        n_censored=("censored", "sum"),
        budget=("budget", "max"),
    )
    out["n_censored"] = out["n_censored"].astype(int)
    out["mean_is_lower_bound"] = out["n_censored"] > 0
    stats_cols = ["learning_time_mean", "learning_time_std", "n_seeds", "n_censored"]
    return out[keys + stats_cols + ["mean_is_lower_bound", "budget"]]


def signal_table(run_info: pd.DataFrame) -> pd.DataFrame:
    """Run info reshaped long: one row per (run, concept) with columns ``run, concept, signal,
    sep``, ready to merge onto learning-time tables by ``(run, concept)``."""
    concepts = [c.removeprefix("signal_") for c in run_info.columns if c.startswith("signal_")]
    rows = []
    for _, r in run_info.iterrows():
        for c in concepts:
            sep = r.get(f"sep_{c}", np.nan)
            rows.append({"run": r["run"], "concept": c, "signal": r[f"signal_{c}"], "sep": sep})
    return pd.DataFrame(rows, columns=["run", "concept", "signal", "sep"])


# --------------------------------------------------------------------------------------------
# Concept-space trajectories
# --------------------------------------------------------------------------------------------


def concepts_of(traj: pd.DataFrame) -> list[str]:
    """Concept names of a trajectory frame, read from its ``target_<concept>`` columns."""
    return [c.removeprefix("target_") for c in traj.columns if c.startswith("target_")]


def trajectories(probe: pd.DataFrame, *, sigma: float = 2.0, by_seed: bool = False) -> pd.DataFrame:
    """Concept-space trajectory of every (run, class[, seed]) (paper_spec §5.1).

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
    """First step at which the training classes have reached their corners (paper_spec §5.1 star).

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
    """Speed ‖dC/dt‖ in concept units per step (paper_spec §5.4).

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
    """Locate the sudden turn of a (held-out) trajectory (paper_spec §5.5).

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
    traj_heldout: pd.DataFrame,
    targets_train: Mapping[str, Sequence[float]],
    *,
    until_step: float | None,
    since_step: float | None = None,
    concepts: Sequence[str] | None = None,
) -> dict:
    """Which training class a held-out trajectory imitates before it turns (paper_spec §5.5).

    ``traj_heldout``: the rows of one held-out class (one run [, one seed]) with ``step`` and one
    column per concept; concepts default to its ``target_<concept>`` columns. The window is
    ``since_step <= step <= until_step`` (None = open end), e.g. up to the turn or the
    saturation step. The memorised class is the one with the smallest *mean* distance over the
    window. E.g. at weak color separation the small-blue prompt first yields small red, at strong
    color separation large blue.

    Returns ``nearest_class, mean_distance, frac_nearest`` (fraction of window checkpoints at
    which that class is the nearest), ``min_distance, min_distance_step`` (closest approach),
    ``n_checkpoints`` and ``mean_distances`` ({class: mean distance}).
    """
    concepts = list(concepts) if concepts is not None else concepts_of(traj_heldout)
    if not concepts:
        raise ValueError("no concept columns: pass `concepts` or a frame with target_ columns")
    g = traj_heldout.sort_values("step")
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
    """Saturation, speed collapse, turn and memorization of one run's trajectory frame.

    ``traj``: one run (one seed, or seed-averaged) from :func:`trajectories` with exactly one
    held-out class. The turn is searched after the training speed collapse; the memorization
    window ends at the saturation step (the paper's turn marker), else at the heading turn.
    Returns a flat dict: ``saturation_step, speed_collapse_step, heading_step, angle_deg,
    speed_peak_step, speed_peak, nearest_class, mean_distance, frac_nearest, min_distance,
    min_distance_step``.
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
    sat = saturation_step(traj, tol=tol)
    until = sat if sat is not None else turn["heading_step"]
    mem = memorization(traj[traj["class"] == held[0]], targets, until_step=until)
    mem.pop("mean_distances")
    mem.pop("n_checkpoints")
    return {"saturation_step": sat, "speed_collapse_step": collapse, **turn, **mem}


# --------------------------------------------------------------------------------------------
# Hidden capabilities: capability curves and emergence
# --------------------------------------------------------------------------------------------


def joint_probability(interv: pd.DataFrame, targets: Mapping[str, int] | None = None) -> pd.Series:
    """The paper's capability accuracy of each row: Π_k mean P(target value of concept k).

    Uses the ``p_<concept>`` columns (mean P(value 1)); ``targets`` maps concept → 0/1 and
    defaults to 1 for every concept (the held-out all-ones corner, e.g. small blue). Assign it as
    a column and pass its name as ``value`` to :func:`capability_curves` / :func:`emergence`.
    """
    concepts = [c.removeprefix("p_") for c in interv.columns if c.startswith("p_")]
    out = pd.Series(1.0, index=interv.index)
    for c in concepts:
        p = interv[f"p_{c}"].astype(float)
        out *= p if (targets or {}).get(c, 1) == 1 else 1.0 - p
    return out.rename("joint_p")


def capability_curves(interv: pd.DataFrame, *, value: str = "joint_acc") -> pd.DataFrame:
    """Capability(t) = max over settings of a method's accuracy (paper_spec §6).

    One row per (run, seed, step, method, class) with the best setting's ``value`` (default
    ``joint_acc``). ``naive`` has a single setting and so passes through unchanged. Ties go to
    the setting that sorts first. Output columns: ``run, seed, step, method, class, capability,
    best_setting, n_settings``.
    """
    keys = ["run", "seed", "step", "method", "class"]
    df = interv.dropna(subset=[value]).sort_values(keys + ["setting"], kind="stable")
    best = df.loc[df.groupby(keys, sort=True)[value].idxmax(), keys + ["setting", value]]
    best = best.rename(columns={value: "capability", "setting": "best_setting"})
    n = df.groupby(keys, sort=True)["setting"].nunique().rename("n_settings").reset_index()
    out = best.merge(n, on=keys).sort_values(keys, ignore_index=True)
    return out[keys + ["capability", "best_setting", "n_settings"]]


def emergence(
    interv: pd.DataFrame,
    thresholds: Sequence[float] = (0.8, 0.9),
    *,
    sigma: float = 1.0,
    k: int = 2,
    aggregate_seeds: bool = False,
    value: str = "joint_acc",
) -> pd.DataFrame:
    """Emergence step of every capability curve and its lead over naive prompting (§6).

    Capability curves (:func:`capability_curves`, optionally averaged over seeds) are smoothed
    with ``sigma`` checkpoints; the emergence step is the first sustained (``k`` checkpoints)
    crossing of each threshold, or the budget (last step) with ``censored=True``.

    The lead over naive prompting of the same (run[, seed], class) is ``lead_steps = naive_step
    − emergence_step`` and ``lead_checkpoints`` = the number of checkpoints between the two
    crossings. If naive prompting is censored its step counts as the budget and the lead is a
    lower bound (``lead_is_lower_bound``). If the method itself is censored, or the naive curve
    is missing, the lead is NaN. Naive rows have lead 0.

    Output columns: ``run, seed | n_seeds, class, method, threshold, emergence_step, censored,
    naive_step, naive_censored, lead_steps, lead_checkpoints, lead_is_lower_bound, budget``.
    """
    cap = capability_curves(interv, value=value)
    id_cols = ["run", "seed"]
    if aggregate_seeds:
        cap = _seed_mean(cap, ["run", "class", "method", "step"], "capability")
        id_cols = ["run", "n_seeds"]
    group_keys = ["run", "class"] if aggregate_seeds else ["run", "seed", "class"]

    rows = []
    for key, g in cap.groupby(group_keys, sort=True):
        ident = dict(zip(group_keys, key, strict=True))
        grid = np.sort(g["step"].unique())
        crossings = {}  # (method, threshold) -> (index into grid, censored)
        for method, m in g.groupby("method", sort=True):
            m = m.sort_values("step")
            steps = m["step"].to_numpy()
            curve = smooth(m["capability"].to_numpy(), sigma)
            for thr in thresholds:
                i = _first_sustained_index(curve, thr, k)
                step = steps[-1] if i is None else steps[i]
                crossings[method, thr] = (int(np.searchsorted(grid, step)), i is None)
        n_seeds = int(g["n_seeds"].max()) if aggregate_seeds else None
        for (method, thr), (i, cens) in crossings.items():
            row = {**ident, "method": method, "threshold": float(thr)}
            if aggregate_seeds:
                row["n_seeds"] = n_seeds
            row.update(emergence_step=float(grid[i]), censored=cens, budget=float(grid[-1]))
            naive = crossings.get((NAIVE, thr))
            row.update(
                naive_step=np.nan,
                naive_censored=None,
                lead_steps=np.nan,
                lead_checkpoints=np.nan,
                lead_is_lower_bound=False,
            )
            if naive is not None:
                j, naive_cens = naive
                row.update(naive_step=float(grid[j]), naive_censored=naive_cens)
                if not cens:
                    row.update(
                        lead_steps=float(grid[j] - grid[i]),
                        lead_checkpoints=float(j - i),
                        lead_is_lower_bound=bool(naive_cens),
                    )
            rows.append(row)
    cols = id_cols + ["class", "method", "threshold", "emergence_step", "censored"]
    cols += ["naive_step", "naive_censored", "lead_steps", "lead_checkpoints"]
    cols += ["lead_is_lower_bound", "budget"]
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------
# Learning time against concept signal
# --------------------------------------------------------------------------------------------


def _linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """OLS ``y = slope·x + intercept``; returns (slope, intercept, r2), NaNs if degenerate."""
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - (slope * x + intercept)) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else float("nan"))
    return float(slope), float(intercept), float(r2)


def fit_inverse_time(signal: np.ndarray, T: np.ndarray, censored: np.ndarray | None = None) -> dict:
    """Fit learning speed 1/T against concept signal on the uncensored points (§5.3 extra).

    signal, T, censored: shape [N]. Two fits, both ordinary least squares:

    * linear: ``1/T = slope·signal + intercept`` → ``slope, intercept, r2, n``;
    * power law: ``log(1/T) = log(power_prefactor) + power_exponent·log(signal)`` on the points
      with signal > 0 → ``power_exponent, power_prefactor, power_r2, power_n``.

    Censored points (T only a lower bound) and non-finite or non-positive T are left out
    (``n_excluded``). Fewer than 2 usable points, or a constant signal, give NaNs.
    """
    x = np.asarray(signal, dtype=float)
    t = np.asarray(T, dtype=float)
    cens = np.zeros(x.shape, bool) if censored is None else np.asarray(censored, dtype=bool)
    ok = np.isfinite(x) & np.isfinite(t) & (t > 0) & ~cens
    slope, intercept, r2 = _linear_fit(x[ok], 1.0 / t[ok])
    pos = ok & (x > 0)
    p_exp, log_c, p_r2 = _linear_fit(np.log(x[pos]), -np.log(t[pos]))
    return {
        "slope": slope,
        "intercept": intercept,
        "r2": r2,
        "n": int(ok.sum()),
        "power_exponent": p_exp,
        "power_prefactor": float(np.exp(log_c)),
        "power_r2": p_r2,
        "power_n": int(pos.sum()),
        "n_excluded": int((~ok).sum()),
    }


def is_monotone_decreasing(
    x: np.ndarray, y: np.ndarray, censored: np.ndarray | None = None, *, strict: bool = True
) -> dict:
    """Does learning time fall as concept signal grows? (paper_spec §5.3 shape claim)

    x (signal), y (learning time), censored: shape [N], one point per distinct signal (aggregate
    seeds first; repeated x raises ValueError). The rule, explicitly:

    1. a censored y is only known to be ≥ the budget, so it is treated as +inf;
    2. sorted by x, every consecutive pair must have y strictly decreasing (``strict=False``:
       non-increasing), except that two censored neighbours (inf, inf) are an allowed tie;
    3. the evidence must be sufficient: at least 3 points and at least 2 uncensored ones,
       otherwise ``monotone`` is False with ``reason="insufficient"``.

    Returns ``monotone`` (bool), ``reason`` ("ok" | "insufficient" | "violated"),
    ``violations`` (list of (x_i, x_{i+1}) pairs breaking rule 2), ``n``, ``n_uncensored``,
    ``spearman_rho`` (of x against y with censored = +inf; negative means decreasing) and
    ``spearman_p``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    cens = np.zeros(x.shape, bool) if censored is None else np.asarray(censored, dtype=bool)
    if not (x.shape == y.shape == cens.shape) or x.ndim != 1:
        raise ValueError("x, y and censored must be 1-D arrays of equal length")
    if np.unique(x).size != x.size:
        raise ValueError("x has repeated values: aggregate points with the same signal first")
    order = np.argsort(x)
    x, cens = x[order], cens[order]
    y = np.where(cens, np.inf, y[order])

    violations = []
    for i in range(x.size - 1):
        both_censored = cens[i] and cens[i + 1]
        ok = y[i + 1] < y[i] if strict else y[i + 1] <= y[i]
        if not (ok or both_censored):
            violations.append((float(x[i]), float(x[i + 1])))

    n, n_unc = int(x.size), int((~cens).sum())
    rho = p = float("nan")
    if n >= 2 and np.unique(y).size > 1:
        res = stats.spearmanr(x, y)  # ranks: +inf is simply the largest
        rho, p = float(res.statistic), float(res.pvalue)
    if n < 3 or n_unc < 2:
        reason = "insufficient"
    else:
        reason = "violated" if violations else "ok"
    return {
        "monotone": reason == "ok",
        "reason": reason,
        "violations": violations,
        "n": n,
        "n_uncensored": n_unc,
        "spearman_rho": rho,
        "spearman_p": p,
    }
