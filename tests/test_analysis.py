"""Known-answer tests of the concept-space dynamics analyses (docs/method.md §5, §6)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.optimize import brentq

import conceptspace.analysis.capability as CP
import conceptspace.analysis.curves as CV
import conceptspace.analysis.fits as FT
import conceptspace.analysis.trajectories as TJ

# 2×2 classes: (color target, size target); color 1 = blue, size 1 = small; blue_small held out
CLASSES = {"red_large": (0, 0), "red_small": (0, 1), "blue_large": (1, 0), "blue_small": (1, 1)}
HELD_OUT = "blue_small"
CONCEPTS = ("color", "size")


def sqrt_steps(n: int = 60, lo: float = 100.0, hi: float = 10_000.0) -> np.ndarray:
    """sqrt-spaced integer checkpoint steps, like the training schedule."""
    return np.unique(np.round(np.linspace(np.sqrt(lo), np.sqrt(hi), n) ** 2).astype(int))


def logistic(x, mid, width):
    return 1.0 / (1.0 + np.exp(-(np.asarray(x, dtype=float) - mid) / width))


def spacing_at(steps: np.ndarray, step: float) -> float:
    i = min(int(np.searchsorted(steps, step)), len(steps) - 1)
    return float(steps[i] - steps[max(i - 1, 0)])


def make_probe(acc_fn, p1_fn=None, *, runs=("c040",), seeds=(0,), steps=None) -> pd.DataFrame:
    """Probe table with acc = acc_fn(run, seed, cls, concept, steps) (and p1 likewise)."""
    steps = sqrt_steps() if steps is None else steps
    rows = []
    for run in runs:
        for seed in seeds:
            for cls, tgt in CLASSES.items():
                for concept, target in zip(CONCEPTS, tgt, strict=True):
                    acc = acc_fn(run, seed, cls, concept, steps)
                    p1 = acc if p1_fn is None else p1_fn(run, seed, cls, concept, steps)
                    for s, a, p in zip(steps, acc, p1, strict=True):
                        rows.append(
                            {
                                "run": run,
                                "seed": seed,
                                "step": int(s),
                                "class": cls,
                                "held_out": cls == HELD_OUT,
                                "concept": concept,
                                "target": target,
                                "p1": float(p),
                                "acc": float(a),
                                "count": 32,
                            }
                        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------
# smoothing and crossings
# ------------------------------------------------------------------------------------------


def test_smooth_sigma_zero_is_a_copy_and_constants_are_preserved():
    y = np.array([1.0, 2.0, 3.0])
    out = CV.smooth(y, 0)
    np.testing.assert_array_equal(out, y)
    assert out is not y
    np.testing.assert_allclose(CV.smooth(np.full(10, 0.7), 2.0), 0.7)
    # mode="nearest": a step keeps its plateau values at both ends
    s = CV.smooth(np.r_[np.zeros(20), np.ones(20)], 1.5)
    assert s[0] == pytest.approx(0.0) and s[-1] == pytest.approx(1.0)
    # smoothing runs along the requested axis only
    two = CV.smooth(np.stack([np.r_[np.zeros(20), np.ones(20)]] * 2, axis=1), 1.5, axis=0)
    np.testing.assert_allclose(two[:, 0], s)


def test_first_sustained_crossing_needs_k_consecutive_points():
    steps = np.arange(7) * 100
    v = np.array([0.0, 0.9, 0.0, 0.9, 0.9, 0.9, 0.0])
    assert CV.first_sustained_crossing(steps, v, 0.8, k=3) == 300
    assert CV.first_sustained_crossing(steps, v, 0.8, k=1) == 100
    assert CV.first_sustained_crossing(steps, v, 0.95, k=1) is None
    # a run shorter than k at the end is not sustained
    assert CV.first_sustained_crossing(steps, np.r_[np.zeros(5), 1.0, 1.0], 0.8, k=3) is None
    assert CV.first_sustained_crossing(steps, np.full(7, 0.8), 0.8, k=3) == 0  # >= counts


def test_learning_time_of_logistic_curve():
    steps = sqrt_steps()
    acc = logistic(steps, 3000.0, 200.0)
    t_true = 3000.0 + 200.0 * math.log(4.0)  # where the logistic reaches 0.8 (≈ 3277)

    # unsmoothed: the first checkpoint at or after the true crossing
    t_raw, censored = CV.learning_time(steps, acc, 0.8, sigma=0)
    assert not censored
    assert t_raw == steps[np.searchsorted(steps, t_true)]
    assert 0 <= t_raw - t_true <= spacing_at(steps, t_true)

    # default smoothing (sigma = 1.5 checkpoints ≈ 260 steps here, wider than the logistic's
    # scale of 200) flattens the rise and delays the 0.8 crossing by up to about one more
    # checkpoint; it never makes it earlier
    t80, censored = CV.learning_time(steps, acc, 0.8)
    assert not censored and t80 in steps
    assert t_true <= t80 <= t_true + 2 * spacing_at(steps, t_true)

    # a slower rise (scale 600 ≫ kernel) is barely biased: within one checkpoint
    slow = logistic(steps, 3000.0, 600.0)
    t_slow = 3000.0 + 600.0 * math.log(4.0)
    assert abs(CV.learning_time(steps, slow, 0.8)[0] - t_slow) <= spacing_at(steps, t_slow)

    t90, censored90 = CV.learning_time(steps, acc, 0.9)
    assert not censored90 and t90 > t80
    t90_true = 3000.0 + 200.0 * math.log(9.0)
    assert t90_true <= t90 <= t90_true + 2 * spacing_at(steps, t90_true)


def test_learning_time_censored_is_budget():
    steps = sqrt_steps()
    acc = 0.5 * logistic(steps, 3000.0, 200.0)  # never above 0.5
    t, censored = CV.learning_time(steps, acc, 0.8)
    assert censored
    assert t == float(steps[-1])


def test_learning_time_rejects_unsorted_steps():
    with pytest.raises(ValueError):
        CV.learning_time(np.array([2, 1, 3]), np.zeros(3), 0.8)


# ------------------------------------------------------------------------------------------
# learning times from a probe table
# ------------------------------------------------------------------------------------------

MIDS = {"red_large": 1000.0, "red_small": 1500.0, "blue_large": 2000.0}


def _acc(run, seed, cls, concept, steps):
    if cls == HELD_OUT:
        if concept == "size":  # never learnt: censored
            return np.full(len(steps), 0.3)
        return logistic(steps, 3000.0 + 400.0 * seed, 200.0)
    return logistic(steps, MIDS[cls], 150.0)


def test_learning_times_per_class_and_pooled():
    steps = sqrt_steps()
    probe = make_probe(_acc, seeds=(0, 1), steps=steps)
    lt = CV.learning_times(probe, thresholds=(0.8, 0.9))
    assert list(lt.columns) == [
        "run",
        "seed",
        "group",
        "class",
        "held_out",
        "concept",
        "threshold",
        "learning_time",
        "censored",
        "budget",
    ]
    # 2 seeds × (4 classes + 2 pools) × 2 concepts × 2 thresholds
    assert len(lt) == 2 * 6 * 2 * 2
    assert set(lt["group"]) == {"class", "held_out", "train"}

    def get(**kw):
        sel = lt
        for k, v in kw.items():
            sel = sel[sel[k] == v]
        assert len(sel) == 1
        return sel.iloc[0]

    row = get(seed=1, group="class", **{"class": HELD_OUT}, concept="color", threshold=0.8)
    expect, _ = CV.learning_time(steps, logistic(steps, 3400.0, 200.0), 0.8)
    assert row["learning_time"] == expect and not row["censored"] and row["held_out"]

    cens = get(seed=0, group="held_out", concept="size", threshold=0.9)
    assert cens["censored"] and cens["learning_time"] == steps[-1] == cens["budget"]
    assert cens["class"] == HELD_OUT

    train = get(seed=0, group="train", concept="color", threshold=0.8)
    assert train["class"] == "blue_large+red_large+red_small" and not train["held_out"]
    pooled_acc = np.mean([logistic(steps, m, 150.0) for m in MIDS.values()], axis=0)
    assert train["learning_time"] == CV.learning_time(steps, pooled_acc, 0.8)[0]


def test_learning_times_aggregate_seeds_averages_curves_first():
    steps = sqrt_steps()
    probe = make_probe(_acc, seeds=(0, 1), steps=steps)
    lt = CV.learning_times(probe, thresholds=(0.8,), aggregate_seeds=True)
    assert "seed" not in lt.columns and (lt["n_seeds"] == 2).all()
    assert len(lt) == 6 * 2
    row = lt[(lt["group"] == "held_out") & (lt["concept"] == "color")].iloc[0]
    mean_curve = (logistic(steps, 3000.0, 200.0) + logistic(steps, 3400.0, 200.0)) / 2
    assert row["learning_time"] == CV.learning_time(steps, mean_curve, 0.8)[0]


def test_summarize_over_seeds_flags_lower_bounds():
    probe = make_probe(_acc, seeds=(0, 1))
    summary = CV.summarize_over_seeds(CV.learning_times(probe, thresholds=(0.8,)))
    held = summary[summary["group"] == "held_out"].set_index("concept")
    assert held.loc["size", "mean_is_lower_bound"] and held.loc["size", "n_censored"] == 2
    assert not held.loc["color", "mean_is_lower_bound"]
    per_seed = CV.learning_times(probe, thresholds=(0.8,))
    sel = per_seed[(per_seed["group"] == "held_out") & (per_seed["concept"] == "color")]
    assert held.loc["color", "learning_time_mean"] == pytest.approx(sel["learning_time"].mean())


def test_signal_table_is_long():
    info = pd.DataFrame(
        {
            "run": ["c020", "c080"],
            "signal_color": [0.01, 0.09],
            "signal_size": [0.2, 0.2],
            "sep_color": [0.2, 0.8],
            "sep_size": [0.4, 0.4],
        }
    )
    long = CV.signal_table(info)
    assert list(long.columns) == ["run", "concept", "signal", "sep"]
    assert len(long) == 4
    row = long[(long["run"] == "c080") & (long["concept"] == "color")].iloc[0]
    assert row["signal"] == 0.09 and row["sep"] == 0.8


# ------------------------------------------------------------------------------------------
# trajectories, saturation, speed, turn, memorization
# ------------------------------------------------------------------------------------------


def test_trajectories_average_seeds_then_smooth():
    steps = np.arange(0, 1000, 100)

    def p1(run, seed, cls, concept, s):
        return np.full(len(s), 0.2 + 0.2 * seed + (0.1 if concept == "size" else 0.0))

    probe = make_probe(p1, seeds=(0, 1), steps=steps)
    traj = TJ.trajectories(probe, sigma=2.0)
    assert list(traj.columns) == [
        "run",
        "class",
        "held_out",
        "step",
        "color",
        "size",
        "target_color",
        "target_size",
    ]
    assert len(traj) == 4 * len(steps)
    np.testing.assert_allclose(traj["color"], 0.3)
    np.testing.assert_allclose(traj["size"], 0.4)
    small_blue = traj[traj["class"] == HELD_OUT]
    assert small_blue["held_out"].all()
    assert (small_blue[["target_color", "target_size"]] == 1).all().all()

    per_seed = TJ.trajectories(probe, sigma=0, by_seed=True)
    assert list(per_seed.columns[:4]) == ["run", "seed", "class", "held_out"]
    np.testing.assert_allclose(per_seed.loc[per_seed["seed"] == 1, "color"], 0.4)


def exp_training_traj(steps: np.ndarray, rates: dict[str, float]) -> pd.DataFrame:
    """Training classes relaxing exponentially from (0.5, 0.5) to their corners."""
    rows = []
    for cls, rate in rates.items():
        tgt = np.array(CLASSES[cls], dtype=float)
        xy = tgt + (0.5 - tgt) * np.exp(-rate * steps)[:, None]
        for s, (x, y) in zip(steps, xy, strict=True):
            rows.append(
                {
                    "run": "r",
                    "class": cls,
                    "held_out": False,
                    "step": s,
                    "color": x,
                    "size": y,
                    "target_color": tgt[0],
                    "target_size": tgt[1],
                }
            )
    return pd.DataFrame(rows)


def test_saturation_step_of_exponential_relaxation():
    steps = np.arange(0, 5000, 50).astype(float)
    rates = {"red_large": 1e-3, "red_small": 2e-3, "blue_large": 5e-4}
    traj = exp_training_traj(steps, rates)
    # squared distance of each class is 2·0.25·exp(-2rt); the mean crosses 0.01 at t*
    t_star = brentq(
        lambda t: np.mean([0.5 * np.exp(-2 * r * t) for r in rates.values()]) - 0.01, 0, 1e5
    )
    assert TJ.saturation_step(traj, tol=0.01) == steps[np.searchsorted(steps, t_star)]
    assert TJ.saturation_step(traj, tol=1e-9) is None
    # held-out rows are ignored
    held = traj[traj["class"] == "red_large"].assign(**{"class": HELD_OUT, "held_out": True})
    held[["color", "size"]] = 0.5
    both = pd.concat([traj, held])
    assert TJ.saturation_step(both) == TJ.saturation_step(traj)


def test_concept_speed_on_nonuniform_steps():
    steps = sqrt_steps(30)
    velocity = np.array([3e-4, -4e-4])  # |v| = 5e-4 per step
    xy = 0.5 + (steps - steps[0])[:, None] * velocity
    np.testing.assert_allclose(TJ.concept_speed(steps, xy), 5e-4)
    assert TJ.concept_speed(steps, xy[:, 0]).shape == steps.shape


def turning_path(steps: np.ndarray, turn: float) -> np.ndarray:
    """(0.5,0.5) → (0.1,0.9) (toward small red) until `turn`, then → (1,1) at the end."""
    t = steps.astype(float)
    before = np.array([0.5, 0.5]) + (t / turn)[:, None] * np.array([-0.4, 0.4])
    frac = ((t - turn) / (t[-1] - turn))[:, None]
    after = np.array([0.1, 0.9]) + frac * np.array([0.9, 0.1])
    return np.where((t <= turn)[:, None], before, after)


@pytest.mark.parametrize("turn", [4000.0, 4321.0, 6500.0])
def test_turn_step_finds_the_turn(turn):
    steps = sqrt_steps(50, lo=0.0)
    xy = turning_path(steps, turn)
    res = TJ.turn_step(steps, xy)
    assert abs(res["heading_step"] - turn) <= spacing_at(steps, turn)
    assert 80 < res["angle_deg"] <= 129  # (-1,1) to (9,1) is 128.7 degrees; straddling blurs
    # restricting to after the turn excludes it: remaining headings are straight
    late = TJ.turn_step(steps, xy, after=turn + 2 * spacing_at(steps, turn) + 1)
    assert late["heading_step"] is None or late["angle_deg"] < 1.0


def test_turn_step_ignores_stall_noise_and_reports_speed_peak():
    steps = np.arange(0, 10_000, 100).astype(float)
    xy = turning_path(steps, 4000.0)
    # the held-out prompt moves fastest right after the turn: make the second leg quicker
    xy[steps > 4000.0] = np.array([0.1, 0.9]) + np.minimum(
        (steps[steps > 4000.0] - 4000.0) / 1500.0, 1.0
    )[:, None] * np.array([0.9, 0.1])
    # a saturated tail with tiny jitter would otherwise produce huge heading changes
    rng = np.random.default_rng(0)
    tail = steps >= 5500.0
    xy[tail] += rng.normal(0, 1e-5, (tail.sum(), 2))
    res = TJ.turn_step(steps, xy, after=2000.0)
    assert res["heading_step"] == pytest.approx(4000.0, abs=100.0)
    assert 4000.0 <= res["speed_peak_step"] <= 5500.0
    assert res["speed_peak"] == pytest.approx(np.hypot(0.9, 0.1) / 1500.0, rel=0.05)


def stalling_path(steps: np.ndarray, reach: float, turn: float, leave: float) -> np.ndarray:
    """(0.5,0.5) → (0.1,0.9) by `reach`, standing there until `turn`, then → (1,1) in `leave`."""
    t = steps.astype(float)
    a = np.clip(t / reach, 0, 1)[:, None]
    b = np.clip((t - turn) / leave, 0, 1)[:, None]
    corner = np.array([0.1, 0.9])
    return np.array([0.5, 0.5]) + a * (corner - 0.5) + b * (np.array([1.0, 1.0]) - corner)


def test_turn_step_after_a_stall_is_where_the_trajectory_leaves():
    steps = np.arange(0, 10_000, 100).astype(float)
    xy = stalling_path(steps, 2000.0, 6000.0, 2000.0)
    xy[steps < 6000.0] += np.random.default_rng(0).normal(0, 1e-4, ((steps < 6000).sum(), 2))
    for window in (1, 2, 3):
        res = TJ.turn_step(steps, xy, after=2500.0, window=window)
        assert -100.0 * (window - 1) <= res["heading_step"] - 6000.0 <= 100.0
        assert res["angle_deg"] == pytest.approx(128.7, abs=1.0)  # from (-1,1) to (9,1)


def test_turn_step_on_noisy_smoothed_trajectories():
    # 32-image probe noise (≈0.03) smoothed with sigma = 2 checkpoints, as in the pipeline: the
    # smoothing starts the departure early, by up to about 2·sigma checkpoints
    steps = sqrt_steps(60, hi=15_000.0)
    turn = 6000.0
    i_turn = int(np.searchsorted(steps, turn))
    for seed in range(5):
        rng = np.random.default_rng(seed)
        noisy = stalling_path(steps, 2000.0, turn, 2000.0) + rng.normal(0, 0.03, (len(steps), 2))
        res = TJ.turn_step(steps, CV.smooth(noisy, 2.0), after=2500.0)
        assert steps[i_turn - 5] <= res["heading_step"] <= steps[i_turn + 1]


def test_speed_collapse_step_of_logistic_training_paths():
    steps = np.arange(0, 6000, 25).astype(float)
    s = logistic(steps, 2000.0, 300.0)
    paths = [np.stack([s, np.zeros_like(s)], 1), np.stack([np.zeros_like(s), 1 - s], 1)]
    # speed ∝ s(1-s) peaks at 2000 and drops below 0.2·peak where s(1-s) = 0.05
    s_hi = (1 + math.sqrt(0.8)) / 2
    expect = 2000.0 + 300.0 * math.log(s_hi / (1 - s_hi))
    got = TJ.speed_collapse_step(steps, paths, frac=0.2)
    assert abs(got - expect) <= 25.0
    assert TJ.speed_collapse_step(steps, paths, frac=1e-12) is None


def test_nearest_corner_path():
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    nearest, dist = TJ.nearest_corner_path(np.array([[0.1, 0.9], [0.9, 0.2]]), corners)
    np.testing.assert_array_equal(nearest, [1, 2])
    assert dist.shape == (2, 3)
    assert dist[0, 1] == pytest.approx(math.hypot(0.1, 0.1))


@pytest.mark.parametrize(
    ("first_leg", "expected"),
    [(np.array([-0.4, 0.4]), "red_small"), (np.array([0.4, -0.4]), "blue_large")],
)
def test_memorization_picks_the_imitated_training_class(first_leg, expected):
    steps = np.arange(0, 10_000, 100).astype(float)
    xy = turning_path(steps, 4000.0)
    if expected == "blue_large":
        xy = xy[:, ::-1]  # mirror: strong color signal heads to large blue (1, 0) first
    assert np.allclose(xy[40], 0.5 + first_leg)
    held = pd.DataFrame(
        {"step": steps, "color": xy[:, 0], "size": xy[:, 1], "target_color": 1, "target_size": 1}
    )
    targets = {c: CLASSES[c] for c in ("red_large", "red_small", "blue_large")}
    res = TJ.memorization(held, targets, until_step=4000.0)
    assert res["nearest_class"] == expected
    assert res["n_checkpoints"] == 41
    assert res["min_distance"] == pytest.approx(math.hypot(0.1, 0.1))
    assert res["min_distance_step"] == 4000.0
    assert 0.5 < res["frac_nearest"] <= 1.0
    assert res["mean_distance"] == pytest.approx(res["mean_distances"][expected])
    # over the whole run it ends at (1,1): mean distance grows once the turn is included
    assert TJ.memorization(held, targets, until_step=None)["mean_distance"] > res["mean_distance"]


def test_turn_summary_on_a_synthetic_run():
    steps = np.arange(0, 10_000, 100).astype(float)
    rates = {"red_large": 1e-3, "red_small": 1e-3, "blue_large": 1e-3}
    train = exp_training_traj(steps, rates)
    xy = turning_path(steps, 4000.0)
    held = pd.DataFrame(
        {
            "run": "r",
            "class": HELD_OUT,
            "held_out": True,
            "step": steps,
            "color": xy[:, 0],
            "size": xy[:, 1],
            "target_color": 1,
            "target_size": 1,
        }
    )
    out = TJ.turn_summary(pd.concat([train, held], ignore_index=True))
    assert out["saturation_step"] == 2000.0  # 0.5·exp(-2e-3·t) < 0.01  ⇔  t > 1956
    assert "nearest_class" not in out  # memorization has its own window (memorization_window)
    assert out["heading_step"] == pytest.approx(4000.0, abs=100.0)
    assert out["speed_collapse_step"] is not None


# ------------------------------------------------------------------------------------------
# capability curves and emergence
# ------------------------------------------------------------------------------------------


def make_interv(curves: dict[tuple[str, str], np.ndarray], steps, seeds=(0,)) -> pd.DataFrame:
    """Intervention table from {(method, setting): joint_acc curve}; settings are numbers."""
    rows = []
    for seed in seeds:
        for (method, setting), curve in curves.items():
            for s, v in zip(steps, curve, strict=True):
                rows.append(
                    {
                        "run": "c020",
                        "seed": seed,
                        "step": int(s),
                        "method": method,
                        "setting": setting,
                        "class": HELD_OUT,
                        "p_color": v,
                        "p_size": 1.0,
                        "acc_color": v,
                        "acc_size": 1.0,
                        "joint_acc": v,
                        "count": 64,
                    }
                )
    return pd.DataFrame(rows)


def step_curve(steps, at, lo=0.1, hi=1.0):
    return np.where(steps >= at, hi, lo)


def test_capability_curves_take_the_best_setting():
    steps = np.arange(0, 1000, 100)
    interv = make_interv(
        {
            ("naive", 0.0): np.full(10, 0.2),
            ("overprompt", 1.0): np.linspace(0, 0.9, 10),
            ("overprompt", 2.0): np.full(10, 0.5),
        },
        steps,
    )
    cap = CP.capability_curves(interv)
    assert list(cap.columns) == [
        "run",
        "seed",
        "step",
        "method",
        "class",
        "capability",
        "best_setting",
        "n_settings",
        "count",
        "lower",
        "upper",
        "confidence",
    ]
    over = cap[cap["method"] == "overprompt"].set_index("step")
    np.testing.assert_allclose(over["capability"], np.maximum(np.linspace(0, 0.9, 10), 0.5))
    assert over.loc[0, "best_setting"] == 2.0 and over.loc[900, "best_setting"] == 1.0
    assert (over["n_settings"] == 2).all() and (over["count"] == 64).all()
    naive = cap[cap["method"] == "naive"]
    np.testing.assert_allclose(naive["capability"], 0.2)
    assert (naive["best_setting"] == 0.0).all()
    # the best of 2 doses pays for the choice: its interval is at 1 - 0.05/2, naive's at 95%
    np.testing.assert_allclose(over["confidence"], 0.975)
    np.testing.assert_allclose(naive["confidence"], 0.95)
    k = round(0.5 * 64)
    r = stats.binomtest(k, 64).proportion_ci(0.975, method="wilson")
    assert over.loc[0, "lower"] == pytest.approx(r.low) and over.loc[0, "upper"] == pytest.approx(
        r.high
    )
    r95 = stats.binomtest(k, 64).proportion_ci(0.95, method="wilson")
    assert r.low < r95.low  # wider than the unpaid 95% interval


@pytest.mark.parametrize(
    "k,n,conf", [(0, 16, 0.95), (16, 16, 0.975), (13, 64, 0.95), (58, 64, 0.9875)]
)
def test_wilson_interval_is_scipys(k, n, conf):
    lo, hi = CP.wilson_interval(k, n, conf)
    r = stats.binomtest(k, n).proportion_ci(conf, method="wilson")
    assert float(lo) == pytest.approx(r.low, abs=1e-12) and float(hi) == pytest.approx(
        r.high, abs=1e-12
    )


def test_emergence_lead_over_naive():
    steps = np.arange(0, 10_000, 100)
    interv = make_interv(
        {
            ("naive", 0.0): step_curve(steps, 5000),
            ("overprompt", 1.0): step_curve(steps, 2000),
            ("overprompt", 2.0): step_curve(steps, 8000),
        },
        steps,
    )
    em = CP.emergence(interv, thresholds=(0.8,), sigma=0)
    assert list(em.columns) == CP.EMERGENCE_COLUMNS
    over = em[em["method"] == "overprompt"].iloc[0]
    assert over["emergence_step"] == 2000 and not over["censored"]
    assert over["naive_step"] == 5000 and not over["naive_censored"]
    assert over["lead_steps"] == 3000 and over["lead_checkpoints"] == 30
    assert not over["lead_is_lower_bound"] and over["n_settings"] == 2
    naive = em[em["method"] == "naive"].iloc[0]
    assert naive["lead_steps"] == 0

    # smoothing moves only the point estimates, which delays both crossings equally
    smoothed = CP.emergence(interv, thresholds=(0.8,), sigma=1.0, k=2)
    over_s = smoothed[smoothed["method"] == "overprompt"].iloc[0]
    assert over_s["point_step"] > 2000 and over_s["point_lead_steps"] == 3000
    assert over_s["emergence_step"] == 2000 and over_s["lead_steps"] == 3000


def test_emergence_is_read_from_the_first_recognisable_checkpoint():
    """Before the training classes are recognisable, samples are blobs the classifier may read
    as the held-out class: a naive curve high there must not count as naive emergence
    (docs/method.md §6.2)."""
    steps = np.arange(0, 10_000, 100)
    naive = step_curve(steps, 5000)
    naive[:3] = 1.0  # blobs at steps 0-200 read as the held-out class
    interv = make_interv(
        {("naive", 0.0): naive, ("overprompt", 1.0): step_curve(steps, 2000)}, steps
    )
    early = CP.emergence(interv, thresholds=(0.8,), sigma=0)
    assert early.loc[early["method"] == "overprompt", "naive_step"].iloc[0] == 0
    train_acc = pd.DataFrame(
        {"run": "c020", "seed": 0, "step": steps, "acc": np.where(steps >= 800, 0.95, 0.3)}
    )
    since = CP.readable_from(train_acc, ready_acc=0.75, sigma=0)
    assert since.to_dict("records") == [{"run": "c020", "seed": 0, "step": 800}]
    em = CP.emergence(interv, thresholds=(0.8,), sigma=0, since=since)
    over = em[em["method"] == "overprompt"].iloc[0]
    assert over["naive_step"] == 5000 and over["emergence_step"] == 2000
    assert over["lead_steps"] == 3000


def test_emergence_reads_the_bounds_not_the_point_estimate():
    """An elicited curve at 0.85 of 64 images (lower bound < 0.8) has not surely emerged, and a
    naive curve at 0.75 (upper bound > 0.8) may already be there: no lead, though the point
    estimates show one of 3,000 steps."""
    steps = np.arange(0, 10_000, 100)
    interv = make_interv(
        {
            ("naive", 0.0): step_curve(steps, 5000, hi=0.75),
            ("linear", 1.0): step_curve(steps, 2000, hi=0.85),
        },
        steps,
    )
    em = CP.emergence(interv, thresholds=(0.8,), sigma=0, k=2)
    lin = em[em["method"] == "linear"].iloc[0]
    assert lin["censored"] and math.isnan(lin["lead_steps"]) and math.isnan(lin["emergence_step"])
    assert lin["point_step"] == 2000 and not lin["point_censored"]
    assert lin["naive_step"] == 5000 and not lin["naive_censored"]  # upper bound 0.85 >= 0.8
    # with more images the same shares are beyond their noise: 0.85 of 1000 has lower > 0.8
    many = CP.emergence(interv.assign(count=1000), thresholds=(0.8,), sigma=0, k=2)
    lin = many[many["method"] == "linear"].iloc[0]
    assert lin["emergence_step"] == 2000 and lin["naive_censored"]  # 0.75 of 1000: upper < 0.8
    assert lin["lead_is_lower_bound"] and lin["lead_steps"] == 9900 - 2000
    # the lead's other end swaps the bounds: at 64 images the elicited upper bound crosses at
    # 2,000 and naive's lower bound (0.75 of 64) never does, so at least 7,900 steps
    lin64 = em[em["method"] == "linear"].iloc[0]
    assert lin64["lead_high_steps"] == 9900 - 2000 and lin64["lead_high_is_lower_bound"]


def test_emergence_with_censored_naive_is_a_lower_bound():
    steps = np.arange(0, 10_000, 100)
    interv = make_interv(
        {
            ("naive", 0.0): np.full(len(steps), 0.3),
            ("linear", 1.0): step_curve(steps, 2500),
            ("guidance", 3.0): np.full(len(steps), 0.3),
        },
        steps,
        seeds=(0, 1),
    )
    em = CP.emergence(interv, thresholds=(0.8, 0.9), sigma=1.0, k=2)
    assert len(em) == 2 * 3 * 2
    lin = em[(em["method"] == "linear") & (em["seed"] == 1) & (em["threshold"] == 0.9)].iloc[0]
    assert lin["naive_censored"] and lin["naive_step"] == 9900 == lin["budget"]
    assert lin["lead_is_lower_bound"] and lin["emergence_step"] == 2500
    assert lin["lead_steps"] == 9900 - 2500
    assert lin["lead_checkpoints"] == (9900 - 2500) / 100
    guided = em[(em["method"] == "guidance") & (em["seed"] == 0)].iloc[0]
    assert guided["censored"] and math.isnan(guided["lead_steps"])


def test_leads_are_read_per_seed_then_summarized():
    """Two seeds whose elicited curves rise 4,000 steps apart: averaging the curves gives 0.55
    between the rises, below the threshold, but each seed has its own lead and their median is
    reported (a lower bound, as naive never gets there)."""
    steps = np.arange(0, 10_000, 100)
    rows = []
    for seed, at in ((0, 2000), (1, 6000)):
        rows.append(
            make_interv(
                {("naive", 0.0): np.full(len(steps), 0.1), ("linear", 1.0): step_curve(steps, at)},
                steps,
                seeds=(seed,),
            )
        )
    em = CP.emergence(pd.concat(rows, ignore_index=True), thresholds=(0.8,), sigma=0)
    s = CP.summarize_leads(em)
    lin = s[s["method"] == "linear"].iloc[0]
    assert lin["n_seeds"] == 2 and lin["n_leads"] == 2 and lin["n_reached"] == 2
    assert lin["per_seed"] == {
        s: {"lead": 9900.0 - at, "lead_is_lower_bound": True, "lead_high": 9900.0 - at}
        for s, at in ((0, 2000), (1, 6000))
    }
    assert lin["lead_median"] == np.median([7900, 3900]) and lin["lead_median_is_lower_bound"]
    assert (lin["lead_min"], lin["lead_max"]) == (3900, 7900)


def test_dose_response_keeps_every_dose_and_concept():
    steps = np.arange(0, 300, 100)
    interv = make_interv(
        {("linear", 0.5): np.full(3, 0.5), ("linear", 2.0): np.full(3, 1.0)}, steps
    )
    dr = CP.dose_response(interv)
    assert set(dr["concept"]) == {"color", "size", "joint"} and len(dr) == 3 * 2 * 3
    row = dr[(dr["setting"] == 0.5) & (dr["concept"] == "color") & (dr["step"] == 0)].iloc[0]
    r = stats.binomtest(32, 64).proportion_ci(0.95, method="wilson")
    assert row["lower"] == pytest.approx(r.low) and row["upper"] == pytest.approx(r.high)


def test_emergence_without_naive_has_no_lead():
    steps = np.arange(0, 1000, 100)
    em = CP.emergence(make_interv({("linear", 1.0): step_curve(steps, 300)}, steps), sigma=0)
    assert em["naive_step"].isna().all() and em["lead_steps"].isna().all()


# ------------------------------------------------------------------------------------------
# learning time against signal
# ------------------------------------------------------------------------------------------


def test_fit_inverse_time_exact_on_noise_free_data():
    signal = np.array([0.01, 0.02, 0.05, 0.1])
    T = 1.0 / (0.02 * signal + 1e-4)
    fit = FT.fit_inverse_time(signal, T)
    assert fit["slope"] == pytest.approx(0.02)
    assert fit["intercept"] == pytest.approx(1e-4)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["n"] == 4

    power = FT.fit_inverse_time(signal, 1.0 / (3e-3 * signal**0.7))
    assert power["power_exponent"] == pytest.approx(0.7)
    assert power["power_prefactor"] == pytest.approx(3e-3)
    assert power["power_r2"] == pytest.approx(1.0)


#: the 1/T fits of the studies as committed at 4,500 steps (details.json, fits_inverse_time,
#: threshold 0.8) as np.polyfit and the hand-written r² gave them: (signal, mean held-out
#: learning time, censored) per run, then slope, intercept, power exponent, prefactor
COMMITTED_FITS = {
    "default size": (
        [0.030927637591958046, 0.0402873195707798, 0.052088648080825806],
        [1800.0, 3562.0, 3004.3333333333335],
        [False, True, False],
        (-0.01052421430208799, 0.0008810446414306345, -0.9826820216165105, 1.8248130788491825e-05),
    ),
    "unseen_seeds color": (
        [0.0032672362867742777, 0.020420223474502563, 0.05227576568722725],
        [4060.5, 2073.5, 858.0],
        [True, False, False],
        (0.02144759667229715, 4.43116273060047e-05, 0.9387047677404389, 0.018605880828965856),
    ),
}


@pytest.mark.parametrize("study", COMMITTED_FITS)
def test_fit_inverse_time_by_linregress_gives_the_committed_numbers(study):
    """The 1/T fits by scipy.stats.linregress (fits.ols) give the numbers np.polyfit gave the
    committed studies, to 1e-13 (the last one or two of 16 digits differ), r² 1.0 for two
    points as before."""
    signal, T, cens, (slope, intercept, exponent, prefactor) = COMMITTED_FITS[study]
    fit = FT.fit_inverse_time(np.array(signal), np.array(T), cens)
    assert fit["slope"] == pytest.approx(slope, rel=1e-13)
    assert fit["intercept"] == pytest.approx(intercept, rel=1e-13)
    assert fit["power_exponent"] == pytest.approx(exponent, rel=1e-13)
    assert fit["power_prefactor"] == pytest.approx(prefactor, rel=1e-13)
    assert fit["r2"] == fit["power_r2"] == 1.0 and fit["n"] == fit["power_n"] == 2
    # a constant 1/T has no R² (0/0), where the hand-written one said 1
    flat = FT.fit_inverse_time(np.array(signal), np.full(3, 2000.0))
    assert flat["slope"] == 0.0 and math.isnan(flat["r2"])


def test_fit_inverse_time_drops_censored_and_handles_too_few_points():
    signal = np.array([0.01, 0.02, 0.05, 0.1])
    T = 1.0 / (0.02 * signal + 1e-4)
    T[0] = 20_000.0  # censored at the budget: must not bias the fit
    fit = FT.fit_inverse_time(signal, T, censored=[True, False, False, False])
    assert fit["slope"] == pytest.approx(0.02) and fit["n"] == 3 and fit["n_excluded"] == 1

    few = FT.fit_inverse_time(signal, T, censored=[True, True, True, False])
    assert few["n"] == 1
    assert all(math.isnan(few[k]) for k in ("slope", "intercept", "r2", "power_exponent"))


def test_is_monotone_decreasing_rules():
    x = np.array([0.1, 0.2, 0.4, 0.8])
    ok = FT.is_monotone_decreasing(x, [9000, 6000, 4000, 3000], [False] * 4)
    assert ok["monotone"] and ok["reason"] == "ok"
    assert ok["spearman_rho"] == pytest.approx(-1.0)
    # order of input does not matter
    assert FT.is_monotone_decreasing(x[::-1], [3000, 4000, 6000, 9000])["monotone"]

    bad = FT.is_monotone_decreasing(x, [9000, 4000, 6000, 3000], [False] * 4)
    assert not bad["monotone"] and bad["violations"] == [(0.2, 0.4)]

    # censored points are ≥ budget: two censored neighbours at weak signal are a legal tie
    cens = FT.is_monotone_decreasing(x, [20000, 20000, 6000, 3000], [True, True, False, False])
    assert cens["monotone"] and cens["spearman_rho"] < 0
    # ...but a censored point after an uncensored one is an increase
    late = FT.is_monotone_decreasing(x, [9000, 20000, 6000, 3000], [False, True, False, False])
    assert not late["monotone"] and late["violations"] == [(0.1, 0.2)]

    # ties between uncensored points are only allowed when not strict
    tie = [9000, 6000, 6000, 3000]
    assert not FT.is_monotone_decreasing(x, tie)["monotone"]
    assert FT.is_monotone_decreasing(x, tie, strict=False)["monotone"]

    # insufficient evidence
    two = FT.is_monotone_decreasing(x[:2], [9000, 3000])
    assert not two["monotone"] and two["reason"] == "insufficient"
    one_unc = FT.is_monotone_decreasing(x[:3], [1, 1, 5000], [True, True, False])
    assert one_unc["reason"] == "insufficient"

    # one point per separation: repeated x cannot be ordered, neither yes nor no
    rep = FT.is_monotone_decreasing([0.1, 0.1, 0.2], [3, 2, 1])
    assert rep["monotone"] is None and rep["reason"] == FT.REPEATED == "repeated separations"
    assert rep["violations"] == [] and math.isnan(rep["spearman_rho"])
    with pytest.raises(ValueError):
        FT.is_monotone_decreasing([0.1, 0.2], [3, 2, 1])


def test_memorization_window_opens_when_training_is_recognisable_and_says_when_never():
    steps = np.arange(100, 1100, 100).astype(float)
    acc = np.r_[np.zeros(4), np.ones(6)]
    win = TJ.memorization_window(steps, acc, 800.0, ready_acc=0.75, sigma=0.0)
    assert win == {"window": [500.0, 800.0], "end": "saturation", "reason": None}
    never_saturates = TJ.memorization_window(steps, acc, None, ready_acc=0.75, sigma=0.0)
    assert never_saturates["window"] == [500.0, 1000.0]
    assert never_saturates["end"] == "last checkpoint"
    never = TJ.memorization_window(steps, acc * 0.5, 800.0, ready_acc=0.75, sigma=0.0)
    assert never["window"] is None and "never reach" in never["reason"]


def test_one_json_cleaner_drops_every_non_finite_number():
    """Metrics and the across-seeds summary go through one cleaner, which writes None for NaN
    and for infinities alike (strict JSON holds neither)."""
    import json

    from conceptspace.analysis import across_seeds, verdicts
    from conceptspace.analysis.jsonready import clean

    x = {1: np.float64(np.inf), "b": [np.nan, -np.inf, np.int64(3)], "c": np.array([0.5, np.nan])}
    want = {"1": None, "b": [None, None, 3], "c": [0.5, None]}
    assert clean(x) == want
    json.dumps(clean(x), allow_nan=False)
    # called by its name: no module keeps an alias or a cleaner of its own
    for module in (across_seeds, verdicts):
        assert module.clean is clean
        others = [k for k, v in vars(module).items() if v is clean and k != "clean"]
        assert others == [], (module.__name__, others)
