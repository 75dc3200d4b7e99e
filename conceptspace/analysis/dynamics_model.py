"""Phenomenological ODE model of concept-space learning dynamics (docs/method.md §5.6).

The state ``c = (c1, c2)`` is a point in a 2-D concept space that starts at ``c0 = (0.5, 0.5)``
and should end at the held-out corner (1, 1). Concept 2 has the stronger signal, by the ratio
``a``; concept 1 the weaker. Each concept feels a "benign" pull towards its target 1 and a
"conflicting" pull towards the switch value α(t), which rises from about 0 to 1 around
``switch_t`` (the onset of disentanglement):

    α(t)    = sigmoid(switch_rate · (t − switch_t))
    dc1/dt  = speed · [ (1/(2a)) · (1 − c1) + (a/2) · (α(t) − c1) ]
    dc2/dt  = speed · [ (a/2) · (1 − c2) + (1/(2a)) · (α(t) − c2) ]

For large ``a`` concept 2 saturates quickly while concept 1 is first dragged towards α ≈ 0
(concept memorization: the trajectory heads for the training corner (0, 1)) and only later
rises with α (the sudden turn). ``a < 1`` swaps the roles of the two concepts.

To compare with a training run, model time is mapped to training steps by ``t = step / tau``.
``tau`` cannot be fitted: rescaling it is exactly compensated by ``speed``, ``switch_t`` and
``switch_rate``, so :func:`fit` fixes it (by default the budget maps onto model time 25).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.integrate import solve_ivp
from scipy.optimize import least_squares
from scipy.special import expit

PARAM_NAMES = ("a", "speed", "switch_t", "switch_rate")
DEFAULT_T_MAX = 25.0


def switch(t: np.ndarray | float, switch_t: float, switch_rate: float) -> np.ndarray | float:
    """α(t) = sigmoid(switch_rate · (t − switch_t)), the conflicting pull's moving target."""
    return expit(switch_rate * (np.asarray(t) - switch_t))


def rhs(
    t: float, c: np.ndarray, a: float, speed: float, switch_t: float, switch_rate: float
) -> np.ndarray:
    """dc/dt of the model at time ``t`` and state ``c`` (shape [2])."""
    alpha = switch(t, switch_t, switch_rate)
    weak, strong = 1.0 / (2.0 * a), a / 2.0
    return speed * np.array(
        [
            weak * (1.0 - c[0]) + strong * (alpha - c[0]),
            strong * (1.0 - c[1]) + weak * (alpha - c[1]),
        ]
    )


def integrate(
    t_eval: np.ndarray,
    *,
    a: float,
    speed: float = 3.0,
    switch_t: float = 10.0,
    switch_rate: float = 0.1,
    c0: Sequence[float] = (0.5, 0.5),
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> np.ndarray:
    """Solve the model from t = 0 with RK45 and return ``c`` at ``t_eval`` (shape [T, 2]).

    ``t_eval``: [T] non-decreasing model times ≥ 0. Tight tolerances keep the solution smooth in
    the parameters, which the finite-difference Jacobian of :func:`fit` relies on.
    """
    t_eval = np.asarray(t_eval, dtype=float)
    if np.any(t_eval < 0) or np.any(np.diff(t_eval) < 0):
        raise ValueError("t_eval must be non-decreasing and >= 0")
    t_end = float(t_eval[-1]) if t_eval.size else 0.0
    if t_end == 0.0:
        return np.tile(np.asarray(c0, dtype=float), (t_eval.size, 1))
    sol = solve_ivp(
        rhs,
        (0.0, t_end),
        np.asarray(c0, dtype=float),
        method="RK45",
        t_eval=t_eval,
        args=(a, speed, switch_t, switch_rate),
        rtol=rtol,
        atol=atol,
    )
    if not sol.success:
        raise RuntimeError(f"ODE integration failed: {sol.message}")
    return sol.y.T


def simulate(
    a: float,
    *,
    t_max: float = DEFAULT_T_MAX,
    n: int = 200,
    speed: float = 3.0,
    switch_t: float = 10.0,
    switch_rate: float = 0.1,
    c0: Sequence[float] = (0.5, 0.5),
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's simulation: ``n`` evenly spaced times on [0, t_max].

    Returns ``(t [n], c [n, 2])``. Defaults are the notebook's (speed 3, switch at t = 10 with
    rate 0.1, t in [0, 25]); the paper sweeps ``a`` over linspace(1, 5, 15).
    """
    t = np.linspace(0.0, t_max, n)
    c = integrate(t, a=a, speed=speed, switch_t=switch_t, switch_rate=switch_rate, c0=c0)
    return t, c


def _unpack(theta: np.ndarray, fit_c0: bool, c0: Sequence[float]) -> tuple[dict, np.ndarray]:
    """Optimiser vector → (model parameters, initial state). Positive parameters live in log."""
    params = {
        "a": float(np.exp(theta[0])),
        "speed": float(np.exp(theta[1])),
        "switch_t": float(theta[2]),
        "switch_rate": float(np.exp(theta[3])),
    }
    start = np.asarray(theta[4:6] if fit_c0 else c0, dtype=float)
    return params, start


def fit(
    t_obs: np.ndarray,
    c_obs: np.ndarray,
    *,
    tau: float | None = None,
    c0: Sequence[float] = (0.5, 0.5),
    fit_c0: bool = False,
    a_inits: Sequence[float] = (0.5, 2.0, 5.0),
) -> dict:
    """Least-squares fit of (a, speed, switch_t, switch_rate) to an observed 2-D trajectory.

    t_obs: [T] training steps (or model times with ``tau=1``); c_obs: [T, 2] concept-space
    coordinates (column 0 = concept 1, column 1 = concept 2; ``a > 1`` means concept 2 has the
    stronger signal). Model time is ``t_obs / tau``; ``tau`` defaults to ``t_obs[-1] / 25`` so
    the budget maps onto the notebook's time span (see the module docstring for why it is fixed).
    The start is ``c0``, or fitted too with ``fit_c0``. Several starting values of ``a`` are
    tried (the cost has a mirror basin at 1/a) and the best solution is kept.

    Returns ``params`` ({a, speed, switch_t, switch_rate} in model time), ``switch_step``
    (= switch_t·tau), ``tau``, ``c0``, ``c_fit`` [T, 2], ``rmse``, ``r2`` (1 − SS_res/SS_tot over
    both coordinates, SS_tot about each coordinate's mean), ``cost``, ``success`` and
    ``at_bound`` (the parameters that ended on a bound of the search box, where the data do
    not pin them down: e.g. a switch after the budget).
    """
    t_obs = np.asarray(t_obs, dtype=float)
    c_obs = np.asarray(c_obs, dtype=float)
    if c_obs.shape != (t_obs.size, 2):
        raise ValueError(f"c_obs must have shape ({t_obs.size}, 2), got {c_obs.shape}")
    tau = float(t_obs[-1] / DEFAULT_T_MAX) if tau is None else float(tau)
    t_model = t_obs / tau
    t_hi = float(t_model[-1])

    def residuals(theta: np.ndarray) -> np.ndarray:
        params, start = _unpack(theta, fit_c0, c0)
        return (integrate(t_model, c0=start, rtol=1e-6, atol=1e-9, **params) - c_obs).ravel()

    lower = [np.log(0.05), np.log(1e-3), -t_hi, np.log(1e-3)]
    upper = [np.log(20.0), np.log(1e3), 2.0 * t_hi, np.log(1e2)]
    if fit_c0:
        lower += [0.0, 0.0]
        upper += [1.0, 1.0]
    best = None
    for a0 in a_inits:
        theta0 = [np.log(a0), np.log(3.0 * DEFAULT_T_MAX / t_hi), 0.4 * t_hi, np.log(4.0 / t_hi)]
        if fit_c0:
            theta0 += list(np.clip(c_obs[0], 0.0, 1.0))
        res = least_squares(residuals, np.clip(theta0, lower, upper), bounds=(lower, upper))
        if best is None or res.cost < best.cost:
            best = res

    params, start = _unpack(best.x, fit_c0, c0)
    c_fit = integrate(t_model, c0=start, **params)
    tight = np.isclose(best.x[:4], lower[:4], rtol=0, atol=1e-6) | np.isclose(
        best.x[:4], upper[:4], rtol=0, atol=1e-6
    )
    at_bound = [name for name, hit in zip(PARAM_NAMES, tight, strict=True) if hit]
    ss_res = float(np.sum((c_fit - c_obs) ** 2))
    ss_tot = float(np.sum((c_obs - c_obs.mean(axis=0)) ** 2))
    return {
        "params": params,
        "switch_step": params["switch_t"] * tau,
        "tau": tau,
        "c0": tuple(float(v) for v in start),
        "c_fit": c_fit,
        "rmse": float(np.sqrt(np.mean((c_fit - c_obs) ** 2))),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "cost": float(best.cost),
        "success": bool(best.success),
        "at_bound": at_bound,
    }


FIT_COLUMNS = [
    "run",
    "class",
    "concept_1",
    "concept_2",
    "n_points",
    *PARAM_NAMES,
    "switch_step",
    "tau",
    "c0_1",
    "c0_2",
    "rmse",
    "r2",
    "success",
    "at_bound",
]


def fit_held_out(traj, *, fit_c0: bool = True, min_points: int = 6):
    """Fit the model to every held-out trajectory that is novel in exactly two concepts.

    ``traj``: seed-averaged trajectories (``analysis.trajectories``: ``run, class, held_out,
    step, <concept>..., target_<concept>...``). A held-out class whose target differs from the
    base corner in exactly two concepts is a 2-D problem of the model's shape: its two
    coordinates (P(value 1) of those concepts, target 1 each) are fitted in grid order, so
    ``a > 1`` means the second concept is learned faster. Classes novel in one or three
    concepts, or with fewer than ``min_points`` checkpoints, are listed as skipped.

    Returns ``(table, curves, skipped)``: ``table`` one row per fit (:data:`FIT_COLUMNS`),
    ``curves`` the long frame ``run, class, concept, step, measured, fitted`` and
    ``skipped`` a list of ``{"run", "class", "reason"}``.
    """
    import pandas as pd

    concepts = [c.removeprefix("target_") for c in traj.columns if c.startswith("target_")]
    rows, curves, skipped = [], [], []
    held = traj[traj["held_out"].astype(bool)]
    for (run, cls), g in held.groupby(["run", "class"], sort=True):
        g = g.sort_values("step")
        novel = [c for c in concepts if float(g[f"target_{c}"].iloc[0]) == 1.0]
        if len(novel) != 2:
            skipped.append(
                {"run": run, "class": cls, "reason": f"novel in {len(novel)} concepts, not 2"}
            )
            continue
        if len(g) < min_points:
            skipped.append({"run": run, "class": cls, "reason": f"only {len(g)} checkpoints"})
            continue
        steps = g["step"].to_numpy(float)
        obs = g[novel].to_numpy(float)
        res = fit(steps, obs, fit_c0=fit_c0)
        rows.append(
            {
                "run": run,
                "class": cls,
                "concept_1": novel[0],
                "concept_2": novel[1],
                "n_points": len(g),
                **res["params"],
                "switch_step": res["switch_step"],
                "tau": res["tau"],
                "c0_1": res["c0"][0],
                "c0_2": res["c0"][1],
                "rmse": res["rmse"],
                "r2": res["r2"],
                "success": res["success"],
                "at_bound": "+".join(res["at_bound"]),
            }
        )
        for j, c in enumerate(novel):
            curves.append(
                pd.DataFrame(
                    {
                        "run": run,
                        "class": cls,
                        "concept": c,
                        "step": steps,
                        "measured": obs[:, j],
                        "fitted": res["c_fit"][:, j],
                    }
                )
            )
    curve_cols = ["run", "class", "concept", "step", "measured", "fitted"]
    curves = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=curve_cols)
    return pd.DataFrame(rows, columns=FIT_COLUMNS), curves, skipped
