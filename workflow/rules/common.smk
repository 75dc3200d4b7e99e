# The study, its params and each job's provenance (README "Studies").
#   snakemake -j 2                                # the default study: params.yaml
#   snakemake -j 2 --config study=guidance        # a preset: configs/guidance.yaml over it
#   snakemake -j 2 --config study=path/mine.yaml  # a user's own overlay
# Artifacts go to results/<study>/. The stages read the study's params file themselves, so
# --config takes `study` only; params are checked (schema + typed model) before any job runs.
import sys
from pathlib import Path

# The project's own code, not an installed copy: provenance digests the files that will run.
PROJECT = Path(workflow.basedir).parent
sys.path.insert(0, str(PROJECT))
from conceptspace import pipeline, staleness, studies, toollock
from conceptspace.params import ParamsError

if workflow.is_main_process and toollock.dvc_running(PROJECT):
    sys.exit(f"error: {toollock.DVC_BUSY}")

try:
    unknown = sorted(set(config) - {"study"})
    if unknown:
        raise ParamsError(
            f"--config {', '.join(unknown)}: only `study` is a workflow option; edit params.yaml "
            "or lay an overlay over it (--config study=FILE)"
        )
    STUDY = studies.from_config(config)
    studies.materialize(STUDY, dry_run=workflow.output_settings.dryrun)  # -n writes nothing
    DOC = STUDY.document()
except ParamsError as e:
    sys.exit(f"error: {e}")

S = STUDY.dir  # results/<study>
PARAMS_FILE = STUDY.params_file
RUNS = list(DOC["runs"])
SEEDS = list(DOC["seeds"])


# The wildcards that name a job's run and seed: `run` and `seed` in every rule but the
# training rule, whose own names put them on its boxes in `snakemake --dag` (rules/train.smk).
WILDCARD_NAMES = {"train": ("train_run", "train_seed")}


wildcard_constraints:
    run="|".join(RUNS),
    seed=r"\d+",
    train_run="|".join(RUNS),
    train_seed=r"\d+",


def wildcard_names(rule):
    """The names of the wildcards for run and seed in the rule ``rule``."""
    return WILDCARD_NAMES.get(rule, ("run", "seed"))


def in_own_wildcards(rule, pattern):
    """A per-run pattern ({run}, {seed}) in the wildcard names of the rule ``rule``."""
    run, seed = wildcard_names(rule)
    return str(pattern).replace("{run}", f"{{{run}}}").replace("{seed}", f"{{{seed}}}")


def per_run(pattern):
    """Expand a pattern with {run} and {seed} over the whole sweep."""
    return expand(pattern, run=RUNS, seed=SEEDS)


def final_outputs():
    return [f"{S}/analyze/metrics.json"]


def cmd(stage):
    """The stage's shell command, the same string as in the study's dvc.yaml."""
    run, seed = wildcard_names(stage)
    return pipeline.command(stage, S, PARAMS_FILE, f"{{wildcards.{run}}}", f"{{wildcards.{seed}}}")


def provenance(stage):
    """The job's provenance record, an output written by the stage."""
    if pipeline.STAGES[stage].per_run:
        return f"{S}/{stage}/{{run}}/seed{{seed}}/{pipeline.RECORD}"
    return f"{S}/{stage}/{pipeline.RECORD}"


def stamp(stage):
    """An input function that adds no input to a job: when the job is stale
    (conceptspace/staleness.py decides, from records, params, code and checksums), it has
    Snakemake rerun the job, as `--forcerun` does; when it is current it leaves the job to
    Snakemake, which then reruns it only for a missing output or a rerun upstream job (file
    times count for nothing: see :func:`content_only`). Nothing is written, dry run or not."""

    def f(wildcards):
        _force_if_stale(_job_dirs(stage, wildcards))
        return []

    return f


def group_stamp(group):
    """As :func:`stamp`, for a training group's job (train.ensemble > 1): it reruns when any
    member is stale."""

    def f(wildcards):
        _force_if_stale(_job_dirs(group.name, wildcards))
        return []

    return f


GROUPS = {g.name: g for g in pipeline.train_groups(DOC)} if pipeline.grouped(DOC) else {}


def _job_dirs(name, wildcards):
    """The job folders that one job of ``name`` (a Snakemake rule) writes: a training
    group's, its members'; None when ``name`` is no pipeline stage (`all`)."""
    if name in GROUPS:
        return [pipeline.job_dir(S, "train", run, seed) for run, seed in GROUPS[name].members]
    if name not in pipeline.STAGES:
        return None
    run_name, seed_name = wildcard_names(name)
    run = wildcards.get(run_name)
    seed = int(wildcards.get(seed_name)) if run is not None else None
    return [pipeline.job_dir(S, name, run, seed)]


def _force_if_stale(jobs):
    """Force the Snakemake job that writes the folders ``jobs`` when any is stale. Input
    functions run while Snakemake builds its DAG, after it has read the workflow, so the DAG is
    there to take the forced file (the set that `--forcerun FILE` fills)."""
    dag = workflow.dag
    if dag is not None and any(j in STALE for j in jobs):
        dag.forcefiles.update(f"{j}/{pipeline.RECORD}" for j in jobs)


def content_only():
    """Let content alone decide what is stale, never file times (a fresh clone's are in
    checkout order): every path input of a pipeline rule becomes an input function that marks
    it ancient (its time never reruns the job) unless the job is stale. A stale job is forced
    (:func:`stamp`), and its inputs, not ancient, carry the rerun to it from an upstream job
    that reruns (Snakemake does not rerun a job for a rerun upstream job when every input it
    takes from it is ancient). Called once every rule is defined (workflow/Snakefile).

    Snakemake expands a named input from the rule's attribute of that name (a list input as
    one item), an unnamed one from its place in the list: each is replaced where it is read."""
    for r in workflow.rules:
        inputs, named = r.input, set()
        for name, (i, end) in list(inputs._names.items()):
            named.update(range(i, i + 1 if end is None else end))
            value = getattr(inputs, name)
            patterns = [value] if end is None else list(value)
            if patterns and all(_is_path(f) for f in patterns):
                setattr(inputs, name, _ancient_unless_stale(r.name, patterns, end is None))
        for i, f in enumerate(inputs):
            if i not in named and _is_path(f):
                inputs[i] = _ancient_unless_stale(r.name, [f], True)


def _is_path(f):
    return hasattr(f, "apply_wildcards") and not f.is_callable()


def _ancient_unless_stale(name, patterns, single):
    """The input function of path inputs of the Snakemake rule ``name``
    (:func:`content_only`): one path when ``single``, else a list."""

    def f(wildcards):
        jobs = _job_dirs(name, wildcards)
        paths = [str(p.apply_wildcards(wildcards)) for p in patterns]
        if jobs is None or any(j in STALE for j in jobs):
            return paths[0] if single else paths
        paths = [ancient(p) for p in paths]
        return paths[0] if single else paths

    return f


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


def _stale_jobs():
    """The study's stale jobs (conceptspace/staleness.py), each reason printed once, in the
    process that plans the jobs; no file is written or re-timed. A process Snakemake spawns
    to run one job (on a cluster) runs it with --force, so it plans nothing and checks nothing."""
    if not workflow.is_main_process:
        return {}
    blocking = staleness.blocking_file(DOC, S)
    if blocking is not None:
        sys.exit(
            f"error: {blocking} is a file where the study keeps a results folder: move or "
            f"remove it (rm {blocking}) and run again"
        )
    stale = staleness.stale_jobs(DOC, S, PROJECT)
    for line in staleness.messages(S, stale):
        print(line, file=sys.stderr)
    return stale


STALE = _stale_jobs()  # job folder -> why it is rerun
