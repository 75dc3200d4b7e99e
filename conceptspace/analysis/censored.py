"""Statistics of learning times some of which are censored (never reached within the budget).

Pure functions of arrays, used by :mod:`.across_seeds` to pool a sweep run with several seeds.
A censored learning time is only a lower bound: the run's budget (its last checkpoint step).

* **Medians** over seeds at each separation use censored values at the budget. Such a value is a
  lower bound, so the median is flagged ``median_is_lower_bound`` when raising a censored value
  could raise it (a censored value sits at or below the middle order statistic, ties broken with
  measured values first). Intervals are **percentile bootstrap** intervals of the median:
  resample that separation's seeds with replacement, ``n_boot`` times, with
  ``numpy.random.default_rng`` seeded by ``random_state`` and the separation's index; the
  endpoints are order statistics of the bootstrap medians (no interpolation), and an endpoint is
  flagged a lower bound when a bootstrap median with that value was. Fewer than three seeds give
  no interval. (The resamples are those ``scipy.stats.bootstrap(..., paired=True)`` draws from
  the same generator; its percentile interval is not used because it interpolates between
  bootstrap medians, which gives endpoints no resample had and so none that can carry the
  lower-bound flag.)
* **Signal order across seeds** is Somers' D of learning time on separation over all
  (separation, seed) points, with pairs scored as in Gehan's test for censored data: a pair at two
  different separations is concordant or discordant only when the order of its two learning times
  is determined (both measured and unequal; or one measured at or before the other's budget while
  the other is censored). Undetermined pairs (both censored; measured ties) score 0 but stay in
  the denominator (all pairs at different separations), so D = -1 only when every such pair is
  determined and ordered by decreasing time, and censoring can only pull D towards 0. With a
  common budget this is Kendall's tau with censored times ranked last and tied among themselves,
  normalised by the pairs untied in separation, i.e. ``scipy.stats.somersd`` with censored times
  set above every measured one; it is computed here because that substitute cannot express
  budgets that differ between runs. Its p-value is a **permutation test** of "no relation"
  against "decreasing" by ``scipy.stats.permutation_test``: learning times (with their censored
  flag and budget) are permuted among the separations *within each seed* (seed effects are left
  intact; each seed is one sample of ``permutation_type="pairings"``, so every seed needs the
  same number of points), exactly over all permutations when there are at most ``max_exact`` of
  them, else by ``n_perm`` random permutations (seeded; p = (1 + #{D* <= D}) / (1 + n_perm)).
  The two-sided p counts |D*| >= |D| in the same null distribution. Spearman's rho with midranks
  (censored ranked last, tied) is reported alongside for reference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

# --------------------------------------------------------------------------------------------
# medians with censored values and their bootstrap intervals
# --------------------------------------------------------------------------------------------


def median_with_bounds(values, lower_bound) -> tuple[float, bool]:
    """Median of ``values`` where some are only lower bounds (e.g. censored learning times).

    values, lower_bound: shape [n]. The median is computed on the values as given; it is flagged
    as a lower bound when raising some bounded value could raise it: sorted by value with
    measured values before bounded ties, a bounded value at or below the (upper) middle position.
    Returns ``(median, is_lower_bound)``; ``(nan, False)`` for no values.
    """
    v = np.asarray(values, dtype=float)
    b = np.asarray(lower_bound, dtype=bool)
    if v.size == 0:
        return float("nan"), False
    order = np.lexsort((b, v))
    v, b = v[order], b[order]
    upper_middle = v.size // 2
    return float(np.median(v)), bool(b[: upper_middle + 1].any())


#: fewest values a bootstrap interval of a median is computed from
MIN_BOOTSTRAP = 3


def bootstrap_median(
    values, lower_bound, *, n_boot: int = 2000, confidence: float = 0.95, rng=None
) -> dict:
    """Median over seeds with a percentile-bootstrap interval (see the module docstring).

    Returns ``median, median_is_lower_bound, ci_low, ci_high, ci_low_is_lower_bound,
    ci_high_is_lower_bound, n, n_lower_bound``; the interval is None (NaN) for fewer than
    :data:`MIN_BOOTSTRAP` values (resampling two seeds gives only their two values and their
    mean: no interval worth the name).
    """
    v = np.asarray(values, dtype=float)
    b = np.asarray(lower_bound, dtype=bool)
    ok = np.isfinite(v)
    v, b = v[ok], b[ok]
    med, flag = median_with_bounds(v, b)
    out = {
        "median": med,
        "median_is_lower_bound": flag,
        "ci_low": float("nan"),
        "ci_high": float("nan"),
        "ci_low_is_lower_bound": False,
        "ci_high_is_lower_bound": False,
        "n": int(v.size),
        "n_lower_bound": int(b.sum()),
    }
    if v.size < MIN_BOOTSTRAP:
        return out
    rng = np.random.default_rng(0) if rng is None else rng
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    meds = np.empty(n_boot)
    flags = np.empty(n_boot, dtype=bool)
    for i in range(n_boot):
        meds[i], flags[i] = median_with_bounds(v[idx[i]], b[idx[i]])
    order = np.argsort(meds, kind="stable")
    meds, flags = meds[order], flags[order]
    alpha = 1.0 - confidence
    i_lo = int(math.floor(alpha / 2 * (n_boot - 1)))
    i_hi = int(math.ceil((1 - alpha / 2) * (n_boot - 1)))
    lo, hi = float(meds[i_lo]), float(meds[i_hi])
    out.update(
        ci_low=lo,
        ci_high=hi,
        ci_low_is_lower_bound=bool(flags[meds == lo].any()),
        ci_high_is_lower_bound=bool(flags[meds == hi].any()),
    )
    return out


# --------------------------------------------------------------------------------------------
# signal order: censored rank correlation and its permutation test
# --------------------------------------------------------------------------------------------


def _earlier(t, c, b):
    """``E[..., i, j]`` True when T_i < T_j is determined by the data (Gehan's scoring).

    t, c, b: [..., n] time (budget when censored), censored flag, budget. A measured time is
    earlier than another measured time when smaller, and earlier than a censored one (which
    is > that run's budget) when at most that budget; a censored time is never known earlier.
    """
    ti, tj = t[..., :, None], t[..., None, :]
    ci, cj = c[..., :, None], c[..., None, :]
    bj = b[..., None, :]
    return ~ci & ((~cj & (ti < tj)) | (cj & (ti <= bj)))


def somers_numerators(x, t, c, b) -> np.ndarray:
    """Σ over pairs i<j of sign(x_j - x_i)·order(T_j vs T_i), for a batch of [..., n] times."""
    e = _earlier(t, c, b)
    later = e.swapaxes(-1, -2).astype(np.int8) - e.astype(np.int8)  # +1: T_i > T_j
    sx = np.sign(x[:, None] - x[None, :]).astype(np.int8)  # +1: x_i > x_j
    return (later * sx).sum(axis=(-1, -2)) / 2.0


def censored_somers_d(sep, t, censored, budget) -> dict:
    """Somers' D of learning time on separation with Gehan-scored censored pairs.

    sep, t, censored, budget: shape [n], one entry per (separation, seed) point, ``t`` at the
    budget when censored. Negative D: learning time falls as separation grows. Returns ``d``,
    ``n_pairs`` (pairs at different separations), ``concordant`` (pairs ordered by decreasing
    time), ``discordant``, ``undetermined`` (censoring leaves the order open), ``tied`` (equal
    measured times). ``d`` is NaN without any pair at different separations.
    """
    x = np.asarray(sep, dtype=float)
    t = np.asarray(t, dtype=float)
    c = np.asarray(censored, dtype=bool)
    b = np.asarray(budget, dtype=float)
    e = _earlier(t, c, b)
    iu = np.triu_indices(x.size, k=1)
    sx = np.sign(x[:, None] - x[None, :])[iu]
    later = (e.T.astype(int) - e.astype(int))[iu]
    diff = sx != 0
    both_measured = (~c[:, None] & ~c[None, :])[iu]
    tied = diff & both_measured & (t[:, None] == t[None, :])[iu]
    n_pairs = int(diff.sum())
    prod = sx * later
    return {
        "d": float(prod[diff].sum() / n_pairs) if n_pairs else float("nan"),
        "n_pairs": n_pairs,
        "concordant": int((diff & (prod < 0)).sum()),
        "discordant": int((diff & (prod > 0)).sum()),
        "undetermined": int((diff & (later == 0) & ~tied).sum()),
        "tied": int(tied.sum()),
    }


def within_seed_permutation_test(
    sep, t, censored, budget, seed, *, n_perm: int, max_exact: int, rng
) -> dict:
    """The permutation test of :func:`censored_somers_d` with learning times permuted among
    the separations within each seed (module docstring), by ``scipy.stats.permutation_test``.

    sep, t, censored, budget, seed: shape [n], one entry per (separation, seed) point; every
    seed must hold the same number (at least two) of points. Exact over all (k!)^seeds
    permutations when there are at most ``max_exact``, else ``n_perm`` random ones drawn by
    ``rng``. Returns ``p_value`` (one-sided, against "decreasing"), ``p_two_sided`` (|D*| >=
    |D|), ``p_method`` ("exact" | "monte_carlo") and ``n_permutations``.
    """
    x = np.asarray(sep, dtype=float)
    t = np.asarray(t, dtype=float)
    c = np.asarray(censored, dtype=bool)
    b = np.asarray(budget, dtype=float)
    seed = np.asarray(seed)
    groups = [np.flatnonzero(seed == s) for s in np.unique(seed)]
    k = {len(g) for g in groups}
    if len(k) != 1 or min(k) < 2:
        raise ValueError(
            "permuting learning times within seeds needs the same number (at least two) of "
            f"points in every seed; the seeds hold {[len(g) for g in groups]}"
        )
    # scipy permutes each sample (one seed's point indices) in place: position j of seed s
    # keeps its separation x[groups[s][j]] and takes the time of the point moved there
    x_at = x[np.concatenate(groups)]
    n_pairs = int((x_at[:, None] != x_at[None, :]).sum() // 2)

    def somers_d(*points, axis=-1):
        i = np.stack(points, axis=-2)
        i = i.reshape(*i.shape[:-2], -1)
        return somers_numerators(x_at, t[i], c[i], b[i]) / n_pairs

    total = math.factorial(len(groups[0])) ** len(groups)
    exact = total <= max_exact
    res = stats.permutation_test(
        groups,
        somers_d,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=total if exact else n_perm,
        batch=2000,
        alternative="less",
        rng=rng,
    )
    null, d = res.null_distribution, float(res.statistic)
    adjust = 0 if exact else 1  # a random null counts the observed permutation too
    two = (adjust + int((np.abs(null) >= abs(d) * (1 - 100 * np.finfo(float).eps)).sum())) / (
        null.size + adjust
    )
    return {
        "p_value": float(res.pvalue),
        "p_two_sided": float(min(1.0, two)),
        "p_method": "exact" if exact else "monte_carlo",
        "n_permutations": int(null.size),
    }
