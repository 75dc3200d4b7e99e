"""What DVC shows by itself on the committed default study stays readable (docs/pipeline.md,
"What each tool shows by itself"): `dvc metrics show` is one row of its verdicts that fits a
terminal, with no error line and no row for a study never run, and `dvc plots show` draws
the declared plots on a page that needs no network (docs/dvc/)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

pytestmark = pytest.mark.workflow


def _dvc(root, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(["dvc", *args], cwd=root, capture_output=True, text=True, env=env)


def test_metrics_show_is_one_row_that_fits_a_terminal(root):
    out = _dvc(root, "metrics", "show")
    assert out.returncode == 0, out.stderr
    said = (out.stdout + out.stderr).splitlines()
    assert not [line for line in said if "ERROR" in line or "WARNING" in line], said
    rows = [line for line in out.stdout.splitlines() if line.strip()]
    assert rows[0].split()[0] == "Path"
    assert [r.split()[0] for r in rows[1:]] == ["results/default/analyze/headline.json"]
    assert max(len(r) for r in rows) <= 120, rows


def test_plots_show_draws_the_declared_plots_offline(root, tmp_path):
    out = _dvc(root, "plots", "show", "-o", str(tmp_path / "plots"))
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "plots" / "index.html").read_text()
    titles = [next(iter(p)) for p in yaml.safe_load((root / "dvc.yaml").read_text())["plots"]]
    for title in titles:
        assert title in html, title
    # vega, vega-lite and vega-embed are inlined (docs/dvc/plots.html): nothing is fetched
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"?https?:", html)
