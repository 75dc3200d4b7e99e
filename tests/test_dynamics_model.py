"""Tests of the phenomenological concept-space ODE (docs/method.md §5.6) and its fit."""

import numpy as np
import pandas as pd
import pytest

from conceptspace.analysis.dynamics_model import fit, integrate, simulate, switch


def test_simulate_shapes_and_start():
    t, c = simulate(2.0)
    assert t.shape == (200,) and c.shape == (200, 2)
    assert t[0] == 0.0 and t[-1] == pytest.approx(25.0)
    np.testing.assert_allclose(c[0], [0.5, 0.5])


def test_symmetric_signal_moves_along_the_diagonal():
    # a = 1: both concepts obey the same equation, so c1 == c2 at all times
    _, c = simulate(1.0)
    np.testing.assert_allclose(c[:, 0], c[:, 1], atol=1e-7)


def test_large_a_memorizes_then_turns():
    # The paper's switch (rate 0.1 at t = 10) only reaches alpha = 0.82 at t = 25, so c1 ends near
    # 0.82 there; integrate twice as long to see it complete the turn.
    t, c = simulate(5.0, t_max=50.0, n=400)
    c1, c2 = c[:, 0], c[:, 1]
    i_min = int(np.argmin(c1))
    # memorization: the weak concept is dragged towards alpha(0) ~ 0.27, away from its target
    assert c1[i_min] < 0.35
    assert t[i_min] < 10.0
    # ...while the strong concept saturates early
    assert c2[np.searchsorted(t, 2.0)] > 0.95
    # then the turn: c1 rises to its target by the end
    assert c1[-1] > 0.9
    assert np.all(np.diff(c1[i_min:]) > -1e-9)
    # the turn is late: c1 passes 0.5 only around the switch, long after c2 has saturated
    assert t[np.argmax(c1 > 0.5)] > 8.0


def test_quasi_static_c1_follows_the_switch():
    # with fast relaxation c1 tracks its moving fixed point (1/(2a) + a/2·α) / (1/(2a) + a/2)
    a = 5.0
    t, c = simulate(a, speed=50.0)
    alpha = switch(t, 10.0, 0.1)
    fixed = (1 / (2 * a) + a / 2 * alpha) / (1 / (2 * a) + a / 2)
    np.testing.assert_allclose(c[20:, 0], fixed[20:], atol=0.01)


def test_fit_recovers_parameters_of_noisy_simulation():
    true = {"a": 4.0, "speed": 3.0, "switch_t": 10.0, "switch_rate": 0.1}
    steps = np.linspace(np.sqrt(50.0), np.sqrt(10_000.0), 60) ** 2  # sqrt-spaced checkpoints
    tau = 10_000.0 / 25.0
    clean = integrate(steps / tau, **true)
    noisy = clean + np.random.default_rng(1).normal(0.0, 0.01, clean.shape)

    res = fit(steps, noisy)

    assert res["success"]
    assert res["tau"] == pytest.approx(tau)
    p = res["params"]
    assert p["a"] == pytest.approx(4.0, rel=0.1)
    assert p["speed"] == pytest.approx(3.0, rel=0.15)
    assert p["switch_t"] == pytest.approx(10.0, rel=0.05)
    assert p["switch_rate"] == pytest.approx(0.1, rel=0.1)
    assert res["switch_step"] == pytest.approx(4000.0, rel=0.05)
    assert res["rmse"] == pytest.approx(0.01, rel=0.3)  # at the noise level
    assert res["r2"] > 0.98
    assert res["c_fit"].shape == noisy.shape


def test_fit_mirrored_trajectory_gives_inverse_ratio():
    # swapping the concepts is the same model with a -> 1/a
    steps = np.linspace(np.sqrt(50.0), np.sqrt(10_000.0), 60) ** 2
    clean = integrate(steps / 400.0, a=4.0)
    res = fit(steps, clean[:, ::-1])
    assert res["params"]["a"] == pytest.approx(0.25, rel=0.05)
    assert res["rmse"] < 1e-3


def test_fit_flags_parameters_left_on_a_bound():
    steps = np.linspace(np.sqrt(50.0), np.sqrt(10_000.0), 60) ** 2
    assert fit(steps, integrate(steps / 400.0, a=4.0))["at_bound"] == []
    # memorization without a turn (concept 1 falls to 0.1 while concept 2 is learned): the data
    # pin down neither the switch nor the ratio, and both end on the search box
    never = np.column_stack([np.linspace(0.5, 0.1, steps.size), np.linspace(0.5, 1.0, steps.size)])
    assert {"a", "switch_t"} <= set(fit(steps, never)["at_bound"])


def test_fit_rejects_bad_shapes():
    with pytest.raises(ValueError):
        fit(np.arange(5.0), np.zeros((5, 3)))


def _traj_frame(run: str, steps: np.ndarray, c: np.ndarray) -> pd.DataFrame:
    rows = []
    for cls, held, xy, tgt in (
        ("blue_small", True, c, (1, 1)),
        ("red_small", False, np.tile([0.0, 1.0], (len(steps), 1)), (0, 1)),
    ):
        for s, (x, y) in zip(steps, xy, strict=True):
            rows.append(
                dict(run=run, step=s, held_out=held, color=x, size=y)
                | {"class": cls, "target_color": tgt[0], "target_size": tgt[1]}
            )
    return pd.DataFrame(rows)


def test_fit_held_out_recovers_the_signal_ratio_per_run():
    from conceptspace.analysis.dynamics_model import FIT_COLUMNS, fit_held_out

    steps = np.linspace(np.sqrt(50.0), np.sqrt(10_000.0), 40) ** 2
    traj = pd.concat(
        [
            _traj_frame(run, steps, integrate(steps / 400.0, a=a))
            for run, a in (("strong_size", 4.0), ("strong_color", 0.25))
        ]
    )
    table, curves, skipped = fit_held_out(traj, fit_c0=False)
    assert list(table.columns) == FIT_COLUMNS and not skipped
    t = table.set_index("run")
    assert t.loc["strong_size", "a"] == pytest.approx(4.0, rel=0.05)
    assert t.loc["strong_color", "a"] == pytest.approx(0.25, rel=0.05)
    assert (t["r2"] > 0.99).all() and (t["concept_1"] == "color").all()
    assert len(curves) == 2 * 2 * len(steps)
    assert np.abs(curves["measured"] - curves["fitted"]).max() < 0.01


def test_fit_held_out_skips_short_and_non_planar_trajectories():
    from conceptspace.analysis.dynamics_model import fit_held_out

    steps = np.array([100.0, 200.0, 400.0])
    traj = _traj_frame("r", steps, integrate(steps / 16.0, a=2.0))
    table, curves, skipped = fit_held_out(traj)
    assert table.empty and curves.empty
    assert skipped == [{"run": "r", "class": "blue_small", "reason": "only 3 checkpoints"}]
