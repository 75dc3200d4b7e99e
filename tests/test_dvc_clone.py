"""A fresh clone does not retrain what is committed (docs/reproducibility-dvc.md): on the tiny
params, a repository whose pipeline ran, was pushed to a local-directory DVC remote and
committed is cloned without DVC's cache; ``dvc repro --allow-missing`` then reports every stage
up to date (the analyze stage included: it depends on its upstream jobs' files, not on their
folders, which in a clone hold only the git-tracked files), an edit reruns only the stages it
touches, and ``dvc pull`` brings back the committed bytes."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_project

pytestmark = pytest.mark.workflow

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    "DVC_NO_ANALYTICS": "1",
}


def _sh(cwd: Path, *cmd: str, check: bool = True) -> str:
    out = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    if check and out.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed in {cwd}:\n{out.stdout}\n{out.stderr}")
    return out.stdout + out.stderr


def _ran(log: str) -> list[str]:
    """The stages a `dvc repro` ran (or, with --dry, would run)."""
    return re.findall(r"Running stage '([^']+)'", log)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / "results").rglob("*"))
        if p.is_file() and p.suffix in (".pt", ".npz", ".csv", ".json")
    }


@pytest.fixture(scope="module")
def origin(tmp_path_factory, tiny_doc) -> tuple[Path, Path]:
    """The tiny study run under DVC, pushed to a local-directory remote and committed (the
    remote is in .dvc/config, as a shared one would be). Returns (repository, remote)."""
    base = tmp_path_factory.mktemp("origin")
    root = copy_project(base / "repo", tiny_doc)
    remote = base / "remote"
    _sh(root, "dvc", "repro")
    _sh(root, "dvc", "remote", "add", "-d", "local", str(remote))
    _sh(root, "dvc", "push")
    _sh(root, "git", "add", "-A")
    _sh(root, "git", "commit", "-qm", "results")
    return root, remote


def _clone(origin: Path, dest: Path) -> Path:
    _sh(dest.parent, "git", "clone", "-q", str(origin), str(dest))
    assert not (dest / ".dvc" / "cache").exists()
    return dest


def test_a_fresh_clone_reports_the_committed_study_up_to_date(origin, tmp_path):
    clone = _clone(origin[0], tmp_path / "clone")
    assert _ran(_sh(clone, "dvc", "repro", "--allow-missing", "--dry")) == []
    log = _sh(clone, "dvc", "repro", "--allow-missing")
    assert _ran(log) == [] and "Traceback" not in log
    assert _sh(clone, "git", "status", "--porcelain") == ""


def test_an_edit_reruns_only_what_it_touches(origin, tmp_path):
    clone = _clone(origin[0], tmp_path / "clone")
    doc = yaml.safe_load((clone / "params.yaml").read_text())
    doc["analyze"]["sigma"] = doc["analyze"]["sigma"] + 0.5
    (clone / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    # DVC needs a stage's inputs to run it (even with --dry): without the remote the stage that
    # the edit touches is named, and nothing else is planned before it
    log = _sh(clone, "dvc", "repro", "--allow-missing", "--dry", check=False)
    assert _ran(log) == [] and "failed to reproduce 'analyze'" in log
    # with the remote, it pulls the cached inputs of that stage and runs it alone
    log = _sh(clone, "dvc", "repro", "--allow-missing", "--pull")
    assert _ran(log) == ["analyze"], log


def test_dvc_pull_restores_the_committed_bytes(origin, tmp_path):
    root, _ = origin
    clone = _clone(root, tmp_path / "clone")
    _sh(clone, "dvc", "pull")
    assert _digests(clone) == _digests(root)
    assert _ran(_sh(clone, "dvc", "repro", "--dry")) == []
    assert "up to date" in _sh(clone, "dvc", "status")
