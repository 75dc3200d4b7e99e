"""Bad input never tracebacks and studies never collide: a study's name and folder come from its
own file (an empty, outside-the-repository or preset-shadowing name is refused by name, and a
dry run rewrites nothing); a non-UTF-8 or binary YAML file, a full disk while saving a
checkpoint, a diverging loss and a resumed run whose settings changed each end in one line that
names the file, run, seed or setting and says what to do (exit code 2), or, where that is safe,
in a fresh start."""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conceptspace import studies
from conceptspace.model.checkpoints import CheckpointError, atomic_torch_save
from conceptspace.params import ParamsError, read_yaml
from stages import study as study_stage
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- study names and folders ----------------------------------------------------------------
@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository root with params.yaml and two presets (no results yet)."""
    root = tmp_path / "repo"
    (root / "configs").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    (root / "configs" / "reference.yaml").write_text("train: {steps: 4000}\n")
    (root / "configs" / "guidance.yaml").write_text("train: {steps: 3000}\n")
    return root


@pytest.mark.parametrize("spec", ["", "  "])
def test_an_empty_study_name_is_refused(repo, spec):
    with pytest.raises(ParamsError, match="name is empty.*leave `study` out"):
        studies.resolve(spec, repo)


def test_snakemakes_empty_config_study_is_refused(repo):
    # `snakemake --config study=` gives {"study": None}: not the default study
    with pytest.raises(ParamsError, match="name is empty"):
        studies.from_config({"study": None})
    assert studies.from_config({}).name == studies.DEFAULT
    assert studies.from_config({"study": "guidance"}).name == "guidance"


def test_a_path_outside_the_repository_is_refused(repo, tmp_path):
    outside = tmp_path / "x.yaml"  # exists, beside the repository
    outside.write_text("train: {steps: 1000}\n")
    for spec in ("../x.yaml", str(outside), "configs/../../x.yaml"):
        with pytest.raises(ParamsError, match="outside the repository"):
            studies.resolve(spec, repo)
    with pytest.raises(ParamsError, match="not a preset name"):
        studies.resolve("../x", repo)


def test_a_user_overlay_named_like_a_preset_is_refused_and_writes_nothing(repo):
    (repo / "mine").mkdir()
    (repo / "mine" / "reference.yaml").write_text("train: {steps: 1000}\n")
    preset = studies.resolve("reference", repo)
    assert studies.materialize(preset)
    before = (repo / preset.params_file).read_bytes()
    with pytest.raises(ParamsError, match=r"preset configs/reference.yaml.*rename your file"):
        studies.resolve("mine/reference.yaml", repo)
    assert (repo / preset.params_file).read_bytes() == before
    assert studies.resolve("./configs/reference.yaml", repo).overlay == "configs/reference.yaml"


def test_two_overlays_of_one_name_do_not_share_a_folder(repo):
    for d in ("a", "b"):
        (repo / d).mkdir()
        (repo / d / "mine.yaml").write_text("train: {steps: 1000}\n")
    assert studies.materialize(studies.resolve("a/mine.yaml", repo))
    with pytest.raises(ParamsError, match=r"results/mine/ holds the study of another overlay"):
        studies.resolve("b/mine.yaml", repo)
    assert studies.resolve("a/mine.yaml", repo).dir == "results/mine"


def test_materialize_writes_only_a_changed_file_and_never_in_a_dry_run(repo):
    study = studies.resolve("guidance", repo)
    path = repo / study.params_file
    assert studies.materialize(study, dry_run=True) and not path.exists()
    assert studies.materialize(study) and path.is_file()
    stamp = path.stat().st_mtime_ns
    assert not studies.materialize(study) and not studies.materialize(study, dry_run=True)
    assert path.stat().st_mtime_ns == stamp
    (repo / "configs" / "guidance.yaml").write_text("train: {steps: 3500}\n")
    text = path.read_bytes()
    assert studies.materialize(study, dry_run=True)  # would change: reported, not written
    assert path.read_bytes() == text and path.stat().st_mtime_ns == stamp


def test_dvc_refuses_a_pipeline_file_made_for_other_seeds(repo, tiny_doc, monkeypatch):
    from conceptspace import pipeline

    def write_dvc(doc):
        dvc = pipeline.dvc_pipeline(doc, "results/default", "params.yaml")
        (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))

    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_doc, sort_keys=False))
    write_dvc({**tiny_doc, "seeds": [0, 1]})
    studies.load("params.yaml", repo)  # Snakemake (no DVC_STAGE) reads the params themselves
    monkeypatch.setenv("DVC_STAGE", "synthesize@c020-0")
    monkeypatch.setenv("DVC_ROOT", str(repo))
    with pytest.raises(
        ParamsError,
        match=r"dvc.yaml does not list the jobs of params.yaml.*"
        r"`python -m stages.study params.yaml`",
    ):
        studies.load("params.yaml", repo)
    write_dvc(tiny_doc)
    assert studies.load("params.yaml", repo)[1]["seeds"] == tiny_doc["seeds"]


def test_study_help_prints_help(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "stages.study", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "usage: python -m stages.study" in out.stdout
    assert not (ROOT / "configs" / "--help.yaml").exists()


def test_study_stage_refuses_bad_names_in_one_line(capsys):
    for spec, msg in (("", "name is empty"), ("../../tmp/x.yaml", "outside the repository")):
        assert study_stage.main([spec]) == 2
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err


# ---- unreadable params files ------------------------------------------------------------------
def test_a_non_utf8_byte_names_file_and_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_bytes((ROOT / "params.yaml").read_bytes() + b"# caf\xe9\n")
    n = bad.read_bytes().count(b"\n")
    with pytest.raises(
        ParamsError,
        match=rf"{re.escape(str(bad))}: byte 0xe9 at line {n}, .*save the file as UTF-8",
    ):
        read_yaml(bad)


def test_a_binary_overlay_is_refused_by_both_tools(repo, capsys, monkeypatch):
    (repo / "configs" / "blob.yaml").write_bytes(bytes(range(256)) * 4)
    study = studies.resolve("blob", repo)  # Snakemake: resolve, materialize, document
    with pytest.raises(ParamsError, match="configs/blob.yaml: a binary file, not YAML text"):
        studies.materialize(study)
    monkeypatch.chdir(repo)  # the DVC side: python -m stages.study FILE
    assert study_stage.main(["configs/blob.yaml"]) == 2
    err = capsys.readouterr().err
    assert "configs/blob.yaml: a binary file" in err and "Traceback" not in err


def test_a_stage_given_non_utf8_params_exits_2_naming_the_file(tmp_path, tiny_doc, capsys):
    from stages import synthesize

    params = tmp_path / "params.yaml"
    params.write_bytes(yaml.safe_dump(tiny_doc).encode() + b"# \xff\n")
    code = synthesize.main(
        ["--params", str(params), "--run", "c020", "--seed", "0", "--dataset", "d.npz"]
        + ["--card", str(tmp_path / "c.json"), "--samples", str(tmp_path / "s.png")]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"{params}: byte 0xff" in err and "Traceback" not in err


# ---- checkpoints: a full disk -------------------------------------------------------------
@pytest.mark.parametrize(
    "failure",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4480 vs 4374"),
    ],
)
def test_a_full_disk_while_saving_leaves_nothing_half_written(tmp_path, monkeypatch, failure):
    def full_disk(obj, f):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise failure

    monkeypatch.setattr(torch, "save", full_disk)
    target = tmp_path / "ckpt" / "step_000010.pt"
    with pytest.raises(
        CheckpointError, match=rf"{re.escape(str(target))}: cannot be written.*free disk space"
    ):
        atomic_torch_save({"step": 10}, target)
    assert list((tmp_path / "ckpt").iterdir()) == []


# ---- the train stage: diverging loss, full disk, changed settings -------------------------
def _tiny(tmp_path: Path, tiny_doc: dict, **train) -> Path:
    doc = {**tiny_doc, "train": {**tiny_doc["train"], **train}}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(doc, sort_keys=False))
    return params


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny_doc) -> Path:
    from stages import synthesize

    d = tmp_path_factory.mktemp("data")
    params = _tiny(d, tiny_doc)
    code = synthesize.main(
        ["--params", str(params), "--run", "c020", "--seed", "0", "--dataset"]
        + [str(d / "dataset.npz"), "--card", str(d / "card.json"), "--samples", str(d / "s.png")]
    )
    assert code == 0
    return d / "dataset.npz"


def _train(params: Path, dataset: Path, out: Path) -> int:
    from stages import train

    return train.main(
        ["--params", str(params), "--run", "c020", "--seed", "0", "--dataset", str(dataset)]
        + ["--ckpt-dir", str(out / "ckpt"), "--log-dir", str(out / "log")]
    )


def test_a_diverging_loss_names_run_seed_and_step(tmp_path, tiny_doc, dataset, capsys):
    params = _tiny(tmp_path, tiny_doc, weight_decay=1.0e30)
    assert _train(params, dataset, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "run c020 seed 0" in err and "at step " in err and "train.weight_decay" in err


@pytest.mark.parametrize("saved", [0, 1])
def test_a_full_disk_in_the_train_stage_exits_2(
    tmp_path, tiny_doc, dataset, monkeypatch, capsys, saved
):
    """The disk fills at the first checkpoint (nothing to resume: no .partial is left) or at the
    second (the work folder is kept and named, and a rerun resumes from it)."""
    real_save, calls = torch.save, []

    def full_disk(obj, f):
        calls.append(f)
        if len(calls) <= saved:
            return real_save(obj, f)
        Path(f).write_bytes(b"PK half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "out"
    assert _train(_tiny(tmp_path, tiny_doc), dataset, out) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "free disk space" in err
    assert "Traceback" not in err and "run c020 seed 0" in err
    left = [p.name for p in out.rglob("*") if p.is_file()]
    assert not [n for n in left if n.startswith(".tmp-")], left
    partial = out / "ckpt.partial"
    if saved:
        assert f"{partial} (up to step_000010)" in err
        assert [p.name for p in (partial / "ckpt").iterdir()] == ["step_000010.pt"]
    else:
        assert "nothing half-written was kept" in err and not partial.exists()
    monkeypatch.setattr(torch, "save", real_save)
    assert _train(_tiny(tmp_path, tiny_doc), dataset, out) == 0  # free space, run again


def test_a_killed_run_resumed_with_another_lr_starts_afresh(tmp_path, tiny_doc, dataset, capsys):
    out = tmp_path / "out"
    assert _train(_tiny(tmp_path, tiny_doc), dataset, out) == 0
    # a run killed after its second checkpoint: its work folder, as the stage leaves it
    work = out / "ckpt.partial"
    shutil.copytree(out / "ckpt", work / "ckpt")
    shutil.copytree(out / "log", work / "log")
    (work / "ckpt" / "step_000030.pt").unlink()
    capsys.readouterr()
    fresh = tmp_path / "fresh"
    other = _tiny(tmp_path, tiny_doc, lr=0.002)
    assert _train(other, dataset, out) == 0
    err = capsys.readouterr().err
    assert f"{work} cannot be resumed" in err and "lr 0.001 -> 0.002" in err
    assert not work.exists()
    assert _train(other, dataset, fresh) == 0  # the same bytes as a run never interrupted
    for name in ("ckpt/step_000030.pt", "log/train_log.csv", "log/checkpoints.csv"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name


def test_the_library_names_the_folder_to_remove(tmp_path, tiny_doc, dataset):
    from conceptspace.data.dataset import load_dataset, split_arrays
    from conceptspace.model.training import ResumeError, TrainConfig, train
    from conceptspace.model.unet import UNetConfig

    data = split_arrays(load_dataset(dataset))
    net = UNetConfig(image_size=8, channels=(8, 8), groups=4)
    ckpt = tmp_path / "ckpt"
    for lr, steps in ((1e-3, [5]), (2e-3, [5, 10])):
        cfg = TrainConfig(
            steps=steps[-1],
            batch_size=16,
            lr=lr,
            weight_decay=0.01,
            grad_clip=0.01,
            p_uncond=0.0,
            ema=0.0,
        )
        run = dict(ckpt_steps=steps, ckpt_dir=ckpt, log_dir=tmp_path / "log", seed=0)
        if lr == 1e-3:
            train(data, net, cfg, **run, progress=False)
            continue
        with pytest.raises(
            ResumeError, match=rf"step 5 in {re.escape(str(ckpt))}: .*lr 0.001 -> 0.002.*remove"
        ):
            train(data, net, cfg, **run, progress=False)


def test_a_checkpoint_folder_replaced_by_a_file_is_rebuilt(tmp_path, tiny_doc, dataset, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "ckpt").write_text("not a folder\n")
    assert _train(_tiny(tmp_path, tiny_doc), dataset, out) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (out / "ckpt" / "step_000030.pt").is_file()


@pytest.mark.workflow
def test_a_snakemake_dry_run_writes_no_study_params(tmp_path, tiny_doc):
    from tests.conftest import copy_project

    root = copy_project(tmp_path / "repo", tiny_doc)
    (root / "configs" / "zz.yaml").write_text("train: {steps: 20}\n")
    (root / "mine").mkdir(exist_ok=True)
    (root / "mine" / "reference.yaml").write_text("train: {steps: 20}\n")

    def dry(study: str) -> subprocess.CompletedProcess:
        cmd = ["snakemake", "-n", "--config", f"study={study}"]
        return subprocess.run(cmd, cwd=root, capture_output=True, text=True)

    out = dry("zz")
    assert out.returncode == 0, out.stderr
    assert not (root / "results" / "zz").exists()
    out = dry("mine/reference.yaml")
    assert out.returncode != 0 and "rename your file" in out.stderr
    assert not (root / "results" / "reference").exists()


def test_a_full_disk_while_writing_an_artifact_names_it(tmp_path, monkeypatch):
    from conceptspace.io import ArtifactError, write_json

    def full_disk(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    target = tmp_path / "job" / "metrics.json"
    with pytest.raises(ArtifactError, match=rf"{re.escape(str(target))}: cannot be written"):
        write_json(target, {"a": 1})
    assert list((tmp_path / "job").iterdir()) == []
