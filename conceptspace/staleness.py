"""What is stale, decided from records alone (docs/pipeline.md, "Provenance and staleness"):
a job is rerun when its provenance record is missing or differs from
:func:`conceptspace.pipeline.job_record` (its params, code digests or upstream keys changed),
when a file it wrote no longer has the size and sha256 its record lists (edited, truncated,
deleted, or a folder replaced by a file), or when a job it builds on is rerun.

Everything here only reads: the workflow calls :func:`stale_jobs` while Snakemake reads it
(``snakemake -n`` included), so no stamp is written and no file time is changed; file times
play no part (a fresh clone's are in checkout order).

Each record lists the files its job wrote under ``files`` (:func:`written_files`), beside
its ``key``, not in it: the key says what the outputs depend on, the checksums what they are.
A record without ``files`` (written before checksums were kept) is checked by its key alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conceptspace import numerics, pipeline

FILES = "files"  # the record's field listing each written file's size and sha256
_CHUNK = 1 << 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def written_files(job_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under a job's folder (output folders such as ``ckpt``
    walked), by path relative to it; the record itself, the platform file beside it
    (``numerics.PLATFORM``) and hidden files (DVC's ``.gitignore``) are left out."""
    job_dir = Path(job_dir)
    out = {}
    for p in sorted(job_dir.rglob("*")):
        rel = p.relative_to(job_dir)
        if not p.is_file() or rel.as_posix() in (pipeline.RECORD, numerics.PLATFORM):
            continue
        if any(part.startswith(".") for part in rel.parts):
            continue
        out[rel.as_posix()] = {"size": p.stat().st_size, "sha256": sha256(p)}
    return out


@dataclass(frozen=True)
class Stale:
    """Why a job is rerun: ``reason`` names the file or record and what changed. ``quiet``
    when there is nothing to tell (the job never ran here: Snakemake runs it anyway)."""

    reason: str
    quiet: bool = False


def _read_record(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def _check_files(job: str, listed: Any, cached: frozenset[str] = frozenset()) -> str | None:
    """The first file of ``listed`` (a record's ``files``) that differs, and how. A missing
    file under one of the ``cached`` outputs (kept in DVC's cache, not in git) is not a
    change: a fresh clone has none of them, and the tools restore them when a job downstream
    needs them (``dvc pull``; Snakemake reruns the job only then)."""
    if not isinstance(listed, dict):
        return f"{job}/{pipeline.RECORD} changed since its job wrote it (`{FILES}` unreadable)"
    for rel, want in sorted(listed.items()):
        p = Path(job) / rel
        if not isinstance(want, dict):
            return f"{job}/{pipeline.RECORD} changed since its job wrote it ({rel!r} unreadable)"
        if not p.exists() and Path(rel).parts[0] in cached and not _blocked(p, rel):
            continue
        if not p.is_file():
            what = "is no longer a file" if p.exists() else "is missing"
            for parent in list(p.parents)[: len(Path(rel).parts) - 1]:
                if parent.exists() and not parent.is_dir():
                    return f"{parent} was replaced by a file since its job wrote {p}"
            return f"{p} {what} since its job wrote it"
        size = p.stat().st_size
        if size != want.get("size"):
            return (
                f"{p} changed since its job wrote it (size {size} bytes, was "
                f"{want.get('size')}: truncated or edited)"
            )
        if sha256(p) != want.get("sha256"):
            return f"{p} changed since its job wrote it (sha256 differs)"
    return None


def _blocked(p: Path, rel: str) -> bool:
    """Whether a folder above ``p`` (within its job) was replaced by a file."""
    return any(q.exists() and not q.is_dir() for q in list(p.parents)[: len(Path(rel).parts) - 1])


_LABELS = {"upstream": "upstream job"}  # how a field's entries are named in a reason


def _what_changed(rec: dict, current: dict) -> str:
    """The first thing a record's key depends on that is not what it is now: a params key, a
    code file, an upstream job, or another field of :func:`conceptspace.pipeline.job_record`."""
    for field, now in current.items():
        was = rec.get(field)
        if field == "key" or was == now:
            continue
        if isinstance(was, dict) and isinstance(now, dict):
            changed = sorted(k for k in {*was, *now} if was.get(k) != now.get(k))
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            return f"{_LABELS.get(field, field)} {changed[0]} changed{more}"
        return f"its `{field}` changed"
    return "its key changed"


def check_job(job: str, current: dict) -> Stale | None:
    """Whether the job whose folder is ``job`` is stale against its ``current`` record
    (:func:`conceptspace.pipeline.job_record`), and why; None when it is up to date."""
    path = Path(job) / pipeline.RECORD
    if not path.exists():
        quiet = not Path(job).exists()
        return Stale(f"{job} has no provenance record ({pipeline.RECORD})", quiet)
    rec = _read_record(path)
    if rec is None:
        return Stale(f"{path} is unreadable (not the JSON its job wrote)")
    if rec.get("key") != current["key"]:
        return Stale(f"{path}: {_what_changed(rec, current)} since its job ran")
    for field, value in current.items():
        if rec.get(field) != value:
            return Stale(f"{path} changed since its job wrote it ({field!r} differs)")
    if FILES in rec:
        outs = pipeline.OUTS.get(str(current.get("stage")), {})
        why = _check_files(job, rec[FILES], frozenset(f for f, c in outs.items() if c))
        if why:
            return Stale(why)
    return None


def job_name(stage: str, run: str | None, seed: int | None) -> str:
    return f"{stage} {run} seed {seed}" if run is not None else stage


def stale_jobs(doc: dict, study_dir: str, root: Path = pipeline.ROOT) -> dict[str, Stale]:
    """Every stale job of the study ``doc`` whose artifacts live in ``study_dir``, by job
    folder (:func:`conceptspace.pipeline.job_dir`), in pipeline order, with why. Reads
    records, params, code and outputs; writes nothing."""
    stale: dict[str, Stale] = {}
    for stage in pipeline.STAGES:
        for run, seed in pipeline.jobs(doc, stage):
            job = pipeline.job_dir(study_dir, stage, run, seed)
            current = pipeline.job_record(doc, stage, run, seed, root=root)
            ups = [f"{study_dir}/{u}" for u in current["upstream"]]
            verdict = check_job(job, current)
            if verdict is None:
                above = next((u for u in ups if u in stale), None)
                if above is not None:
                    name = _name_of(study_dir, above)
                    verdict = Stale(f"it builds on {name}, which reruns", stale[above].quiet)
            if verdict is not None:
                stale[job] = verdict
        if stage == "train" and pipeline.grouped(doc):
            _stale_groups(doc, study_dir, stale)
    return stale


def _stale_groups(doc: dict, study_dir: str, stale: dict[str, Stale]) -> None:
    """A training group reruns as one job (conceptspace/pipeline.py, "Training groups"), so
    every member of a group with a stale member is stale: its outputs are rewritten."""
    for group in pipeline.train_groups(doc):
        jobs = [pipeline.job_dir(study_dir, "train", r, s) for r, s in group.members]
        first = next((j for j in jobs if j in stale), None)
        for j in jobs:
            if first is not None and j not in stale:
                why = f"it trains in {group.name} with {_name_of(study_dir, first)}, which reruns"
                stale[j] = Stale(why, stale[first].quiet)


def _name_of(study_dir: str, job: str) -> str:
    """``probe c020 seed 0`` for the job folder ``<study_dir>/probe/c020/seed0``."""
    parts = job[len(study_dir) + 1 :].split("/")
    if len(parts) == 3:
        return job_name(parts[0], parts[1], int(parts[2].removeprefix("seed")))
    return parts[0]


def messages(study_dir: str, stale: dict[str, Stale]) -> list[str]:
    """One line per stale job that ran here before: ``<why>: rerunning <stage run seed>``."""
    return [
        f"{s.reason}: rerunning {_name_of(study_dir, job)}"
        for job, s in stale.items()
        if not s.quiet
    ]


def blocking_file(doc: dict, study_dir: str) -> Path | None:
    """A file standing where the study keeps a job's folder (or a folder above it), which
    no job can write through; None when there is none."""
    for stage in pipeline.STAGES:
        for run, seed in pipeline.jobs(doc, stage):
            p = Path(pipeline.job_dir(study_dir, stage, run, seed))
            for q in [*reversed(p.parents), p]:
                if q.exists() and not q.is_dir():
                    return q
    return None
