"""The headline (metrics.json) of the committed default study, taken from its full detail."""

from __future__ import annotations

import json
from pathlib import Path

from conceptspace.analysis.headline import headline

ANALYZE = Path(__file__).resolve().parent.parent / "results" / "default" / "analyze"


def _leaves(x) -> int:
    if isinstance(x, dict):
        return sum(_leaves(v) for v in x.values())
    if isinstance(x, list):
        return sum(_leaves(v) for v in x)
    return 1


def test_committed_headline_is_the_headline_of_the_committed_detail():
    details = json.loads((ANALYZE / "details.json").read_text())
    assert json.loads((ANALYZE / "metrics.json").read_text()) == json.loads(
        json.dumps(headline(details))
    )


def test_headline_is_short_and_carries_the_seed_verdicts():
    details = json.loads((ANALYZE / "details.json").read_text())
    h = headline(details)
    # a few dozen numbers per run, not hundreds (each run's best lead carries three per seed)
    assert _leaves(h) < 50 * max(1, len(h["runs"]))
    seeds = details["across_seeds"]
    a = h["across_seeds"]
    for name, p in seeds["phenomena"].items():
        assert a[f"{name}_holds_in"] == f"{p['holds_in']} of {p['n']}"
        assert a["seeds_holding"][name] == p["seeds_holding"]
    assert set(a["held_out_median"]) == {f"{s:g}" for s in seeds["separations"]}
    assert a["inverse_time_slope"] == seeds["fit_inverse_time"]["slope"]
    by_class = seeds["leads_by_imitated_class"]
    assert set(a["leads_by_imitated_class"]) == set(by_class)
    for cls, counts in a["leads_by_imitated_class"].items():
        assert counts == {k: by_class[cls][k] for k in ("runs", "inside", "lower_bound", "none")}
        assert sum(counts[k] for k in ("inside", "lower_bound", "none")) == counts["runs"]


def test_best_lead_is_the_per_seed_summary_with_its_censoring():
    """A run whose leads exist only per seed (one seed a lower bound at the budget's end, one
    seed none) still has a best lead in the headline, flagged and counted, never null."""
    lead = {
        "step": 1200.0,
        "censored": False,
        "lead_steps": 900.0,
        "lead_is_lower_bound": True,
        "lead_high": 2100.0,
        "lead_high_is_lower_bound": True,
        "n_seeds": 2,
        "n_reached": 1,
        "n_leads": 1,
        "per_seed": {
            "0": {"lead": 900.0, "lead_is_lower_bound": True, "lead_high": 2100.0},
            "1": None,
        },
    }
    naive = {**lead, "lead_steps": 0.0, "lead_is_lower_bound": False, "per_seed": {}}
    details = {
        "phenomena": {"hidden_capability": True},
        "runs": {
            "c020": {
                "learning_time_held_out": {"color@0.8": {"mean": 3000.0, "censored_seeds": 1}},
                "trajectory": {"nearest_class": "red_small", "turned": False},
                "emergence": {"linear@0.8": lead, "naive@0.8": naive},
            }
        },
    }
    r = headline(details)["runs"]["c020"]
    assert r["best_lead_steps"] == 900.0 and r["best_lead_method"] == "linear@0.8"
    assert r["best_lead_is_lower_bound"] and r["best_lead_interval"] == [900.0, 2100.0]
    assert r["best_lead_seeds"] == "1 of 2" and r["best_lead_per_seed"]["1"] is None
    assert r["censored"] == ["color@0.8"]
