# The study, its params and each job's provenance (README "Studies").
#   snakemake -j 2                                # the default study: params.yaml
#   snakemake -j 2 --config study=guidance        # a preset: configs/guidance.yaml over it
#   snakemake -j 2 --config study=path/mine.yaml  # a user's own overlay
# Artifacts go to results/<study>/. The stages read the study's params file themselves, so
# --config takes `study` only; params are checked (schema + typed model) before any job runs.
import os
import sys
import time
from pathlib import Path

# The project's own code, not an installed copy: provenance digests the files that will run.
PROJECT = Path(workflow.basedir).parent
sys.path.insert(0, str(PROJECT))
from conceptspace import pipeline, studies
from conceptspace.params import ParamsError

try:
    unknown = sorted(set(config) - {"study"})
    if unknown:
        raise ParamsError(
            f"--config {', '.join(unknown)}: only `study` is a workflow option; edit params.yaml "
            "or lay an overlay over it (--config study=FILE)"
        )
    STUDY = studies.from_config(config)
    studies.materialize(STUDY)
    DOC = STUDY.document()
except ParamsError as e:
    sys.exit(f"error: {e}")

S = STUDY.dir  # results/<study>
PARAMS_FILE = STUDY.params_file
RUNS = list(DOC["runs"])
SEEDS = list(DOC["seeds"])
STAMPS = Path(".snakemake") / "conceptspace-stamps" / STUDY.name


wildcard_constraints:
    run="|".join(RUNS),
    seed=r"\d+",


def per_run(pattern):
    """Expand a pattern with {run} and {seed} over the whole sweep."""
    return expand(pattern, run=RUNS, seed=SEEDS)


def final_outputs():
    return [f"{S}/analyze/metrics.json"]


def cmd(stage):
    """The stage's shell command, the same string as in the study's dvc.yaml."""
    return pipeline.command(stage, S, PARAMS_FILE, "{wildcards.run}", "{wildcards.seed}")


def provenance(stage):
    """The job's provenance record, an output written by the stage."""
    if pipeline.STAGES[stage].per_run:
        return f"{S}/{stage}/{{run}}/seed{{seed}}/{pipeline.RECORD}"
    return f"{S}/{stage}/{pipeline.RECORD}"


def stamp(stage):
    """An input that reruns the job exactly when its recorded key (params, code and upstream
    keys, see conceptspace/pipeline.py) differs from the current one, with or without
    Snakemake's metadata: when they agree it is ancient (never newer than anything); when they
    differ it is rewritten now, holding the current key, so it is newer than the outputs (what
    counts in a fresh clone) and its content differs from the one Snakemake recorded when the
    job last ran (what counts in a used workspace: Snakemake ignores a newer input whose
    checksum it has on record, so an empty stamp would never rerun a job there)."""

    def f(wildcards):
        run = wildcards.get("run")
        seed = int(wildcards.seed) if run is not None else None
        job = pipeline.job_dir(S, stage, run, seed)
        return _stamp(job, job in CURRENT, KEYS[job])

    return f


def group_stamp(group):
    """The stamp input of a training group's job (train.ensemble > 1), as :func:`stamp`: it
    is current only when every member's record holds today's key, so the group reruns when
    any member's key differs."""
    members = [pipeline.job_dir(S, "train", run, seed) for run, seed in group.members]

    def f(wildcards):
        key = " ".join(KEYS[m] for m in members)
        return _stamp(f"{S}/train/{group.id}", all(m in CURRENT for m in members), key)

    return f


def _stamp(job, current, key):
    """The stamp file of ``job`` (a job folder, or a group's name under its stage's folder),
    holding the job's current key: ancient when the job is current; when not, rewritten now
    with the time beside the key, so its checksum is one Snakemake has never recorded, even
    when the stale record is one the job itself wrote with today's key and then lost."""
    path = STAMPS / (job.replace("/", "__") + ".stamp")
    path.parent.mkdir(parents=True, exist_ok=True)
    if current:
        if not path.exists() or path.read_text() != key:
            path.write_text(key)
        return ancient(str(path))
    path.write_text(f"{key} stale since {time.time_ns()}")
    return str(path)


def members(pattern, group):
    """A per-run pattern ({run}, {seed}) expanded over a training group's members, in order."""
    runs, seeds = zip(*group.members)
    return expand(pattern, zip, run=runs, seed=seeds)


def train_resources(defaults):
    """The resources of a training group's rule: ``defaults`` with the profile's
    ``set-resources: train:`` laid over them (Snakemake applies set-resources by rule name,
    and a group's rule is train_g<i>, so the settings for `train` reach every training job)."""
    settings = dict(workflow.resource_settings.overwrite_resources).get("train", {})
    return {**defaults, **{name: r.raw for name, r in settings.items()}}


def _current_jobs():
    """Jobs whose provenance record holds today's key. If their file times are out of
    pipeline order (a fresh clone's checkout order is arbitrary, and only content decides what
    is stale), they are re-timed in order, in the past, so that only stamps count."""
    current = []
    for name in pipeline.STAGES:
        for run, seed in pipeline.jobs(DOC, name):
            job = pipeline.job_dir(S, name, run, seed)
            KEYS[job] = key = pipeline.job_record(DOC, name, run, seed, root=PROJECT)["key"]
            if pipeline.recorded_key(f"{job}/{pipeline.RECORD}") == key:
                current.append(job)
    times = [[p.stat().st_mtime for p in Path(j).rglob("*")] or [0.0] for j in current]
    ordered = all(
        min(times[i]) > max(max(t) for t in times[:i]) for i in range(1, len(times))
    )
    if not ordered:
        t0 = time.time() - 3600
        for i, job in enumerate(current):
            for p in Path(job).rglob("*"):
                os.utime(p, (t0 + i, t0 + i))
    return set(current)


KEYS = {}  # job folder -> its current key
CURRENT = _current_jobs()
