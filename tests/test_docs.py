"""The front door and the documentation site: the README stays short and keeps CI's test
command; the site builds offline and strict, with its results pages and parameter reference
generated from the committed files (docs/development.md, "This site"); the rules' software
environment pins what requirements.txt pins; the smoke preset is the tests' tiny study."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess

import pytest
import yaml

from conceptspace import studies
from tests.conftest import ROOT

TEST_COMMAND = "python -m pytest -q -n 2 --dist loadfile"
SETUP = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt"
    " && pip install --no-deps -e ."
)


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short_and_keeps_the_setup_and_test_command():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert f"{SETUP} && {TEST_COMMAND}\n" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"\n{TEST_COMMAND}\n" in ci, "CI runs the README's test command"


def test_readme_links_only_files_that_exist():
    text = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" not in link:
            assert (ROOT / link).exists(), link


def test_parameter_reference_has_every_key_of_the_default_study():
    reference = _hooks().parameter_reference()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())

    def keys(doc, path=""):
        for key, value in doc.items():
            sub = f"{path}.{key}" if path else key
            if path == "runs":
                sub = "runs.<id>"
            yield sub
            if isinstance(value, dict) and path != "runs":
                yield from keys(value, sub)
            elif path == "runs":
                yield from (f"runs.<id>.{k}" for k in value)

    for key in set(keys(params)):
        assert f"| `{key}` |" in reference, key


def test_params_comments_follow_the_indentation():
    text = "a:  # top\n  b: 1  # inner\n  c:\n    d: 2 # deep\ne: 3\n"
    assert _hooks().params_comments(text) == {"a": "top", "a.b": "inner", "a.c.d": "deep"}


def test_results_page_is_each_committed_studys_summary():
    hooks = _hooks()
    committed = hooks.committed_studies()
    assert "default" in committed
    page = hooks.results_page()
    for study in committed:
        summary = (ROOT / "results" / study / "analyze" / "summary.md").read_text()
        table = next(line for line in summary.splitlines() if line.startswith("| "))
        assert table in page, study
        for fig in hooks._figures(study):
            assert f"(results/{study}/{fig.name})" in page


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_site_builds_offline_and_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run(
        ["mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    results = (tmp_path / "site" / "results.html").read_text()
    assert "results/default/trajectories.png" in results
    assert (tmp_path / "site" / "results" / "default" / "trajectories.png").is_file()
    assert "fonts.googleapis" not in (tmp_path / "site" / "index.html").read_text()


def test_rule_environment_pins_what_requirements_pin():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[name] = version
    env = yaml.safe_load((ROOT / "workflow" / "envs" / "conceptspace.yaml").read_text())
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip
    for spec in pip:
        name, version = spec.split("==")
        assert pins.get(name) == version, spec


def test_smoke_preset_is_the_tiny_study():
    tiny = yaml.safe_load((ROOT / "tests" / "params.tiny.yaml").read_text())
    smoke = studies.resolve("smoke", ROOT).document()
    for section in ("runs", "seeds", "synthesize", "train", "probe", "intervene"):
        if isinstance(tiny[section], dict):
            for key, value in tiny[section].items():
                if key not in ("threads", "methods", "blur_px", "noise"):
                    got = smoke[section].get(key)
                    if isinstance(value, dict):
                        assert {k: got[k] for k in value} == value, f"{section}.{key}"
                    else:
                        assert got == value, f"{section}.{key}"
        else:
            assert smoke[section] == tiny[section], section


def test_readme_verdict_table_is_the_committed_one():
    """The README's per-seed verdicts are the default study's summary table, never a hand
    copy (refresh with ``python docs/hooks.py`` after regenerating the study)."""
    hooks = _hooks()
    text = (ROOT / "README.md").read_text()
    start, end = hooks.README_BLOCK
    block = text.split(start, 1)[1].split(end, 1)[0].strip()
    assert block == hooks.readme_verdicts().strip()
