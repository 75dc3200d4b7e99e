"""The pipeline's shape, stated once: its stages, the params each reads, the stages each builds
on, and the code each runs (README "Studies"). Both tools are built from it:

* ``dvc.yaml`` (and every study folder's ``dvc.yaml``) is *generated* by :func:`dvc_pipeline`,
  so DVC's code dependencies are each stage's import closure (:func:`code_closure`);
* every job's provenance record (``provenance.json`` beside its outputs, written by the stage)
  holds :func:`job_record`: the params it reads, the digests of the code it runs and the keys
  of the jobs it builds on, with the size and sha256 of each file it wrote beside the key.
  ``conceptspace/staleness.py`` compares records with today's :func:`job_record` and with the
  files, and the Snakemake workflow reruns exactly the stale jobs, in a used workspace or a
  fresh clone alike.

A *study* is one params document; its artifacts live under ``results/<study>/``.

Training groups. With ``train.ensemble: K > 1`` the study's (run, seed) training jobs, in their
usual order (``jobs(doc, "train")``), are cut into consecutive groups of K (the last may be
smaller), each trained as one batched model in one process (conceptspace/model/ensemble.py).
Group ``i`` has the id ``g<i>``; its job is the Snakemake rule and the DVC stage
``train_g<i>`` (:attr:`Group.name`: Snakemake rules cannot share a name, and a group's outputs
are its members' per-run paths, so one rule with a wildcard cannot hold them). Its command is
the train command with ``--run/--seed/--dataset/--ckpt-dir/--log-dir/--provenance`` once per
member (:func:`train_command`); every member keeps its per-run outputs and its own provenance
record, the one a lone job of that run writes, so probe, intervene and analyze read members as
they read lone runs. A group is stale when any member's record is. The groups follow the sweep:
after changing ``runs``, ``seeds`` or ``train.ensemble``, regenerate the study's ``dvc.yaml``
(``python -m stages.study``). With ``train.ensemble: 1`` there are no groups in either tool:
one ``train`` job per run, as for every other per-run stage.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from conceptspace import numerics
from conceptspace.params import ParamsError
from conceptspace.sections import Train

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("conceptspace", "stages")
# Files a module reads at run time, as code: editing them changes what the stage does.
DATA_DEPS = {"conceptspace/params.py": ("workflow/schemas/params.schema.yaml",)}
RECORD = "provenance.json"


@dataclass(frozen=True)
class Stage:
    """One stage: ``stages/<name>.py``, a Snakemake rule and a DVC stage of the same name."""

    name: str
    per_run: bool  # one job per (run, seed), or one per study
    params: tuple[str, ...]  # params keys it reads; "runs.{run}" is the run's own entry
    upstream: tuple[str, ...]  # stages whose outputs it reads


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage("synthesize", True, ("runs.{run}", "grid", "synthesize"), ()),
        Stage("fit_classifier", False, ("runs", "grid", "synthesize", "fit_classifier"), ()),
        Stage("train", True, ("runs.{run}", "grid", "train"), ("synthesize",)),
        Stage("probe", True, ("runs.{run}", "grid", "probe"), ("train", "fit_classifier")),
        Stage("intervene", True, ("runs.{run}", "grid", "intervene"), ("train", "fit_classifier")),
        Stage(
            "analyze",
            False,
            ("runs", "seeds", "analyze"),
            ("synthesize", "train", "probe", "intervene"),
        ),
    )
}


# ---- code: each stage's import closure ----------------------------------------------------
def _module_file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _imports(path: Path, root: Path) -> set[Path]:
    """Project files imported anywhere in ``path`` (module level or inside functions)."""
    rel = path.relative_to(root).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    files = set()
    for mod in found:
        if mod.split(".")[0] not in PACKAGES:
            continue
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):  # the module and every package above it
            f = _module_file(".".join(parts[:i]), root)
            if f is not None:
                files.add(f)
    return files


@cache
def code_closure(stage: str, root: Path = ROOT) -> tuple[str, ...]:
    """Every project file ``stages/<stage>.py`` runs: its transitive project imports (static,
    so imports inside functions count) and the data files those modules read as code."""
    todo, seen = [root / "stages" / f"{stage}.py"], set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(_imports(f, root) - seen)
    rels = {str(f.relative_to(root)) for f in seen}
    rels |= {d for f in list(rels) for d in DATA_DEPS.get(f, ())}
    return tuple(sorted(rels))


@cache
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_digests(stage: str, root: Path = ROOT) -> dict[str, str]:
    return {f: _digest(root / f)[:16] for f in code_closure(stage, root)}


# ---- params and provenance ----------------------------------------------------------------
def _get(doc: dict, dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def stage_params(doc: dict, stage: str, run: str | None = None) -> dict[str, Any]:
    """The params a job reads, by key (``runs.<run>`` expanded)."""
    keys = [k.format(run=run) for k in STAGES[stage].params]
    return {k: _get(doc, k) for k in keys}


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:24]


def jobs(doc: dict, stage: str) -> list[tuple[str | None, int | None]]:
    """The (run, seed) of each job of ``stage``; (None, None) for a per-study stage."""
    if STAGES[stage].per_run:
        return [(r, s) for r in doc["runs"] for s in doc["seeds"]]
    return [(None, None)]


def job_record(
    doc: dict, stage: str, run: str | None = None, seed: int | None = None, root: Path = ROOT
) -> dict[str, Any]:
    """What a job's outputs depend on: its params, its code and the jobs it builds on, with
    ``key``, one digest of all of it (upstream keys included, so a change anywhere above a job
    changes its key even when the outputs in between are absent, as in a fresh clone)."""
    s = STAGES[stage]
    upstream = {}
    for u in s.upstream:
        if STAGES[u].per_run and not s.per_run:
            for r, sd in jobs(doc, u):
                upstream[f"{u}/{r}/seed{sd}"] = job_record(doc, u, r, sd, root)["key"]
        elif STAGES[u].per_run:
            upstream[f"{u}/{run}/seed{seed}"] = job_record(doc, u, run, seed, root)["key"]
        else:
            upstream[u] = job_record(doc, u, root=root)["key"]
    record = {
        "stage": stage,
        "run": run,
        "seed": seed,
        "params": stage_params(doc, stage, run),
        "code": code_digests(stage, root),
        "numerics": numerics.settings(),
        "upstream": upstream,
    }
    if stage == "train" and grouped(doc):
        # a member's rounding depends on the batched model it was trained in: its partners
        # are part of what its checkpoints depend on
        record["group"] = [f"{r}/seed{s}" for r, s in group_of(doc, run, seed).members]
    return {"key": _key(record), **record}


def job_dir(study_dir: str, stage: str, run: str | None = None, seed: int | None = None) -> str:
    """Where a job's outputs and its provenance record live."""
    if run is None:
        return f"{study_dir}/{stage}"
    return f"{study_dir}/{stage}/{run}/seed{seed}"


# ---- training groups ----------------------------------------------------------------------
ENSEMBLE_DEFAULT = Train.model_fields["ensemble"].default


@dataclass(frozen=True)
class Group:
    """Training jobs trained together as one job: the ``index``-th group of a study's (run,
    seed) training jobs, cut in their usual order (:func:`train_groups`)."""

    index: int
    members: tuple[tuple[str, int], ...]  # (run, seed), in job order

    @property
    def id(self) -> str:
        """``g<index>``: usable as a Snakemake wildcard value, a DVC stage-name part and a
        file name (the group's log, ``logs/<study>/train/g<index>.log``)."""
        return f"g{self.index}"

    @property
    def name(self) -> str:
        """The group's job: its Snakemake rule and its DVC stage, ``train_g<index>``."""
        return f"train_{self.id}"


def ensemble_size(doc: dict) -> int:
    """``train.ensemble`` of a params document: runs per training job (its default when
    absent)."""
    k = (doc.get("train") or {}).get("ensemble", ENSEMBLE_DEFAULT)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ParamsError(f"train.ensemble = {k!r}: must be a whole number >= 1")
    return k


def grouped(doc: dict) -> bool:
    """Whether the study trains in groups (``train.ensemble`` > 1): one job per group, named
    :attr:`Group.name`; otherwise one ``train`` job per run, like every per-run stage."""
    return ensemble_size(doc) > 1


def train_groups(doc: dict) -> list[Group]:
    """The study's training jobs (``jobs(doc, "train")``) cut into consecutive groups of
    ``train.ensemble`` (the last may be smaller); with ``train.ensemble: 1``, one per job."""
    k, todo = ensemble_size(doc), jobs(doc, "train")
    return [Group(i, tuple(todo[j : j + k])) for i, j in enumerate(range(0, len(todo), k))]


def group_of(doc: dict, run: str, seed: int) -> Group:
    """The training group that holds ``(run, seed)``."""
    for g in train_groups(doc):
        if (run, seed) in g.members:
            return g
    raise ParamsError(f"{run}/seed{seed} is not a training job of this study")


def group_params(group: Group) -> list[str]:
    """The params keys a group's job reads: the train keys of every member, each once."""
    keys = [k.format(run=r) for k in STAGES["train"].params for r, _ in group.members]
    return list(dict.fromkeys(keys))


# ---- the DVC pipeline of a study ----------------------------------------------------------
# Files each stage writes, relative to its job folder; ``cache: false`` ones are small and
# committed to git (tables, cards, records), the rest live in DVC's cache.
OUTS: dict[str, dict[str, bool]] = {  # file -> cached
    "synthesize": {"dataset.npz": True, "card.json": False, "samples.png": True},
    "train": {"ckpt": True, "log": True},
    "fit_classifier": {"classifier.pt": True},
    "probe": {"probe.csv": False, "samples.npz": True, "samples.png": True},
    "intervene": {"intervene.csv": False, "embeddings.csv": False},
    "analyze": {
        "headline.json": False,
        "summary.md": False,
        "details.json": False,
        "trajectories.csv": False,
        "learning_times.csv": False,
        "capability.csv": False,
        "dose_response.csv": False,
        "losses.csv": False,
        "concept_distance.csv": False,
        "dynamics_fit.csv": False,
        "guidance_learning_times.csv": False,
        "underspecification.csv": False,
        "figures": False,
    },
}
METRICS = {"fit_classifier": "metrics.json", "analyze": "metrics.json"}


def command(stage: str, study_dir: str, params_file: str, run: str, seed: str) -> str:
    """The shell command of a job; ``run`` and ``seed`` are the tool's placeholders."""
    if stage == "train":
        return train_command(study_dir, params_file, [(run, seed)])
    j = job_dir(study_dir, stage, run, seed) if STAGES[stage].per_run else job_dir(study_dir, stage)

    def up(stage: str) -> str:
        return job_dir(study_dir, stage, run, seed)

    ident = f" --run {run} --seed {seed}" if STAGES[stage].per_run else ""
    head = f"python -m stages.{stage} --params {params_file}{ident}"
    args = {
        "synthesize": f"--dataset {j}/dataset.npz --card {j}/card.json --samples {j}/samples.png",
        "fit_classifier": f"--classifier {j}/classifier.pt --metrics {j}/metrics.json",
        "probe": f"--ckpt-dir {up('train')}/ckpt"
        f" --classifier {study_dir}/fit_classifier/classifier.pt --table {j}/probe.csv"
        f" --samples {j}/samples.npz --grid {j}/samples.png",
        "intervene": f"--ckpt-dir {up('train')}/ckpt"
        f" --classifier {study_dir}/fit_classifier/classifier.pt --table {j}/intervene.csv"
        f" --embeddings {j}/embeddings.csv",
        "analyze": " ".join(f"--{u} {study_dir}/{u}" for u in STAGES["analyze"].upstream)
        + f" --out {j}",
    }[stage]
    return f"{head} {args} --provenance {j}/{RECORD}"


def train_command(study_dir: str, params_file: str, members: Sequence[tuple[str, Any]]) -> str:
    """The train stage's command for a group of (run, seed) members: a member's options and
    its ``--provenance``, once per member and in order (stages/train.py). For one member it is
    the lone job's command."""
    options = " ".join(_train_options(study_dir, run, seed) for run, seed in members)
    return f"python -m stages.train --params {params_file} {options}"


def _train_options(study_dir: str, run: str, seed: Any) -> str:
    j = job_dir(study_dir, "train", run, seed)
    dataset = f"{job_dir(study_dir, 'synthesize', run, seed)}/dataset.npz"
    return (
        f"--run {run} --seed {seed} --dataset {dataset} --ckpt-dir {j}/ckpt --log-dir {j}/log"
        f" --provenance {j}/{RECORD}"
    )


def _upstream_deps(
    stage: str, study_dir: str, run: str, seed: Any, doc: dict | None = None
) -> list[str]:
    """The files of upstream jobs that a job reads, as DVC deps. A per-study job (``doc``
    given) depends on every output of every upstream job, file by file as in the Snakemake
    rule, not on the stages' folders: in a clone without DVC's cache a folder holds only its
    git-tracked files and reads as modified, whereas a missing cached output reads as deleted,
    which ``dvc repro --allow-missing`` accepts when its hash is the one upstream recorded
    (docs/reproducibility-dvc.md)."""
    deps = []
    for u in STAGES[stage].upstream:
        if not STAGES[stage].per_run:
            for r, s in jobs(doc, u):
                j = job_dir(study_dir, u, r, s)
                outs = [o if isinstance(o, str) else next(iter(o)) for o in _dvc_outs(u, j)]
                deps += outs + ([f"{j}/{METRICS[u]}"] if u in METRICS else [])
        elif STAGES[u].per_run:
            cached = [f for f, c in OUTS[u].items() if c and not f.endswith(".png")]
            deps += [f"{job_dir(study_dir, u, run, seed)}/{f}" for f in cached]
        else:
            deps += [f"{job_dir(study_dir, u)}/{f}" for f, c in OUTS[u].items() if c]
    return deps


def _dvc_outs(stage: str, j: str) -> list[Any]:
    """The outputs of a job whose folder is ``j``, its provenance record last."""
    outs: list[Any] = [
        f"{j}/{f}" if cached else {f"{j}/{f}": {"cache": False}}
        for f, cached in OUTS[stage].items()
    ]
    outs.append({f"{j}/{RECORD}": {"cache": False}})
    return outs


def _dvc_stage(
    name: str, study_dir: str, params_file: str, wdir: str | None, doc: dict | None = None
) -> dict:
    """A pipeline stage as one DVC stage (a matrix over runs and seeds when per run)."""
    s = STAGES[name]
    run, seed = ("${item.run}", "${item.seed}") if s.per_run else ("", "")
    j = job_dir(study_dir, name, run, seed) if s.per_run else job_dir(study_dir, name)
    st: dict[str, Any] = {}
    if s.per_run:
        st["matrix"] = {"run": "${runs}", "seed": "${seeds}"}
    if wdir:
        st["wdir"] = wdir
    st["cmd"] = command(name, study_dir, params_file, run, seed)
    st["deps"] = list(code_closure(name)) + _upstream_deps(name, study_dir, run, seed, doc)
    st["params"] = [{params_file: [k.format(run=run) for k in s.params]}]
    st["outs"] = _dvc_outs(name, j)
    if name in METRICS:
        # an output like any other: what `dvc metrics show` reads is declared once, at the top
        # of the default study's dvc.yaml (dvc_pipeline)
        st["outs"].insert(-1, {f"{j}/{METRICS[name]}": {"cache": False}})
    return st


def _dvc_group_stage(group: Group, study_dir: str, params_file: str, wdir: str | None) -> dict:
    """A training group as one DVC stage: the train code, every member's dataset, the train
    params of every member, and every member's outputs."""
    members = group.members
    st: dict[str, Any] = {"wdir": wdir} if wdir else {}
    st["cmd"] = train_command(study_dir, params_file, members)
    st["deps"] = list(code_closure("train"))
    st["deps"] += [d for r, s in members for d in _upstream_deps("train", study_dir, r, s)]
    st["params"] = [{params_file: group_params(group)}]
    dirs = [job_dir(study_dir, "train", r, s) for r, s in members]
    st["outs"] = [o for j in dirs for o in _dvc_outs("train", j)]
    return st


def dvc_pipeline(doc: dict, study_dir: str, params_file: str, wdir: str | None = None) -> dict:
    """The ``dvc.yaml`` document of the study ``doc``: one DVC stage per pipeline stage (a
    matrix over runs and seeds for per-run stages), with the same commands as the Snakemake
    rules; with ``train.ensemble`` > 1, one stage per training group instead of ``train``."""
    stages = {}
    for name in STAGES:
        if name == "train" and grouped(doc):
            for g in train_groups(doc):
                stages[g.name] = _dvc_group_stage(g, study_dir, params_file, wdir)
        else:
            stages[name] = _dvc_stage(name, study_dir, params_file, wdir, doc)
    return {"stages": stages, **_dvc_views(study_dir, wdir)}


# The files `dvc plots show` draws, each with its x and y columns and a template that colours
# the lines by run (docs/dvc/; docs/pipeline.md "What each tool shows by itself").
DVC_PLOTS = {
    "Training loss per run and seed": ("losses.csv", "step", "train_loss", "by_run.json"),
    "Held-out loss per run and seed": ("losses.csv", "step", "held_out_loss", "by_run.json"),
    "Held-out class in concept space": ("trajectories.csv", "color", "size", "trajectories.json"),
}


def _dvc_views(study_dir: str, wdir: str | None) -> dict:
    """The top-level ``plots`` and ``metrics`` of the default study's ``dvc.yaml`` (``wdir``
    None: the root one). Only the default study declares them: `dvc plots show` and `dvc
    metrics show` read every ``dvc.yaml`` of the repository and report an error for each
    study never run. Another study's files are shown by path, e.g. ``dvc metrics show
    results/<study>/analyze/metrics.json``. The headline is the analyze stage's small
    ``headline.json`` once it writes one, else its ``metrics.json``."""
    if wdir is not None:
        return {}
    analyze = job_dir(study_dir, "analyze")
    plots = [
        {title: {"template": f"docs/dvc/{template}", "x": x, "y": {f"{analyze}/{name}": y}}}
        for title, (name, x, y, template) in DVC_PLOTS.items()
    ]
    headline = "headline.json" if "headline.json" in OUTS["analyze"] else METRICS["analyze"]
    return {"plots": plots, "metrics": [f"{analyze}/{headline}"]}
