"""One tool at a time in a workspace (docs/pipeline.md, "Snakemake and DVC in one workspace"):
Snakemake and DVC write the same results folders, so a run of one refuses to start while the
other runs.

* DVC holds ``.dvc/tmp/lock`` (an OS lock, ``zc.lockfile``) for as long as ``dvc repro`` runs:
  :func:`dvc_running` tries that lock without waiting and lets go at once.
* Snakemake keeps ``.snakemake/locks/*.lock`` while it runs jobs (a crashed run leaves them:
  ``snakemake --unlock`` removes them): :func:`snakemake_running`.

The workflow refuses when DVC runs (workflow/rules/common.smk); a stage refuses when DVC runs
it while Snakemake runs (stages/common.py: the DVC lock is held, by the ``dvc`` that started
the stage, and Snakemake's locks are there).
"""

from __future__ import annotations

import fcntl
from pathlib import Path

DVC_LOCK = Path(".dvc") / "tmp" / "lock"
SNAKEMAKE_LOCKS = Path(".snakemake") / "locks"


def dvc_running(root: str | Path = ".") -> bool:
    """Whether a DVC command holds the workspace's lock now (reads only; takes no lock when
    the file is absent)."""
    path = Path(root) / DVC_LOCK
    try:
        f = open(path, "rb")
    except OSError:
        return False
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def snakemake_running(root: str | Path = ".") -> bool:
    """Whether Snakemake holds its locks on the workspace (its lock files are there)."""
    locks = Path(root) / SNAKEMAKE_LOCKS
    return locks.is_dir() and any(locks.glob("*.lock"))


SNAKEMAKE_BUSY = (
    "Snakemake is running in this workspace (it holds .snakemake/locks): the two tools write "
    "the same results, so dvc does not run beside it. Wait for snakemake to finish; if none "
    "runs, a crashed one left its lock: `snakemake --unlock`"
)
DVC_BUSY = (
    "DVC is running in this workspace (it holds .dvc/tmp/lock): the two tools write the same "
    "results, so snakemake does not run beside it. Wait for dvc to finish and run again"
)


def other_tool_message(root: str | Path = ".") -> str | None:
    """For a stage: why it must not run now (DVC started it while Snakemake runs), or None."""
    if dvc_running(root) and snakemake_running(root):
        return SNAKEMAKE_BUSY
    return None
