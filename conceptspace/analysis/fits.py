"""Learning time against concept signal: the least-squares fits and the signal-order rule.

docs/method.md §5.3. (The phenomenological ODE of §5.6 is :mod:`.dynamics_model`.) This module
owns both for the whole analysis: :func:`ols` is its one least-squares line (the study's 1/T
fits, the across-seeds fit, the concept-distance line of §7.1) and :func:`is_monotone_decreasing`
its one signal-order rule (the study's verdict and each seed's verdict across seeds).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

# --------------------------------------------------------------------------------------------
# Learning time against concept signal
# --------------------------------------------------------------------------------------------


def ols(x, y) -> tuple[float, float, float, float]:
    """Least squares ``y = slope·x + intercept`` by ``scipy.stats.linregress``: ``(slope,
    intercept, r2, standard error of the slope)``. All NaN for fewer than two points or a
    constant x; r2 NaN for a constant y (R² is 0/0 there), the standard error NaN for fewer
    than three points (no residual degree of freedom; linregress says 0)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 2 or np.ptp(x) == 0:
        return (float("nan"),) * 4
    fit = stats.linregress(x, y)
    r2 = float(fit.rvalue**2) if np.ptp(y) > 0 else float("nan")
    se = float(fit.stderr) if x.size > 2 else float("nan")
    return float(fit.slope), float(fit.intercept), r2, se


def fit_inverse_time(signal: np.ndarray, T: np.ndarray, censored: np.ndarray | None = None) -> dict:
    """Fit learning speed 1/T against concept signal on the uncensored points (§5.3 extra).

    signal, T, censored: shape [N]. Two fits, both ordinary least squares (:func:`ols`):

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
    slope, intercept, r2, _ = ols(x[ok], 1.0 / t[ok])
    pos = ok & (x > 0)
    p_exp, log_c, p_r2, _ = ols(np.log(x[pos]), -np.log(t[pos]))
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


#: the reason :func:`is_monotone_decreasing` gives when two points share a separation
REPEATED = "repeated separations"


def is_monotone_decreasing(
    x: np.ndarray, y: np.ndarray, censored: np.ndarray | None = None, *, strict: bool = True
) -> dict:
    """Does learning time fall as concept signal grows? The signal-order rule of
    docs/method.md §5.3, the one statement of it for the study and for each seed.

    x (signal or separation), y (learning time), censored: shape [N], one point per distinct
    x (aggregate seeds first). The rule, explicitly:

    1. a censored y is only known to be ≥ the budget, so it is treated as +inf;
    2. sorted by x, every consecutive pair must have y strictly decreasing (``strict=False``:
       non-increasing), except that two censored neighbours (inf, inf) are an allowed tie;
    3. the evidence must be sufficient: at least 3 points and at least 2 uncensored ones,
       otherwise ``monotone`` is False with ``reason="insufficient"``;
    4. repeated x cannot be ordered: ``monotone`` is None (the rule cannot be read, neither
       yes nor no) with ``reason`` :data:`REPEATED`.

    Returns ``monotone`` (bool, None for repeated x), ``reason`` ("ok" | "insufficient" |
    "violated" | :data:`REPEATED`), ``violations`` (list of (x_i, x_{i+1}) pairs breaking rule
    2), ``n``, ``n_uncensored``, ``spearman_rho`` (of x against y with censored = +inf;
    negative means decreasing; NaN for repeated x) and ``spearman_p``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    cens = np.zeros(x.shape, bool) if censored is None else np.asarray(censored, dtype=bool)
    if not (x.shape == y.shape == cens.shape) or x.ndim != 1:
        raise ValueError("x, y and censored must be 1-D arrays of equal length")
    order = np.argsort(x, kind="stable")
    x, cens = x[order], cens[order]
    y = np.where(cens, np.inf, y[order])
    repeated = np.unique(x).size != x.size

    violations = []
    for i in range(0 if repeated else x.size - 1):
        both_censored = cens[i] and cens[i + 1]
        ok = y[i + 1] < y[i] if strict else y[i + 1] <= y[i]
        if not (ok or both_censored):
            violations.append((float(x[i]), float(x[i + 1])))

    n, n_unc = int(x.size), int((~cens).sum())
    rho = p = float("nan")
    if not repeated and n >= 2 and np.unique(y).size > 1:
        res = stats.spearmanr(x, y)  # ranks: +inf is simply the largest
        rho, p = float(res.statistic), float(res.pvalue)
    if repeated:
        reason = REPEATED
    elif n < 3 or n_unc < 2:
        reason = "insufficient"
    else:
        reason = "violated" if violations else "ok"
    return {
        "monotone": None if repeated else reason == "ok",
        "reason": reason,
        "violations": violations,
        "n": n,
        "n_uncensored": n_unc,
        "spearman_rho": rho,
        "spearman_p": p,
    }
