"""Snakemake and DVC describe the same DAG: the same output files, the same file-level edges
and the same command strings (ecosystem.md §10.7), for the default study and for a tiny study
trained in groups (train.ensemble: 2, one train job per group in both tools)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from conceptspace import pipeline
from tests.conftest import copy_project

pytestmark = pytest.mark.workflow

DEFAULT = '"results/default/'
REDIRECT = re.compile(r"\s*>\s*logs/\S+\s+2>&1\s*$")


def _run(root, *cmd: str) -> str:
    return subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout


def snakemake_jobs(root) -> list[dict]:
    """Jobs of a forced dry run: outputs, inputs and the shell command (log redirect removed)."""
    out = _run(root, "snakemake", "-n", "-p", "-F", "--cores", "1")
    jobs, cur = [], None
    for line in out.splitlines():
        s = line.strip()
        if re.match(r"^(local)?rule \w+:$", s):
            cur = {"rule": s.split()[-1][:-1], "input": [], "output": [], "cmd": None}
            jobs.append(cur)
        elif cur is not None and s.startswith("input:"):
            cur["input"] = [x.strip() for x in s[len("input:") :].split(",")]
        elif cur is not None and s.startswith("output:"):
            cur["output"] = [x.strip() for x in s[len("output:") :].split(",")]
        elif cur is not None and s.startswith("Shell command:"):
            cur["cmd"] = REDIRECT.sub("", s[len("Shell command:") :].strip())
    return [j for j in jobs if j["output"]]


def grouped_root(dest, grouped_doc):
    """A copy of the project whose params.yaml is the tiny grouped study, with its dvc.yaml
    regenerated (its train stages are the groups)."""
    root = copy_project(dest, grouped_doc)
    _run(root, "python", "-m", "stages.study", "params.yaml")
    assert "train_g1" in yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    return root


@pytest.fixture(scope="module", params=["default", "grouped"])
def dags(request, root, tmp_path_factory, grouped_doc):
    if request.param == "grouped":
        root = grouped_root(tmp_path_factory.mktemp("grouped"), grouped_doc)
    jobs = snakemake_jobs(root)
    dot = _run(root, "dvc", "dag", "--outs", "--dot")
    # the default study's pipeline (the preset studies' pipelines live in results/<preset>/)
    dot = "\n".join(line for line in dot.splitlines() if "results/" not in line or DEFAULT in line)
    dry = _run(root, "dvc", "repro", "--dry", "-f")
    return jobs, dot, dry, root


def test_same_outputs(dags):
    jobs, dot, _, _ = dags
    sm = {o for j in jobs for o in j["output"]}
    dvc = set(re.findall(r'^"([^"]+)";$', dot, re.M))
    assert sm == dvc


def test_same_edges(dags):
    jobs, dot, _, _ = dags
    produced = {o for j in jobs for o in j["output"]}
    sm = {(i, o) for j in jobs for o in j["output"] for i in j["input"] if i in produced}
    dvc = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))
    assert sm == dvc


def test_same_commands(dags):
    jobs, _, dry, _ = dags
    norm = " ".join
    sm = {norm(j["cmd"].split()) for j in jobs}
    dvc = {norm(line[2:].split()) for line in dry.splitlines() if line.startswith("> ")}
    assert sm == dvc


def test_same_stage_names(dags):
    """One name per stage: rule = DVC stage = stages/<name>.py = params section (if any); a
    training group's rule and DVC stage are both its name (train_g0, ...)."""
    jobs, _, _, root = dags
    doc = yaml.safe_load((root / "params.yaml").read_text())
    groups = {g.name for g in pipeline.train_groups(doc)} if pipeline.grouped(doc) else set()
    rules = {j["rule"] for j in jobs}
    dvc_stages = set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    assert rules == dvc_stages
    assert groups <= rules and ("train" in rules) != bool(groups)
    for name in rules - groups:
        assert (root / "stages" / f"{name}.py").exists()
