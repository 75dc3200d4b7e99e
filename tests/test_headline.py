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
    assert _leaves(h) < 40 * max(1, len(h["runs"]))  # a few dozen numbers per run, not hundreds
    seeds = details["across_seeds"]
    a = h["across_seeds"]
    for name, p in seeds["phenomena"].items():
        assert a[f"{name}_holds_in"] == f"{p['holds_in']} of {p['n']}"
        assert a["seeds_holding"][name] == p["seeds_holding"]
    assert set(a["held_out_median"]) == {f"{s:g}" for s in seeds["separations"]}
    assert a["inverse_time_slope"] == seeds["fit_inverse_time"]["slope"]
