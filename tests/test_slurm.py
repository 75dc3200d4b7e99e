"""The SLURM profile against a real scheduler: the tiny study runs through
`snakemake --workflow-profile workflow/profiles/slurm` on a one-node cluster without
accounting (tests/slurm_cluster.py), every job goes through sbatch, its artifacts are
byte-identical to a local `snakemake -j 2` run, and a job that fails on the cluster makes
snakemake exit non-zero and shows the stage's own `error:` line (workflow/rules/errors.smk).

Skipped, with the reason, where the daemons cannot be installed or started; with
CONCEPTSPACE_REQUIRE_SLURM=1 (set by .ci/run) that is a failure instead."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conceptspace import pipeline, staleness
from tests.conftest import ROOT, copy_project
from tests.slurm_cluster import Cluster, ClusterUnavailable, ensure_installed

pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.slow]

PROFILE = "workflow/profiles/slurm"
# Artifacts whose bytes must not depend on where a job ran (as in tests/test_workflow.py).
DETERMINISTIC = ("*.npz", "*.json", "*.csv", "*.parquet", "*.pt")
# The profile keeps the plugin's 40 s before the first status query, kind to a busy
# slurmctld; the tiny study's jobs take seconds, so the test polls sooner. Nothing else is
# added to the profile's settings.
FAST_POLL = ("--slurm-init-seconds-before-status-checks", "1")
RUN_TIMEOUT = 480  # a status command that never sees jobs finish hangs: fail instead


def _unavailable(reason: str):
    if os.environ.get("CONCEPTSPACE_REQUIRE_SLURM") == "1":
        pytest.fail(f"SLURM test cluster required (CONCEPTSPACE_REQUIRE_SLURM=1): {reason}")
    pytest.skip(f"no SLURM test cluster: {reason}")


def _profile_max_mem_mb() -> int:
    profile = yaml.safe_load((ROOT / PROFILE / "profile.yaml").read_text())
    sections = [profile.get("default-resources") or {}]
    sections += list((profile.get("set-resources") or {}).values())
    return max(int(s.get("mem_mb", 0)) for s in sections)


@pytest.fixture(scope="module")
def cluster(request) -> Cluster:
    try:
        ensure_installed()
    except ClusterUnavailable as e:
        _unavailable(str(e))
    c = Cluster()
    request.addfinalizer(c.stop)  # also when start() fails half way or a test fails
    try:
        c.start()
    except ClusterUnavailable as e:
        _unavailable(f"the daemons did not start: {e}")
    need = _profile_max_mem_mb()
    if c.real_memory_mb < need:
        _unavailable(f"this node has {c.real_memory_mb} MB; the profile asks up to {need} MB")
    return c


def _env(cluster: Cluster | None, root: Path) -> dict[str, str]:
    env = {**(cluster.env if cluster else os.environ), "DVC_NO_ANALYTICS": "1"}
    # import the copy's own library in Snakemake and in the jobs, not an editable install's
    env["PYTHONPATH"] = str(root)
    return env


def _snakemake(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["snakemake", *args],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")[-3000:]
        pytest.fail(f"snakemake {' '.join(args)} ran over {RUN_TIMEOUT} s:\n{out!r}")


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for pattern in DETERMINISTIC:
        for p in sorted((root / "results").rglob(pattern)):
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _job_stats(log: str) -> dict[str, int]:
    """The `Job stats:` table Snakemake prints before it starts: rule -> number of jobs."""
    stats, lines = {}, iter(log.splitlines())
    for line in lines:
        if line.strip() == "Job stats:":
            break
    for line in lines:
        fields = line.split()
        if not fields or fields[0] == "total":
            break
        if len(fields) == 2 and fields[1].isdigit():
            stats[fields[0]] = int(fields[1])
    return stats


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory, tiny_doc):
    """The tiny study in two copies of the project: locally (`snakemake -j 2`, started first
    and run alongside) and on the cluster through the profile."""
    local = copy_project(tmp_path_factory.mktemp("local"), tiny_doc)
    remote = copy_project(tmp_path_factory.mktemp("slurm"), tiny_doc)
    local_proc = subprocess.Popen(
        ["snakemake", "-j", "2"],
        cwd=local,
        env=_env(None, local),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        slurm = _snakemake(remote, _env(cluster, remote), "--workflow-profile", PROFILE, *FAST_POLL)
        local_out, _ = local_proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if local_proc.poll() is None:
            local_proc.kill()
            local_proc.wait()
    assert local_proc.returncode == 0, local_out[-3000:]
    log = slurm.stdout + slurm.stderr
    assert slurm.returncode == 0, f"{log[-5000:]}\n{cluster.report()}"
    return local, remote, log


def test_every_job_goes_through_sbatch(runs):
    *_, log = runs
    submitted = Counter(re.findall(r"submitted with SLURM jobid \d+ \(log: \S*/rule_(\w+)/", log))
    local_rules = set(re.findall(r"^localrule (\w+):", log, re.M))
    expected = {r: n for r, n in _job_stats(log).items() if r not in local_rules}
    assert expected and "train" in expected
    assert dict(submitted) == expected


def test_slurm_artifacts_are_byte_identical_to_a_local_run(runs):
    local, remote, _ = runs
    a, b = _digests(local), _digests(remote)
    assert a and a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    assert any(k.endswith(".pt") for k in a) and any(k.endswith(".csv") for k in a)
    differ = [k for k in a if a[k] != b[k]]
    assert not differ, differ


def test_failed_cluster_job_shows_the_stage_error(runs, cluster):
    """A corrupt checkpoint: the probe job fails on the cluster, snakemake exits non-zero, and
    the probe stage's own `error:` line, naming the file, reaches the user. Runs last: it
    damages the cluster copy's results."""
    _, remote, _ = runs
    ckpt = sorted((remote / "results").rglob("step_*.pt"))[-1]
    ckpt.write_bytes(b"not a checkpoint\n")
    # as if its job wrote it so: a record that disagrees would retrain it instead
    # (conceptspace/staleness.py)
    record = ckpt.parent.parent / pipeline.RECORD
    entry = json.loads(record.read_text())
    entry[staleness.FILES] = staleness.written_files(record.parent)
    record.write_text(json.dumps(entry))
    r = _snakemake(
        remote,
        _env(cluster, remote),
        "--workflow-profile",
        PROFILE,
        *FAST_POLL,
        "--forcerun",
        "probe",
        "--until",
        "probe",
    )
    log = r.stdout + r.stderr
    assert r.returncode != 0, log[-3000:]
    assert "SLURM-job" in log, log[-3000:]  # the failure was reported by the slurm executor
    said = [ln for ln in log.splitlines() if re.match(r"\s+probe \(.*\): error: ", ln)]
    assert said, log[-3000:]
    assert any(ckpt.name in ln for ln in said), said
