"""Shared fixtures: the repository root, the committed params, and tiny params documents."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conceptspace import numerics

numerics.pin()  # before any test imports torch or numpy (docs/method.md §11)

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: small tensors run fastest on one, a busy 2-core box
    then never oversubscribes (with two, every step waits on the slower thread), and training
    is bit-reproducible only for a fixed thread count (its subprocesses use 1 too). Modules
    take it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def params_doc() -> dict:
    """The committed params.yaml as a fresh dict (tests mutate copies of it)."""
    return copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))


@pytest.fixture(scope="session")
def tiny_doc() -> dict:
    """tests/params.tiny.yaml: the same keys as params.yaml with values that run in seconds."""
    return yaml.safe_load((ROOT / "tests" / "params.tiny.yaml").read_text())


# A third run between the tiny study's two, so that train.ensemble: 2 cuts its training jobs
# into a full group and a smaller last one.
THIRD_RUN = {"c050": {"color": 0.5, "size": 0.4}}


@pytest.fixture(scope="session")
def grouped_doc(tiny_doc) -> dict:
    """The tiny study with three runs trained in groups of two: train_g0 = c020 and c050,
    train_g1 = c080 (conceptspace/pipeline.py, "Training groups")."""
    doc = copy.deepcopy(tiny_doc)
    runs = {**doc["runs"], **THIRD_RUN}
    doc["runs"] = {r: runs[r] for r in sorted(runs)}
    doc["train"]["ensemble"] = 2
    return doc


def copy_project(dest: Path, params: dict | None = None) -> Path:
    """Copy the tracked project files into ``dest`` (a git repo with one commit), optionally
    replacing params.yaml, for tests that run snakemake or dvc end to end."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for f in files:
        src = ROOT / f
        if not src.is_file() or f.startswith("results/") or f == "dvc.lock":
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f)
    if params is not None:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        # dvc.yaml lists the study's jobs in its per-study stages: regenerate it for these
        # params (invalid ones leave it as it is: both tools then refuse them by name)
        subprocess.run(
            [sys.executable, "-m", "stages.study", "params.yaml"], cwd=dest, capture_output=True
        )
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dest, check=True, env=env, capture_output=True)
    return dest
