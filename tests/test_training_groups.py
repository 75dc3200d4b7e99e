"""Training groups (``train.ensemble`` > 1) in both tools' DAGs: how a study's training jobs
are cut into groups, a group's command and its members' provenance records, the generated DVC
stages, and Snakemake planning, running and replanning a tiny study trained in groups of two
(conceptspace/pipeline.py, "Training groups")."""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conceptspace import pipeline, provenance, staleness, studies
from conceptspace.model.checkpoints import checkpoint_path, load_model
from conceptspace.params import ParamsError, validate
from stages import common
from stages.train import arg_parser, group_args
from tests.conftest import copy_project

OVERLAY = "grouped.yaml"  # the tiny grouped study as an overlay over the tiny params
STUDY = "results/grouped"
DVC_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # dvc.stage.INVALID_STAGENAME_CHARS: punctuation


def _doc(base: dict, ensemble: int | None, runs=("a", "b", "c"), seeds=(0, 1)) -> dict:
    doc = copy.deepcopy(base)
    doc["runs"] = {r: {"color": 0.1 + 0.1 * i, "size": 0.4} for i, r in enumerate(runs)}
    doc["seeds"] = list(seeds)
    doc["train"].pop("ensemble", None)
    if ensemble is not None:
        doc["train"]["ensemble"] = ensemble
    return doc


# ---- grouping -----------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 4, 5, 6, 7])
def test_groups_cut_the_training_jobs_in_order(tiny_doc, k):
    doc = _doc(tiny_doc, k)  # 3 runs x 2 seeds = 6 jobs
    jobs = pipeline.jobs(doc, "train")
    groups = pipeline.train_groups(doc)
    assert len(groups) == math.ceil(len(jobs) / k)
    assert [m for g in groups for m in g.members] == jobs  # every job once, in job order
    assert all(len(g.members) == k for g in groups[:-1])
    assert 1 <= len(groups[-1].members) <= k
    assert [g.id for g in groups] == [f"g{i}" for i in range(len(groups))]
    assert [g.name for g in groups] == [f"train_g{i}" for i in range(len(groups))]
    assert pipeline.grouped(doc) == (k > 1)


def test_last_group_is_smaller(tiny_doc):
    groups = pipeline.train_groups(_doc(tiny_doc, 4))
    assert [g.members for g in groups] == [
        (("a", 0), ("a", 1), ("b", 0), ("b", 1)),
        (("c", 0), ("c", 1)),
    ]


def test_ensemble_one_or_absent_is_one_group_per_job(tiny_doc):
    for doc in (_doc(tiny_doc, 1), _doc(tiny_doc, None)):
        groups = pipeline.train_groups(doc)
        assert [g.members for g in groups] == [(j,) for j in pipeline.jobs(doc, "train")]
        assert not pipeline.grouped(doc)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True, None])
def test_bad_ensemble_is_refused_by_name(tiny_doc, bad):
    doc = _doc(tiny_doc, 2)
    doc["train"]["ensemble"] = bad
    with pytest.raises(ParamsError, match="train.ensemble"):
        pipeline.train_groups(doc)


def test_group_ids_are_wildcard_values_and_dvc_stage_names(tiny_doc):
    doc = _doc(tiny_doc, 2, runs=[f"r{i:02d}" for i in range(12)])  # 24 jobs, 12 groups
    groups = pipeline.train_groups(doc)
    assert len({g.id for g in groups}) == len({g.name for g in groups}) == len(groups) == 12
    for g in groups:
        assert DVC_NAME.match(g.name) and g.name.isidentifier()  # a DVC stage, a Snakemake rule
        assert re.fullmatch(r"\w+", g.id)  # a wildcard value and a file name


def test_group_params_are_every_members_train_keys_once(tiny_doc):
    doc = _doc(tiny_doc, 2)
    first, second = pipeline.train_groups(doc)[:2]
    assert pipeline.group_params(first) == ["runs.a", "grid", "train"]  # a seed 0 and 1
    assert pipeline.group_params(second) == ["runs.b", "grid", "train"]
    three = pipeline.train_groups(_doc(tiny_doc, 3, seeds=[0]))[0]
    assert pipeline.group_params(three) == ["runs.a", "runs.b", "runs.c", "grid", "train"]


# ---- the group's command and its members' records -----------------------------------------
def test_group_of_one_has_the_lone_jobs_command():
    lone = pipeline.command("train", "results/x", "p.yaml", "${item.run}", "${item.seed}")
    group = pipeline.train_command("results/x", "p.yaml", [("${item.run}", "${item.seed}")])
    assert group == lone


def test_group_command_gives_each_member_its_paths():
    members = [("c020", 0), ("c050", 1)]
    cmd = pipeline.train_command("results/x", "p.yaml", members).split()
    assert cmd[:5] == ["python", "-m", "stages.train", "--params", "p.yaml"]
    args = arg_parser().parse_args(cmd[3:])
    jobs = [pipeline.job_dir("results/x", "train", r, s) for r, s in members]
    syn = [pipeline.job_dir("results/x", "synthesize", r, s) for r, s in members]
    assert args.runs == ["c020", "c050"] and args.seeds == [0, 1]
    assert args.dataset == [f"{d}/dataset.npz" for d in syn]
    assert args.ckpt_dir == [f"{j}/ckpt" for j in jobs]
    assert args.log_dir == [f"{j}/log" for j in jobs]
    assert args.provenance == [f"{j}/{pipeline.RECORD}" for j in jobs]


def test_train_stage_refuses_provenance_not_given_once_per_run(grouped_doc):
    params = validate(grouped_doc)
    members = [("c020", 0), ("c050", 0)]
    argv = pipeline.train_command("r", "p.yaml", members).split()[3:]
    group_args(arg_parser().parse_args(argv), params, grouped_doc)  # well formed
    with pytest.raises(ParamsError, match="--provenance once per run"):
        # the last --provenance dropped
        group_args(arg_parser().parse_args(argv[:-2]), params, grouped_doc)


def test_a_job_that_writes_records_trains_one_of_the_studys_groups(grouped_doc):
    """A pipeline file cut for another train.ensemble (a lone run of a grouped study, or
    partners other than its group's) is refused before any work: the records would name a
    batched model the run was not trained in. Without records, any group up to K trains."""
    params = validate(grouped_doc)
    g0 = pipeline.train_groups(grouped_doc)[0]
    for members in ([g0.members[0]], list(reversed(g0.members))):
        argv = pipeline.train_command("r", "p.yaml", members).split()[3:]
        with pytest.raises(ParamsError, match=r"train_g0 .*python -m stages.study"):
            group_args(arg_parser().parse_args(argv), params, grouped_doc)
        no_records = [a for i, a in enumerate(argv) if "--provenance" not in argv[i - 1 : i + 1]]
        group_args(arg_parser().parse_args(no_records), params, grouped_doc)


def test_a_members_record_names_its_group(grouped_doc, tiny_doc):
    """A member's checkpoints depend on the batched model it was trained in, so its key
    does: the group is in the record when grouped, and absent for lone runs."""
    g0 = pipeline.train_groups(grouped_doc)[0]
    run, seed = g0.members[0]
    rec = pipeline.job_record(grouped_doc, "train", run, seed)
    assert rec["group"] == [f"{r}/seed{s}" for r, s in g0.members]
    assert "group" not in pipeline.job_record(
        tiny_doc, "train", *pipeline.jobs(tiny_doc, "train")[0]
    )
    # the same run and params with other partners: another key
    other = copy.deepcopy(grouped_doc)
    other["runs"] = {
        run: other["runs"][run],
        **{r: v for r, v in other["runs"].items() if r != run},
    }
    other["runs"] = dict(reversed(list(other["runs"].items())))
    partners = pipeline.group_of(other, run, seed).members
    assert partners != g0.members
    assert pipeline.stage_params(other, "train", run) == rec["params"]
    assert pipeline.job_record(other, "train", run, seed)["key"] != rec["key"]


def test_each_member_writes_its_own_record(grouped_doc, tmp_path):
    """conceptspace/provenance.py writes one record per member (as stages/common.py reads them
    from the command line), the one a lone job of that run writes; lone jobs and per-study jobs
    are unchanged."""
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    group = argparse.Namespace(
        runs=["c020", "c050"], seeds=[0, 0], provenance=list(map(str, paths))
    )
    lone = argparse.Namespace(run="c080", seed=0, provenance=str(tmp_path / "lone.json"))
    study = argparse.Namespace(provenance=str(tmp_path / "study.json"))
    provenance.write_records("train", grouped_doc, common.records(group) + common.records(lone))
    provenance.write_records("analyze", grouped_doc, common.records(study))

    def read(path):  # the record beside its file checksums (conceptspace/staleness.py)
        record = json.loads(Path(path).read_text())
        assert isinstance(record.pop(staleness.FILES), dict)
        return record

    for (run, seed), path in zip([("c020", 0), ("c050", 0)], paths, strict=True):
        assert read(path) == pipeline.job_record(grouped_doc, "train", run, seed)
    assert read(lone.provenance) == pipeline.job_record(grouped_doc, "train", "c080", 0)
    assert read(study.provenance) == pipeline.job_record(grouped_doc, "analyze")


# ---- the generated DVC pipeline -----------------------------------------------------------
def test_dvc_pipeline_has_one_stage_per_group(grouped_doc):
    dvc = pipeline.dvc_pipeline(grouped_doc, STUDY, f"{STUDY}/params.yaml", wdir="../..")
    stages = dvc["stages"]
    assert list(stages) == [
        "synthesize",
        "fit_classifier",
        "train_g0",
        "train_g1",
        "probe",
        "intervene",
        "analyze",
    ]
    assert all(DVC_NAME.match(name) for name in stages)
    g0 = stages["train_g0"]
    members = [("c020", 0), ("c050", 0)]
    jobs = [pipeline.job_dir(STUDY, "train", r, s) for r, s in members]
    assert "matrix" not in g0 and g0["wdir"] == "../.."
    assert g0["cmd"] == pipeline.train_command(STUDY, f"{STUDY}/params.yaml", members)
    datasets = [f"{pipeline.job_dir(STUDY, 'synthesize', r, s)}/dataset.npz" for r, s in members]
    assert g0["deps"] == list(pipeline.code_closure("train")) + datasets
    assert g0["params"] == [{f"{STUDY}/params.yaml": ["runs.c020", "runs.c050", "grid", "train"]}]
    assert g0["outs"] == [
        o
        for j in jobs
        for o in (f"{j}/ckpt", f"{j}/log", {f"{j}/{pipeline.RECORD}": {"cache": False}})
    ]
    assert stages["train_g1"]["params"] == [
        {f"{STUDY}/params.yaml": ["runs.c080", "grid", "train"]}
    ]
    # the other stages are those of an ungrouped study
    lone = pipeline.dvc_pipeline(
        {**grouped_doc, "train": {**grouped_doc["train"], "ensemble": 1}},
        STUDY,
        f"{STUDY}/params.yaml",
        wdir="../..",
    )["stages"]
    assert "train" in lone and "matrix" in lone["train"]
    assert {k: v for k, v in stages.items() if not k.startswith("train")} == {
        k: v for k, v in lone.items() if k != "train"
    }


# ---- both tools on a tiny grouped study ---------------------------------------------------
def _sh(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout + r.stderr


def snakemake_plan(root: Path) -> dict[str, int]:
    """Jobs per rule that ``snakemake -n`` plans for the grouped study ({} when none)."""
    out = _sh(root, "snakemake", "-n", "--config", f"study={OVERLAY}")
    if "Nothing to be done" in out:
        return {}
    stats = out.split("Job stats:")[1].split("total")[0]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", stats, re.M))
    return {k: int(v) for k, v in jobs.items() if k != "all"}


def grouped_project(dest: Path, tiny_doc: dict, grouped_doc: dict) -> Path:
    """A copy of the project on tiny params with the grouped study as an overlay file."""
    root = copy_project(dest, tiny_doc)
    overlay = studies.overlay_of(tiny_doc, grouped_doc)
    assert overlay["train"] == {"ensemble": 2}
    (root / OVERLAY).write_text(yaml.safe_dump(overlay, sort_keys=False))
    return root


def _commit(root: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "results"]):
        subprocess.run(cmd, cwd=root, check=True, env=env, capture_output=True)


FULL_PLAN = {
    "synthesize": 3,
    "fit_classifier": 1,
    "train_g0": 1,  # c020 and c050
    "train_g1": 1,  # c080
    "probe": 3,
    "intervene": 3,
    "analyze": 1,
}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, tiny_doc, grouped_doc):
    return grouped_project(tmp_path_factory.mktemp("fresh"), tiny_doc, grouped_doc)


@pytest.mark.workflow
def test_snakemake_plans_one_train_job_per_group(fresh):
    assert snakemake_plan(fresh) == FULL_PLAN


@pytest.mark.workflow
def test_generated_dvc_yaml_has_the_group_stages(fresh):
    _sh(fresh, "python", "-m", "stages.study", OVERLAY)
    text = (fresh / STUDY / "dvc.yaml").read_text()
    assert "# train.ensemble = 2: one train stage per group" in text
    stages = yaml.safe_load(text)["stages"]
    assert {"train_g0", "train_g1"} <= set(stages) and "train" not in stages
    dry = _sh(fresh, "dvc", "repro", "--dry", "-f", f"{STUDY}/dvc.yaml")
    ran = re.findall(rf"Running stage '{STUDY}/dvc.yaml:([\w@-]+)'", dry)
    assert dict(collections.Counter(name.split("@")[0] for name in ran)) == FULL_PLAN


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_doc, grouped_doc):
    """The grouped study run by Snakemake, committed, and cloned: results without metadata."""
    root = grouped_project(tmp_path_factory.mktemp("trained"), tiny_doc, grouped_doc)
    _sh(root, "snakemake", "-j", "2", "--config", f"study={OVERLAY}")
    return root


@pytest.mark.workflow
@pytest.mark.slow
def test_every_member_is_trained_in_its_group_with_its_own_record(trained, grouped_doc):
    g0 = (trained / "logs" / "grouped" / "train" / "g0.log").read_text()
    assert "train c020 seed 0, c050 seed 0 as one ensemble of 2" in g0
    doc = studies.resolve(OVERLAY, trained).document()
    assert doc == grouped_doc
    steps = validate(doc).checkpoint_steps()
    for run, seed in pipeline.jobs(doc, "train"):
        job = trained / pipeline.job_dir(STUDY, "train", run, seed)
        assert sorted(p.name for p in (job / "ckpt").glob("step_*.pt")) == [
            checkpoint_path(Path(), s).name for s in steps
        ]
        _, _, ckpt = load_model(checkpoint_path(job / "ckpt", steps[-1]))
        assert ckpt["step"] == steps[-1]
        assert (job / "log" / "checkpoints.csv").is_file()
        record = json.loads((job / pipeline.RECORD).read_text())
        assert record.pop(staleness.FILES) == staleness.written_files(job)
        assert record == pipeline.job_record(doc, "train", run, seed, trained)


@pytest.fixture(scope="module")
def clone(trained, tmp_path_factory):
    assert snakemake_plan(trained) == {}
    _commit(trained)
    dest = tmp_path_factory.mktemp("clone") / "c"
    subprocess.run(["git", "clone", "-q", str(trained), str(dest)], check=True)
    return dest


@pytest.mark.workflow
@pytest.mark.slow
def test_nothing_to_do_after_the_run_even_in_a_fresh_clone(clone):
    assert snakemake_plan(clone) == {}


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.parametrize(("run", "group"), [("c050", "train_g0"), ("c080", "train_g1")])
def test_moving_one_member_replans_its_group_only(clone, run, group):
    path = clone / OVERLAY
    overlay = yaml.safe_load(path.read_text())
    overlay["runs"][run]["color"] = 0.3
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    try:
        # fit_classifier reads every run, so every run's evaluations follow it
        expected = {**FULL_PLAN, "synthesize": 1, "train_g0": 0, "train_g1": 0, group: 1}
        assert snakemake_plan(clone) == {k: v for k, v in expected.items() if v}
    finally:
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=clone, check=True)
    assert snakemake_plan(clone) == {}


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.parametrize("run", ["c020", "c050", "c080"])
def test_a_stale_member_record_reruns_its_group(clone, grouped_doc, run):
    """Only the stamp can see this (no input changed): one member's recorded key is not
    today's, so its whole group reruns, and the evaluations of the group's runs after it."""
    record = clone / pipeline.job_dir(STUDY, "train", run, 0) / pipeline.RECORD
    record.write_text(json.dumps({**json.loads(record.read_text()), "key": "stale"}))
    group = next(g for g in pipeline.train_groups(grouped_doc) if (run, 0) in g.members)
    n = len(group.members)
    try:
        expected = {group.name: 1, "probe": n, "intervene": n, "analyze": 1}
        assert snakemake_plan(clone) == expected
    finally:
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=clone, check=True)
    assert snakemake_plan(clone) == {}
