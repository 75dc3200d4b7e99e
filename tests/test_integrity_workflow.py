"""Integrity under Snakemake (conceptspace/staleness.py, conceptspace/toollock.py): every
record lists the files its job wrote; an output edited, truncated, deleted or replaced is
rerun with a message naming it; a dry run writes nothing; a folder replaced by a file stops the
workflow with a message, not a traceback; Snakemake and DVC do not run at once; the failure
summary shows a job's exception, not its progress bar."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conceptspace import pipeline, staleness, toollock
from tests.conftest import ROOT, copy_project
from tests.test_staleness import _commit, _sh, _times, snakemake_plan

STUDY = "results/default"


def _restore(root: Path) -> None:
    subprocess.run(["git", "clean", "-fdq", "--", "results"], cwd=root, check=True)
    subprocess.run(["git", "checkout", "-q", "--", "."], cwd=root, check=True)


# ---- unit: checksums and the verdict of one job (no Snakemake) -----------------------------
def _job(tmp_path: Path) -> tuple[str, dict]:
    job = tmp_path / "train" / "c020" / "seed0"
    (job / "ckpt").mkdir(parents=True)
    (job / "ckpt" / "step_10.pt").write_bytes(b"weights")
    (job / "log.csv").write_text("step,loss\n1,0.5\n")
    (job / ".gitignore").write_text("/ckpt\n")
    current = {"key": "k", "stage": "train", "params": {"a": 1}, "code": {}, "upstream": {}}
    record = {**current, staleness.FILES: staleness.written_files(job)}
    (job / pipeline.RECORD).write_text(json.dumps(record))
    return str(job), current


def test_written_files_walks_folders_and_leaves_out_the_record_and_hidden_files(tmp_path):
    job, _ = _job(tmp_path)
    files = staleness.written_files(job)
    assert sorted(files) == ["ckpt/step_10.pt", "log.csv"]
    assert files["log.csv"]["size"] == len("step,loss\n1,0.5\n")


def _edit(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[0] ^= 1  # same size, other bytes
    p.write_bytes(bytes(data))


def _replace_by_file(p: Path) -> None:
    shutil.rmtree(p)
    p.write_text("not a folder")


CASES = {
    "untouched": (lambda j: None, None),
    "edited": (lambda j: _edit(j / "log.csv"), "log.csv changed since its job wrote it (sha256"),
    "truncated": (lambda j: (j / "log.csv").write_text("st"), "truncated or edited"),
    "deleted": (lambda j: (j / "log.csv").unlink(), "log.csv is missing"),
    # a cached output absent, as in a fresh clone without DVC's cache: not a change
    "cached output absent": (lambda j: (j / "ckpt" / "step_10.pt").unlink(), None),
    "folder replaced": (lambda j: _replace_by_file(j / "ckpt"), "ckpt was replaced by a file"),
    "record edited": (
        lambda j: (j / pipeline.RECORD).write_text(
            (j / pipeline.RECORD).read_text().replace('"a": 1', '"a": 2')
        ),
        "'params' differs",
    ),
    "record broken": (lambda j: (j / pipeline.RECORD).write_text("{"), "is unreadable"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_job_names_the_file_and_what_changed(tmp_path, case):
    job, current = _job(tmp_path)
    change, said = CASES[case]
    change(Path(job))
    verdict = staleness.check_job(job, current)
    if said is None:
        assert verdict is None
    else:
        assert verdict is not None and said in verdict.reason, verdict


def test_a_changed_key_names_what_changed(tmp_path):
    job, current = _job(tmp_path)
    now = {**current, "key": "k2", "code": {"conceptspace/x.py": "1"}}
    verdict = staleness.check_job(job, now)
    assert "code conceptspace/x.py changed" in verdict.reason


def _study(tmp_path: Path, doc: dict) -> str:
    """Every job of ``doc`` done in ``tmp_path``: one output file each, and its record."""
    study = str(tmp_path / "results" / "default")
    for stage in pipeline.STAGES:
        for run, seed in pipeline.jobs(doc, stage):
            job = Path(pipeline.job_dir(study, stage, run, seed))
            job.mkdir(parents=True)
            (job / "out.csv").write_text(f"{stage} {run} {seed}\n")
            record = pipeline.job_record(doc, stage, run, seed)
            record[staleness.FILES] = staleness.written_files(job)
            (job / pipeline.RECORD).write_text(json.dumps(record))
    return study


def test_stale_jobs_carries_a_rerun_downstream_and_says_why(tmp_path, tiny_doc):
    study = _study(tmp_path, tiny_doc)
    assert staleness.stale_jobs(tiny_doc, study) == {}
    _edit(Path(study) / "train" / "c020" / "seed0" / "out.csv")
    stale = staleness.stale_jobs(tiny_doc, study)
    assert sorted(stale) == sorted(
        f"{study}/{j}"
        for j in ("train/c020/seed0", "probe/c020/seed0", "intervene/c020/seed0", "analyze")
    )
    lines = staleness.messages(study, stale)
    assert lines[0] == (
        f"{study}/train/c020/seed0/out.csv changed since its job wrote it (sha256 differs): "
        "rerunning train c020 seed 0"
    )
    assert "it builds on train c020 seed 0, which reruns: rerunning probe c020 seed 0" in lines


def test_a_stale_member_makes_its_whole_training_group_stale(tmp_path, grouped_doc):
    """A group retrains as one job, rewriting every member's outputs (train_g0: c020, c050)."""
    study = _study(tmp_path, grouped_doc)
    _edit(Path(study) / "train" / "c020" / "seed0" / "out.csv")
    stale = staleness.stale_jobs(grouped_doc, study)
    assert stale[f"{study}/train/c050/seed0"].reason == (
        "it trains in train_g0 with train c020 seed 0, which reruns"
    )
    assert f"{study}/probe/c050/seed0" in stale and f"{study}/train/c080/seed0" not in stale


def test_jobs_never_run_are_stale_but_not_reported(tmp_path, tiny_doc):
    study = str(tmp_path / "results" / "default")
    stale = staleness.stale_jobs(tiny_doc, study)
    assert len(stale) == sum(len(pipeline.jobs(tiny_doc, s)) for s in pipeline.STAGES)
    assert staleness.messages(study, stale) == []


def test_blocking_file_finds_a_file_where_a_folder_belongs(tmp_path, tiny_doc):
    study = tmp_path / "results" / "default"
    study.mkdir(parents=True)
    assert staleness.blocking_file(tiny_doc, str(study)) is None
    (study / "probe").write_text("oops")
    assert staleness.blocking_file(tiny_doc, str(study)) == study / "probe"


# ---- unit: the tools' locks ------------------------------------------------------------------
def _hold_dvc_lock(root: Path):
    path = root / toollock.DVC_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a")
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as zc.lockfile does for dvc
    return f


def test_dvc_running_sees_the_lock_dvc_holds(tmp_path):
    assert not toollock.dvc_running(tmp_path)
    f = _hold_dvc_lock(tmp_path)
    try:
        assert toollock.dvc_running(tmp_path)
    finally:
        f.close()
    assert not toollock.dvc_running(tmp_path)  # the file is there, the lock is not


def test_a_stage_refuses_when_dvc_runs_it_beside_snakemake(tmp_path):
    assert toollock.other_tool_message(tmp_path) is None
    (tmp_path / toollock.SNAKEMAKE_LOCKS).mkdir(parents=True)
    (tmp_path / toollock.SNAKEMAKE_LOCKS / "0.input.lock").write_text("")
    assert toollock.other_tool_message(tmp_path) is None  # snakemake runs the stage itself
    f = _hold_dvc_lock(tmp_path)
    try:
        assert "Snakemake is running" in toollock.other_tool_message(tmp_path)
    finally:
        f.close()


# ---- unit: the failure summary -----------------------------------------------------------------
def _errors_smk() -> dict:
    """The Python part of workflow/rules/errors.smk (all but its `onerror:` directive)."""
    src = (ROOT / "workflow" / "rules" / "errors.smk").read_text().split("\nonerror:")[0]
    ns: dict = {}
    exec(compile(src, "errors.smk", "exec"), ns)
    return ns


BAR = "train:  20%|##        | 2/10 [00:01<00:04,  1.9it/s]"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "stages/train.py", line 9, in <module>\n'
    "    main()\n"
    "RuntimeError: loss is nan at step 3\n"
)


@pytest.mark.parametrize(
    ("log", "said"),
    [
        # the bar redraws as the stage exits, after the traceback
        (f"{BAR}\r{BAR}\n{TRACEBACK}\r{BAR}", ["RuntimeError: loss is nan at step 3"]),
        (f"{BAR}\nerror: params.yaml: train.lr must be > 0\n\r{BAR}", None),
        (f"{BAR}\r{BAR}\r", "progress bar"),
    ],
)
def test_failure_summary_shows_the_exception_not_the_progress_bar(tmp_path, log, said):
    path = tmp_path / "job.log"
    path.write_text(log)
    got = _errors_smk()["_stage_errors"](str(path))
    if said is None:
        assert got == ["error: params.yaml: train.lr must be > 0"]
    elif isinstance(said, list):
        assert got == said
    else:
        assert len(got) == 1 and said in got[0] and "%|" not in got[0]


# ---- end to end: the tiny study under Snakemake ----------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_doc):
    """The tiny study run by Snakemake and committed: a used workspace, with metadata."""
    work = copy_project(tmp_path_factory.mktemp("integrity"), tiny_doc)
    _sh(work, "snakemake", "-j", "2")
    _commit(work)
    return work


@pytest.fixture(scope="module")
def clone(workspace, tmp_path_factory):
    """A fresh clone of it: no metadata, file times in checkout order."""
    dest = tmp_path_factory.mktemp("integrity-clone") / "c"
    subprocess.run(["git", "clone", "-q", str(workspace), str(dest)], check=True)
    return dest


def _records(root: Path):
    doc = yaml.safe_load((root / "params.yaml").read_text())
    for stage in pipeline.STAGES:
        for run, seed in pipeline.jobs(doc, stage):
            job = root / pipeline.job_dir(STUDY, stage, run, seed)
            yield doc, stage, run, seed, job, json.loads((job / pipeline.RECORD).read_text())


@pytest.mark.workflow
def test_each_record_lists_every_file_its_job_wrote_beside_an_unchanged_key(workspace):
    for doc, stage, run, seed, job, record in _records(workspace):
        assert record[staleness.FILES] == staleness.written_files(job), job
        assert record["key"] == pipeline.job_record(doc, stage, run, seed, workspace)["key"]
        if stage == "train":
            assert any(f.startswith("ckpt/") for f in record[staleness.FILES])


@pytest.mark.workflow
@pytest.mark.parametrize("where", ["clone", "workspace"])
def test_a_dry_run_writes_nothing(request, where):
    root = request.getfixturevalue(where)
    before = _times(root)
    assert snakemake_plan(root) == {}
    assert _times(root) == before
    assert not (root / ".snakemake" / "conceptspace-stamps").exists()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True)
    assert status.stdout == b""


TRAIN_C020 = {"train": 1, "probe": 1, "intervene": 1, "analyze": 1}
EDITS = {
    "probe.csv edited": (
        "probe/c020/seed0/probe.csv",
        lambda p: p.write_text(p.read_text() + "\n"),
        {"probe": 1, "analyze": 1},
        "probe.csv changed since its job wrote it (size",
        "probe c020 seed 0",
    ),
    "metrics.json truncated": (
        "fit_classifier/metrics.json",
        lambda p: p.write_bytes(p.read_bytes()[:10]),
        {"fit_classifier": 1, "probe": 2, "intervene": 2, "analyze": 1},
        "metrics.json changed since its job wrote it (size",
        "fit_classifier",
    ),
    "provenance.json edited": (
        "intervene/c080/seed0/provenance.json",
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "params": {}})),
        {"intervene": 1, "analyze": 1},
        "provenance.json changed since its job wrote it ('params' differs)",
        "intervene c080 seed 0",
    ),
    "probe table deleted": (
        "probe/c020/seed0/probe.csv",
        lambda p: p.unlink(),
        {"probe": 1, "analyze": 1},
        "probe.csv is missing since its job wrote it",
        "probe c020 seed 0",
    ),
    "checkpoint folder replaced by a file": (
        "train/c020/seed0/ckpt",
        _replace_by_file,
        TRAIN_C020,
        "ckpt was replaced by a file",
        "train c020 seed 0",
    ),
}


@pytest.mark.workflow
@pytest.mark.parametrize("where", ["clone", "workspace"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_output_changed_by_hand_is_rerun_and_named(request, where, edit):
    root = request.getfixturevalue(where)
    rel, change, plan, said, job = EDITS[edit]
    change(root / STUDY / rel)
    try:
        out = _sh(root, "snakemake", "-n")
        assert snakemake_plan(root) == plan
        line = next(ln for ln in out.splitlines() if said in ln)
        assert line.endswith(f": rerunning {job}") and "Traceback" not in out
    finally:
        _restore(root)
    assert snakemake_plan(root) == {}


@pytest.mark.workflow
def test_a_stage_folder_replaced_by_a_file_stops_with_a_message(clone):
    folder = clone / STUDY / "probe"
    shutil.rmtree(folder)
    folder.write_text("oops")
    try:
        r = subprocess.run(["snakemake", "-n"], cwd=clone, capture_output=True, text=True)
        out = r.stdout + r.stderr
        assert r.returncode != 0
        assert f"error: {STUDY}/probe is a file where the study keeps a results folder" in out
        assert "Traceback" not in out
    finally:
        _restore(clone)


@pytest.mark.workflow
def test_snakemake_refuses_to_start_while_dvc_runs(clone):
    f = _hold_dvc_lock(clone)
    try:
        r = subprocess.run(["snakemake", "-n"], cwd=clone, capture_output=True, text=True)
    finally:
        f.close()
    assert r.returncode != 0
    assert "DVC is running in this workspace" in r.stdout + r.stderr


@pytest.mark.workflow
def test_a_stage_started_by_dvc_refuses_while_snakemake_runs(clone):
    locks = clone / toollock.SNAKEMAKE_LOCKS
    locks.mkdir(parents=True, exist_ok=True)
    (locks / "0.input.lock").write_text("")
    f = _hold_dvc_lock(clone)
    try:
        r = subprocess.run(
            ["python", "-m", "stages.analyze", "--help"],
            cwd=clone,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(clone)},
        )
    finally:
        f.close()
        shutil.rmtree(locks)
    assert r.returncode == 2
    assert "error: Snakemake is running in this workspace" in r.stderr
