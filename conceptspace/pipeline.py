"""The pipeline's shape, stated once: its stages, the params each reads, the stages each builds
on, and the code each runs (README "Studies"). Both tools are built from it:

* ``dvc.yaml`` (and every study folder's ``dvc.yaml``) is *generated* by :func:`dvc_pipeline`,
  so DVC's code dependencies are each stage's import closure (:func:`code_closure`);
* the Snakemake rules ask :func:`job_record` for each job's provenance: the params it reads,
  the digests of the code it runs and the keys of the jobs it builds on. A job whose recorded
  key (``provenance.json`` beside its outputs, written by the stage) differs from the current
  one is rerun, in a used workspace or a fresh clone alike.

A *study* is one params document; its artifacts live under ``results/<study>/``.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

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
        "upstream": upstream,
    }
    return {"key": _key(record), **record}


def job_dir(study_dir: str, stage: str, run: str | None = None, seed: int | None = None) -> str:
    """Where a job's outputs and its provenance record live."""
    if run is None:
        return f"{study_dir}/{stage}"
    return f"{study_dir}/{stage}/{run}/seed{seed}"


def recorded_key(path: str | Path) -> str | None:
    """The key in a provenance record, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


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
        "summary.md": False,
        "details.json": False,
        "trajectories.csv": False,
        "learning_times.csv": False,
        "capability.csv": False,
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
    j = job_dir(study_dir, stage, run, seed) if STAGES[stage].per_run else job_dir(study_dir, stage)

    def up(stage: str) -> str:
        return job_dir(study_dir, stage, run, seed)

    ident = f" --run {run} --seed {seed}" if STAGES[stage].per_run else ""
    head = f"python -m stages.{stage} --params {params_file}{ident}"
    args = {
        "synthesize": f"--dataset {j}/dataset.npz --card {j}/card.json --samples {j}/samples.png",
        "train": f"--dataset {up('synthesize')}/dataset.npz --ckpt-dir {j}/ckpt --log-dir {j}/log",
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


def _dvc_deps(stage: str, study_dir: str, run: str, seed: str) -> list[str]:
    deps = list(code_closure(stage))
    for u in STAGES[stage].upstream:
        if not STAGES[stage].per_run:
            deps.append(f"{study_dir}/{u}")
        elif STAGES[u].per_run:
            cached = [f for f, c in OUTS[u].items() if c and not f.endswith(".png")]
            deps += [f"{job_dir(study_dir, u, run, seed)}/{f}" for f in cached]
        else:
            deps += [f"{job_dir(study_dir, u)}/{f}" for f, c in OUTS[u].items() if c]
    return deps


def dvc_pipeline(study_dir: str, params_file: str, wdir: str | None = None) -> dict:
    """The ``dvc.yaml`` document of a study: one DVC stage per pipeline stage (a matrix over
    runs and seeds for per-run stages), with the same commands as the Snakemake rules."""
    stages = {}
    for name, s in STAGES.items():
        run, seed = ("${item.run}", "${item.seed}") if s.per_run else ("", "")
        j = job_dir(study_dir, name, run, seed) if s.per_run else job_dir(study_dir, name)
        st: dict[str, Any] = {}
        if s.per_run:
            st["matrix"] = {"run": "${runs}", "seed": "${seeds}"}
        if wdir:
            st["wdir"] = wdir
        st["cmd"] = command(name, study_dir, params_file, run, seed)
        st["deps"] = _dvc_deps(name, study_dir, run, seed)
        st["params"] = [{params_file: [k.format(run=run) for k in s.params]}]
        outs: list[Any] = [
            f"{j}/{f}" if cached else {f"{j}/{f}": {"cache": False}}
            for f, cached in OUTS[name].items()
        ]
        outs.append({f"{j}/{RECORD}": {"cache": False}})
        st["outs"] = outs
        if name in METRICS:
            st["metrics"] = [{f"{j}/{METRICS[name]}": {"cache": False}}]
        stages[name] = st
    return {"stages": stages}
