"""Verdicts across seeds on synthetic sweeps whose answers are known by construction."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

import conceptspace.analysis.across_seeds as X
import conceptspace.analysis.censored as C
import conceptspace.analysis.fits as FT
import conceptspace.analysis.summary as S
from conceptspace.figures.across_seeds import across_seeds_figure

BUDGET = 9000.0
SEPS = (0.15, 0.4, 0.6, 0.8)


def points(times: dict[int, list], seps=SEPS, **extra) -> pd.DataFrame:
    """A points table: ``times[seed]`` holds one held-out learning time per separation, None
    meaning censored (never reached within the budget); ``extra`` columns are constant or
    given as ``{seed: [one value per separation]}``."""
    rows = []
    for seed, ts in times.items():
        for i, (sep, t) in enumerate(zip(seps, ts, strict=True)):
            row = {
                "run": f"c{round(sep * 100):03d}",
                "seed": seed,
                "sep": sep,
                "signal": sep**2 / 12,
                "t_held_out": BUDGET if t is None else float(t),
                "held_out_censored": t is None,
                "budget": BUDGET,
            }
            for k, v in extra.items():
                row[k] = v[seed][i] if isinstance(v, dict) else v
            rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# signal order across seeds
# --------------------------------------------------------------------------------------------


def test_perfect_order_gives_d_minus_one_and_a_small_exact_p():
    # every time at a larger separation is below every time at a smaller one, in every seed
    p = points(
        {0: [8000, 5000, 3000, 1000], 1: [8500, 5500, 3500, 1500], 2: [7000, 4500, 2500, 900]}
    )
    res = X.signal_order_test(p)
    assert res["d"] == -1.0 and res["concordant"] == res["n_pairs"] == 6 * 9
    # only the identity (of 24**3 within-seed permutations) reaches D = -1
    assert res["p_method"] == "exact" and res["n_permutations"] == 24**3
    assert res["p_value"] == pytest.approx(1 / 24**3)
    assert res["holds"] is True
    assert res["spearman_rho_midranks"] < -0.9


def test_increasing_order_is_not_a_signal_order():
    p = points({0: [1000, 3000, 5000, 8000], 1: [900, 2500, 4500, 7000]})
    res = X.signal_order_test(p)
    assert res["d"] == 1.0
    assert res["p_value"] == 1.0 and res["holds"] is False
    assert res["p_two_sided"] == pytest.approx(2 / 24**2)


def test_shuffled_times_are_not_significant():
    rng = np.random.default_rng(7)
    base = np.array([8000, 5000, 3000, 1000])
    p = points({s: list(rng.permutation(base)) for s in range(4)})
    res = X.signal_order_test(p)
    assert res["p_value"] > 0.1 and res["holds"] is False
    assert abs(res["d"]) < 0.5


def test_d_is_somers_d_with_censored_ranked_last_under_a_common_budget():
    p = points(
        {0: [None, 6000, 2500, 2500], 1: [None, None, 4000, 1200], 2: [7000, 7200, 3000, 800]}
    )
    res = X.signal_order_test(p)
    y = np.where(p["held_out_censored"], np.inf, p["t_held_out"])
    y = np.where(np.isinf(y), 1e9, y)  # ranked last, tied among themselves
    ref = stats.somersd(p["sep"], y).statistic  # D(Y|X)
    assert res["d"] == pytest.approx(ref)
    # both censored at different separations (seed 0 at 0.15 and seed 1 at 0.15, each with
    # seed 1 at 0.4): undetermined, still counted among the pairs
    assert res["undetermined"] == 2
    assert res["tied"] == 1  # seed 0: 2500 at 0.6 and at 0.8 (and no other equal pair)
    assert res["concordant"] + res["discordant"] + res["undetermined"] + res["tied"] == 54
    assert res["d"] == pytest.approx((res["concordant"] - res["discordant"]) / -54)


def test_unequal_budgets_leave_a_pair_open_when_censoring_cannot_order_it():
    p = points({0: [None, 3000], 1: [7000, 2000]}, seps=(0.15, 0.8))
    p.loc[(p["seed"] == 0) & (p["sep"] == 0.15), ["t_held_out", "budget"]] = 5000.0
    res = X.signal_order_test(p)
    # seed 0 at 0.15 is only known to be > 5000; seed 1 at 0.8 (2000) is earlier: determined;
    # seed 1 at 0.15 (7000, measured) against seed 0 at 0.15 is the same separation: not a pair;
    # seed 0 at 0.8 (3000) vs seed 1 at 0.15 (7000): concordant. Nothing at 0.8 exceeds 5000.
    assert res["undetermined"] == 0 and res["d"] == -1.0
    q = points({0: [None, 6000], 1: [7000, 2000]}, seps=(0.15, 0.8))
    q.loc[(q["seed"] == 0) & (q["sep"] == 0.15), ["t_held_out", "budget"]] = 5000.0
    res = X.signal_order_test(q)
    # 6000 at 0.8 (seed 0) against "> 5000" at 0.15 (seed 0): order unknown
    assert res["undetermined"] == 1 and res["d"] == pytest.approx(-3 / 4)
    # a time measured at the last checkpoint is earlier than one censored at that budget
    r = points({0: [None, BUDGET]}, seps=(0.15, 0.8))
    res = X.signal_order_test(r)
    assert (res["concordant"], res["undetermined"], res["d"]) == (1, 0, -1.0)


def test_the_tracker_case_two_seeds_with_a_tie():
    # seed 0 of the default study and seed 1: color learned at 1,830 at both 0.75 and 0.8
    p = points({0: [None, 7242, 6699], 1: [None, 1830, 1830]}, seps=(0.15, 0.75, 0.8))
    frames, m = X.summarize(p)
    pooled = m["phenomena"]["signal_order"]["pooled"]
    assert pooled["tied"] == 1 and pooled["d"] == pytest.approx(-0.75)
    # exact: the identity of seed 0 with either order of seed 1's two equal times
    assert pooled["p_value"] == pytest.approx(2 / 36)
    so = m["phenomena"]["signal_order"]
    assert (so["holds_in"], so["n"], so["seeds_failing"]) == (1, 2, [1])
    by_seed = frames["by_seed"].set_index("seed")
    assert by_seed.loc[1, "signal_order_reason"] == "violated"


#: the points of the studies as committed at 4,500 steps (results/<study>/analyze/
#: across_seeds_points.csv before the 6,500-step schedule): seed -> held-out color learning
#: time at Δcolor 0.2, 0.5, 0.8 (None: censored at the 4,500 budget); fixed reference data
COMMITTED = {
    "default": {0: [None, None, 1744], 1: [3903, 2149, 1380], 2: [None, 1557, 1059]},
    "unseen_seeds": {3: [None, 1059, 657], 4: [3621, 3088, 1059]},
}


def _enumerated_p(p: pd.DataFrame) -> tuple[float, float, int]:
    """The replaced hand-written test, as a reference: every permutation of the times within
    each seed, Gehan-scored D of each, exact one- and two-sided p."""
    import itertools

    x, t = p["sep"].to_numpy(), p["t_held_out"].to_numpy()
    c, b = p["held_out_censored"].to_numpy(), p["budget"].to_numpy()
    d0 = C.censored_somers_d(x, t, c, b)["d"]
    groups = [np.flatnonzero(p["seed"].to_numpy() == s) for s in p["seed"].unique()]
    ds = []
    for combo in itertools.product(*(itertools.permutations(g) for g in groups)):
        i = np.arange(len(p))
        for g, perm in zip(groups, combo, strict=True):
            i[g] = perm
        ds.append(C.censored_somers_d(x, t[i], c[i], b[i])["d"])
    ds = np.array(ds)
    return (ds <= d0 + 1e-12).mean(), (np.abs(ds) >= abs(d0) - 1e-12).mean(), ds.size


@pytest.mark.parametrize(
    "study, d, p_one, p_two, n",
    [("default", -7 / 9, 2 / 216, 4 / 216, 216), ("unseen_seeds", -11 / 12, 1 / 36, 2 / 36, 36)],
)
def test_scipy_permutation_test_gives_the_committed_numbers(study, d, p_one, p_two, n):
    """The pooled order test by scipy.stats.permutation_test (each seed one sample of
    permutation_type="pairings") gives the numbers the hand-written enumeration gave and the
    committed summaries print: default "Somers' D -0.78, one-sided permutation p 0.00926
    (exact)", unseen_seeds "D -0.92, p 0.0278"."""
    p = points(COMMITTED[study], seps=(0.2, 0.5, 0.8))
    p["budget"] = 4500.0
    p.loc[p["held_out_censored"], "t_held_out"] = 4500.0
    res = X.signal_order_test(p)
    assert res["d"] == d and res["p_method"] == "exact" and res["n_permutations"] == n
    assert (res["p_value"], res["p_two_sided"]) == (p_one, p_two)
    assert (res["p_value"], res["p_two_sided"], n) == _enumerated_p(p)
    assert f"{res['d']:+.2f} {res['p_value']:.3g}" in ("-0.78 0.00926", "-0.92 0.0278")


def test_within_seed_permutations_need_as_many_points_in_every_seed():
    p = points({0: [8000, 5000, 3000, 1000], 1: [8500, 5500, 3500, 1500]})
    with pytest.raises(ValueError, match="same number"):
        X.signal_order_test(p.iloc[:-1])


def test_monte_carlo_p_when_exact_enumeration_is_too_large():
    rng = np.random.default_rng(0)
    p = points(
        {s: list(np.array([8000, 5000, 3000, 1000]) + rng.integers(0, 300, 4)) for s in range(6)}
    )
    res = X.signal_order_test(p, n_perm=2000)
    assert res["p_method"] == "monte_carlo" and res["n_permutations"] == 2000
    assert res["p_value"] == pytest.approx(1 / 2001)
    assert X.signal_order_test(p, n_perm=2000) == res  # seeded: the same every time


# --------------------------------------------------------------------------------------------
# medians, intervals, censoring
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, bounds, expected",
    [
        ([5, 5, 7], [False, True, False], (5.0, True)),  # raising the bound raises the median
        ([5, 5, 5], [False, False, True], (5.0, False)),  # a tie above the middle: no effect
        ([1, 2, 3, 4], [False, False, True, True], (2.5, True)),
        ([1, 2, 3, 4], [False, False, False, True], (2.5, False)),
        ([9000, 9000, 9000], [True, True, True], (9000.0, True)),
    ],
)
def test_median_with_bounds(values, bounds, expected):
    assert C.median_with_bounds(values, bounds) == expected


def test_all_censored_at_one_separation():
    p = points(
        {0: [None, 6000, 3000, 1000], 1: [None, 5000, 2000, 800], 2: [None, 7000, 2500, 900]}
    )
    frames, m = X.summarize(p)
    row = frames["by_separation"].set_index("sep").loc[0.15]
    assert row["held_out_median"] == BUDGET and row["held_out_median_is_lower_bound"]
    assert row["held_out_ci_low"] == row["held_out_ci_high"] == BUDGET
    assert row["held_out_ci_low_is_lower_bound"] and row["held_out_ci_high_is_lower_bound"]
    assert row["held_out_n_lower_bound"] == 3
    other = frames["by_separation"].set_index("sep").loc[0.4]
    assert other["held_out_median"] == 6000 and not other["held_out_median_is_lower_bound"]
    assert 5000 <= other["held_out_ci_low"] <= 6000 <= other["held_out_ci_high"] <= 7000
    # a censored time at the weakest separation is later than every measured one: determined
    pooled = m["phenomena"]["signal_order"]["pooled"]
    assert pooled["d"] == -1.0 and pooled["undetermined"] == 0
    assert m["fit_inverse_time"]["n_excluded_censored"] == 3


def test_one_seed_has_no_interval_and_a_one_sixth_p():
    p = points({0: [None, 7242, 6699]}, seps=(0.15, 0.75, 0.8))
    frames, m = X.summarize(p)
    assert m["n_seeds"] == 1
    assert all(r["held_out_ci_low"] is None for r in m["by_separation"])
    pooled = m["phenomena"]["signal_order"]["pooled"]
    assert pooled["d"] == -1.0 and pooled["p_value"] == pytest.approx(1 / 6)
    assert pooled["holds"] is False  # three points cannot establish an order at alpha 0.05
    assert m["phenomena"]["signal_order"]["holds_in"] == 1
    assert m["fit_inverse_time"]["slope_ci_bootstrap_seeds"] == [None, None]


def test_bootstrap_is_deterministic_and_uses_its_seed():
    rng = np.random.default_rng(1)
    base = np.array([8000, 5000, 3000, 1000])
    p = points({s: list(base * rng.uniform(0.5, 1.5, 4)) for s in range(5)})
    a = X.summarize(p)[1]
    assert json.dumps(a, allow_nan=False) == json.dumps(X.summarize(p)[1], allow_nan=False)
    v = np.random.default_rng(2).uniform(1000, 8000, 10)
    none = np.zeros(10, bool)

    def ci(seed):
        r = C.bootstrap_median(v, none, n_boot=20, confidence=0.5, rng=np.random.default_rng(seed))
        return r["ci_low"], r["ci_high"]

    assert ci(0) == ci(0) and ci(0) != ci(1)
    r = C.bootstrap_median(v, none)
    # the resamples are scipy.stats.bootstrap's from the same generator; its percentile
    # interval interpolates between them, the order statistics here lie at or outside it
    sp = stats.bootstrap(
        (v,), np.median, n_resamples=2000, method="percentile", rng=np.random.default_rng(0)
    )
    draws = np.random.default_rng(0).integers(0, v.size, size=(2000, v.size))
    assert np.array_equal(sp.bootstrap_distribution, np.median(v[draws], axis=1))
    lo, hi = sp.confidence_interval
    assert r["ci_low"] <= lo <= hi <= r["ci_high"]
    # the documented percentile interval: order statistics of the bootstrap medians
    for n_boot, conf, lo, hi in ((2000, 0.95, 49, 1950), (20, 0.5, 4, 15)):
        draws = np.random.default_rng(0).integers(0, v.size, size=(n_boot, v.size))
        meds = np.sort(np.median(v[draws], axis=1))
        got = C.bootstrap_median(v, none, n_boot=n_boot, confidence=conf)
        assert (got["ci_low"], got["ci_high"]) == (meds[lo], meds[hi])
    assert r["ci_low"] <= r["median"] == np.median(v) <= r["ci_high"]
    assert min(v) <= r["ci_low"] and r["ci_high"] <= max(v)


# --------------------------------------------------------------------------------------------
# k of n seeds
# --------------------------------------------------------------------------------------------


def test_a_seed_where_a_phenomenon_fails_is_counted():
    n_sep = len(SEPS)
    expected = {s: [True, None, None, True] for s in range(3)}
    expected[2] = [True, None, None, False]  # seed 2 imitates the wrong class at strong signal
    lead_cp = {0: [5, 3, 1, 0], 1: [4, 2, 0, 0], 2: [0, 0, 0, -1]}  # seed 2: never ahead
    p = points(
        {0: [None, 6000, 3000, 1000], 1: [None, 5000, 2000, 800], 2: [None, 2000, 2500, 900]},
        memorized=expected,
        turned={s: [False, False, True, True] for s in range(3)},
        turn_step={s: [np.nan, np.nan, 5000.0, 4000.0] for s in range(3)},
        lead_checkpoints={s: [float(v) for v in lead_cp[s]] for s in range(3)},
        lead_steps={s: [400.0 * v for v in lead_cp[s]] for s in range(3)},
        lead_is_lower_bound={s: [True] + [False] * (n_sep - 1) for s in range(3)},
        elicited_censored=False,
    )
    frames, m = X.summarize(p)
    ph = m["phenomena"]
    assert (ph["memorization"]["holds_in"], ph["memorization"]["n"]) == (2, 3)
    assert ph["memorization"]["seeds_failing"] == [2]
    assert (ph["hidden_capability"]["holds_in"], ph["hidden_capability"]["n"]) == (2, 3)
    assert (ph["signal_order"]["holds_in"], ph["signal_order"]["seeds_failing"]) == (2, [2])
    lo, hi = ph["memorization"]["ci_fraction"]
    assert lo < 2 / 3 < hi and hi < 1  # Clopper-Pearson for 2 of 3
    row = frames["by_separation"].set_index("sep").loc[0.8]
    assert (row["n_memorized"], row["n_memorization_tested"]) == (2, 3)
    assert (row["n_turned"], row["n_turn_tested"]) == (3, 3) and row["turn_step_median"] == 4000
    first = frames["by_separation"].set_index("sep").loc[0.15]
    assert first["n_ahead"] == 2 and first["lead_median"] == 1600
    assert first["lead_median_is_lower_bound"]  # leads over a naive prompt that never got there


def test_leads_are_grouped_by_the_class_the_prompt_first_imitates():
    """Three kinds of lead per imitated class: inside the budget, a lower bound at its end, none;
    a run that imitates no class is grouped as "none"."""
    nan = float("nan")
    p = points(
        {0: [None, 6000, 3000, 1000], 1: [None, 5000, 2000, 800]},
        nearest_class={
            0: ["red_small", "red_small", "blue_large", "blue_large"],
            1: ["red_small", None, "blue_large", "blue_large"],
        },
        lead_steps={0: [1500.0, 2000.0, -300.0, nan], 1: [900.0, 400.0, nan, 1200.0]},
        lead_is_lower_bound={0: [False, True, False, False], 1: [False, False, False, False]},
        turned=True,
        t_train=500.0,
        train_censored=False,
    )
    groups = X.summarize(p)[1]["leads_by_imitated_class"]
    assert list(groups) == ["blue_large", "none", "red_small"]
    red = groups["red_small"]
    assert (red["runs"], red["inside"], red["lower_bound"], red["none"]) == (3, 2, 1, 0)
    assert red["leads"][1] == {"run": "c015", "seed": 1, "lead": 900.0, "kind": "inside"}
    assert red["leads"][2] == {"run": "c040", "seed": 0, "lead": 2000.0, "kind": "lower_bound"}
    blue = groups["blue_large"]
    assert (blue["runs"], blue["inside"], blue["lower_bound"], blue["none"]) == (4, 2, 0, 2)
    assert [x["lead"] for x in blue["leads"]] == [-300.0, None, None, 1200.0]
    assert groups["none"]["leads"] == [{"run": "c040", "seed": 1, "lead": 400.0, "kind": "inside"}]
    text = "\n".join(S.across_seeds_markdown(X.summarize(p)[1], p))
    assert "| red_small | 3 | 2: c015/0: 1500, c015/1: 900 | 1: c040/0: ≥2000 | 0: - |" in text
    assert "| blue_large | 4 | 2: c060/0: -300, c080/1: 1200 | 0: - | 2: c060/1, c080/0 |" in text
    assert X.leads_by_imitated_class(points({0: [None, 6000, 3000, 1000]})) == {}


def test_no_turn_means_no_memorization_and_untestable_seeds_are_not_counted():
    p = points(
        {0: [None, 6000, 3000, 1000], 1: [None, 5000, 2000, 800]},
        memorized={0: [True, None, None, True], 1: [None, None, None, None]},
        turned=False,
    )
    m = X.summarize(p)[1]["phenomena"]["memorization"]
    assert (m["holds_in"], m["n"], m["seeds_untested"]) == (0, 1, [1])
    assert m["fraction"] == 0.0


# --------------------------------------------------------------------------------------------
# learning-time fit
# --------------------------------------------------------------------------------------------


def test_inverse_time_fit_recovers_the_slope_with_intervals():
    slope, intercept = 0.03, 1e-4
    rng = np.random.default_rng(3)
    seps = (0.2, 0.4, 0.6, 0.8)
    times = {
        s: [1 / ((slope * x**2 / 12 + intercept) * rng.uniform(0.9, 1.1)) for x in seps]
        for s in range(5)
    }
    times[0][0] = None  # censored: left out of the fit
    fit = X.inverse_time_fit(points(times, seps=seps))
    assert fit["x"] == "signal" and fit["n"] == 19 and fit["n_excluded_censored"] == 1
    assert fit["slope"] == pytest.approx(slope, rel=0.15)
    lo, hi = fit["slope_ci_bootstrap_seeds"]
    assert lo < slope < hi and lo > 0
    t_lo, t_hi = fit["slope_ci_t"]
    assert t_lo < fit["slope"] < t_hi and fit["df"] == 17
    assert fit["n_boot_valid"] == fit["n_boot"]
    sep_fit = X.inverse_time_fit(points(times, seps=seps).drop(columns="signal"))
    assert sep_fit["x"] == "sep"


# --------------------------------------------------------------------------------------------
# input checks, JSON, adapter, figure
# --------------------------------------------------------------------------------------------


def test_points_table_is_checked():
    p = points({0: [None, 6000, 3000, 1000]})
    with pytest.raises(ValueError, match="lacks columns"):
        X.summarize(p.drop(columns="budget"))
    with pytest.raises(ValueError, match="repeated"):
        X.summarize(pd.concat([p, p]))


def test_metrics_are_json_without_nan():
    p = points({0: [None, 6000, 3000, 1000]}, lead_steps=np.nan, lead_checkpoints=np.nan)
    m = X.summarize(p)[1]
    text = json.dumps(m, allow_nan=False)
    assert "NaN" not in text and "Infinity" not in text
    assert m["phenomena"]["hidden_capability"]["n"] == 0  # no lead measured anywhere


def _fake_study(seed: int, t_color: dict, lead: dict) -> tuple[dict, dict]:
    """Tables and metrics shaped like those of the study analysis of one seed."""
    lt, em, runs = [], [], {}
    for run, sep in (("c015", 0.15), ("c080", 0.8)):
        for group, t in (("held_out", t_color[run]), ("train", 1200.0)):
            for concept in ("color", "size"):
                lt.append(
                    dict(
                        run=run,
                        seed=seed,
                        group=group,
                        concept=concept,
                        threshold=0.8,
                        learning_time=BUDGET if t is None else t,
                        censored=t is None,
                        budget=BUDGET,
                    )
                )
        for method, cp in (("naive", 0.0), ("linear", lead[run]), ("overprompt", lead[run] - 1)):
            em.append(
                dict(
                    run=run,
                    seed=seed,
                    method=method,
                    threshold=0.8,
                    censored=False,
                    lead_steps=500.0 * cp,
                    lead_checkpoints=cp,
                    lead_is_lower_bound=run == "c015",
                )
            )
        runs[run] = {
            "separations": {"color": sep, "size": 0.32},
            "signal": {"color": sep**2 / 12, "size": 0.03},
            "trajectory": {
                "nearest_class": "red_small" if run == "c015" else "blue_large",
                "turned": run == "c080",
                "heading_step": 6000.0,
            },
        }
    evidence = {"c015": {"expected": "red_small"}, "c080": {"expected": "blue_large"}}
    metrics = {"runs": runs, "phenomena_detail": {"memorization": {"evidence": evidence}}}
    return {"learning_times": pd.DataFrame(lt), "emergence": pd.DataFrame(em)}, metrics


def test_points_from_study_reads_the_per_seed_tables():
    per_seed = {
        0: _fake_study(0, {"c015": None, "c080": 4000.0}, {"c015": 6.0, "c080": 1.0}),
        1: _fake_study(1, {"c015": None, "c080": 3000.0}, {"c015": 3.0, "c080": 0.0}),
    }
    p = X.points_from_study(per_seed)
    assert set(X.REQUIRED) <= set(p.columns)
    assert len(p) == 4 and p["held_out_censored"].tolist() == [True, False, True, False]
    assert p["lead_checkpoints"].tolist() == [6.0, 1.0, 3.0, 0.0]  # the best method
    assert p["memorized"].tolist() == [True, True, True, True]
    assert p["lead_is_lower_bound"].tolist() == [True, False, True, False]
    m = X.summarize(p)[1]
    assert m["phenomena"]["memorization"]["holds_in"] == 2
    assert m["phenomena"]["hidden_capability"]["holds_in"] == 2
    assert m["phenomena"]["signal_order"]["seeds_failing"] == [0, 1]  # two points only


def test_figure_renders(tmp_path):
    rng = np.random.default_rng(5)
    p = points(
        {
            s: [None, 6000 * rng.uniform(0.7, 1.3), 3000, 1000 * rng.uniform(0.7, 1.3)]
            for s in range(3)
        },
        t_train=1500.0,
        train_censored=False,
        lead_steps={s: [2000.0, np.nan, 500.0, -400.0] for s in range(3)},
        lead_checkpoints={s: [4.0, np.nan, 1.0, -1.0] for s in range(3)},
        lead_is_lower_bound={s: [True, False, False, False] for s in range(3)},
    )
    frames, m = X.summarize(p)
    out = tmp_path / "across_seeds.png"
    across_seeds_figure(frames["points"], frames["by_separation"], out, metrics=m)
    assert out.exists() and out.with_suffix(".pdf").exists()
    w, h = Image.open(out).size
    assert w > 1200 and 0.3 < h / w < 0.7
    one = tmp_path / "no_leads.png"
    across_seeds_figure(frames["points"].drop(columns="lead_steps"), frames["by_separation"], one)
    w1, _ = Image.open(one).size
    assert w1 < w  # one panel without leads
    assert math.isfinite(m["phenomena"]["signal_order"]["pooled"]["d"])


def test_no_bootstrap_interval_from_two_seeds():
    """Resampling two seeds yields only their two values and their mean: no interval is given
    below three seeds, for medians and for the slope of 1/T alike."""
    from conceptspace.analysis.censored import bootstrap_median

    two = bootstrap_median([1000.0, 3000.0], [False, False])
    assert two["median"] == 2000.0 and math.isnan(two["ci_low"]) and math.isnan(two["ci_high"])
    three = bootstrap_median([1000.0, 2000.0, 3000.0], [False, False, False])
    assert three["ci_low"] <= 2000.0 <= three["ci_high"]


def test_per_seed_signal_order_is_the_studys_rule():
    """One signal-order rule: each seed's verdict is fits.is_monotone_decreasing on its points
    (strictly falling, censored = later than the budget, two censored neighbours tied, at least
    3 points of which 2 measured; repeated separations: no verdict)."""
    cases = {
        0: [None, 6000, 3000, 1000],  # holds
        1: [None, None, 3000, 1000],  # two censored neighbours: a tie, holds
        2: [5000, 6000, 3000, 1000],  # rises once: violated
        3: [None, None, None, 1000],  # one measured: insufficient
    }
    by_seed = X.seed_verdicts(points(cases)).set_index("seed")
    for seed, ts in cases.items():
        cens = np.array([t is None for t in ts])
        t = np.array([BUDGET if v is None else v for v in ts], float)
        rule = FT.is_monotone_decreasing(np.array(SEPS), t, cens)
        assert by_seed.loc[seed, "signal_order"] == rule["monotone"]
        assert by_seed.loc[seed, "signal_order_reason"] == rule["reason"]
    assert by_seed["signal_order"].tolist() == [True, True, False, False]
    shared = points({0: [None, 6000, 3000]}, seps=(0.15, 0.4, 0.4))
    shared.loc[2, "run"] = "c040b"  # two runs at one separation
    shared = X.seed_verdicts(shared)
    assert shared["signal_order"].tolist() == [None]
    assert shared["signal_order_reason"].tolist() == [FT.REPEATED]


def test_ols_is_scipys_linregress_with_the_hand_written_numbers():
    """The 1/T fit's least squares is scipy.stats.linregress; it gives the numbers of the
    closed-form formulas it replaced (slope, intercept, r², standard error of the slope)."""
    rng = np.random.default_rng(3)
    x = np.linspace(0.01, 0.05, 7)
    y = 0.02 * x + 1e-4 + rng.normal(0, 1e-4, x.size)
    slope, intercept, r2, se = FT.ols(x, y)
    b, a = np.polyfit(x, y, 1)
    resid = y - (b * x + a)
    sxx = ((x - x.mean()) ** 2).sum()
    assert slope == pytest.approx(b, rel=1e-10) and intercept == pytest.approx(a, rel=1e-8)
    assert r2 == pytest.approx(1 - (resid @ resid) / ((y - y.mean()) ** 2).sum(), rel=1e-10)
    assert se == pytest.approx(math.sqrt((resid @ resid) / (x.size - 2) / sxx), rel=1e-10)
    two = FT.ols(x[:2], y[:2])
    assert math.isnan(two[3]) and math.isnan(FT.ols(x, np.ones_like(x))[2])
