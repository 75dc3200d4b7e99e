"""Wall time of a study from a fresh clone: ``snakemake -j N --forceall``, repeated, median.

    python benchmarks/bench_study.py [--reps 3] [--jobs 2] [--study default] [--keep]

Each repetition clones this repository (its committed state, ``git clone``) into a temporary
folder and times the whole study there: every job of the study reruns (``--forceall``: the
clone has the committed tables but not the DVC-cached checkpoints), as in CI. The clone uses
this environment's Python and packages; its own code is what runs (the stages are started as
``python -m stages.<name>`` in the clone, whose folder comes first on the import path). The
script then checks that every committed file of ``results/<study>/`` came out byte for byte as
committed (``git status`` in the clone) and prints the per-repetition times and their median.

Run it on an otherwise idle machine: the figure is meant to be the time a newcomer waits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_run(study: str, jobs: int, keep: bool) -> tuple[float, bool]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-study-"))
    clone = tmp / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = dict(os.environ, PYTHONPATH=str(clone), MPLBACKEND="Agg")
    bindir = Path(sys.executable).parent
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    cmd = ["snakemake", "-j", str(jobs), "--forceall", "-q"]
    if study != "default":
        cmd += ["--config", f"study={study}"]
    t0 = time.perf_counter()
    with open(tmp / "snakemake.log", "w") as log:
        subprocess.run(cmd, cwd=clone, env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", f"results/{study}"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    same = not changed
    if keep:
        print(f"  kept {clone}")
    else:
        shutil.rmtree(tmp)
    return wall, same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--study", default="default")
    ap.add_argument("--keep", action="store_true", help="keep each clone (for inspection)")
    a = ap.parse_args()
    print(f"study {a.study!r}, snakemake -j {a.jobs} --forceall in a fresh clone, {a.reps} reps")
    walls = []
    for i in range(a.reps):
        wall, same = one_run(a.study, a.jobs, a.keep)
        walls.append(wall)
        verdict = "identical to" if same else "DIFFERENT from"
        print(f"  rep {i + 1}: {wall / 60:.1f} min; results {verdict} the committed ones")
    m = statistics.median(walls)
    print(f"median {m / 60:.1f} min ({int(m // 60)} min {m % 60:.0f} s) over {len(walls)} reps")


if __name__ == "__main__":
    main()
