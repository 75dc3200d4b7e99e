"""Ensemble training: K runs trained together equal the same runs trained alone (to rounding),
write per-run checkpoints the normal loader reads, and resume bit-identically after SIGKILL."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conceptspace.model.checkpoints import checkpoint_path, load_checkpoint, load_model
from conceptspace.model.ensemble import (
    EnsembleTrainer,
    Member,
    StepMode,
    _check_same_mode,
    dropout_sites,
    train_ensemble,
)
from conceptspace.model.training import train
from conceptspace.model.unet import UNet, UNetConfig
from tests.squares import squares, tiny_config

ROOT = Path(__file__).resolve().parent.parent
# Attention, dropout and CFG dropout on: every random stream and the attention kernel are used.
NET = UNetConfig(image_size=8, channels=(8, 8), groups=4, attention=True, heads=2, time_dim=16)
CFG = tiny_config(steps=50)
CKPTS = [10, 25, 50]
SEEDS = (3, 4, 5)
FILES = [f"ckpt/{checkpoint_path(Path(), s).name}" for s in CKPTS]
FILES += ["log/train_log.csv", "log/checkpoints.csv"]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_data(i: int, n_train: int = 50) -> dict[str, np.ndarray]:
    """Member i gets its own images and its own number of validation images."""
    return squares(100 + i, n_train=n_train, n_val=10 + i)


def members(out: Path) -> list[Member]:
    return [
        Member(tiny_data(i), out / f"m{i}" / "ckpt", out / f"m{i}" / "log", s, f"m{i}")
        for i, s in enumerate(SEEDS)
    ]


def run_ensemble(out: Path, slow: bool = False) -> None:
    """Train the three members into out/m<i> (also the subprocess entry point)."""
    if slow:  # stretch each step so that the parent can kill the process mid-run
        step = EnsembleTrainer.step

        def slow_step(self):
            time.sleep(0.03)
            return step(self)

        EnsembleTrainer.step = slow_step
    train_ensemble(members(out), NET, CFG, ckpt_steps=CKPTS, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(ensemble outputs, lone outputs) of the same three runs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    ens, lone = tmp_path_factory.mktemp("ensemble"), tmp_path_factory.mktemp("lone")
    run_ensemble(ens)
    for m in members(lone):
        train(
            m.data,
            NET,
            CFG,
            ckpt_steps=CKPTS,
            ckpt_dir=m.ckpt_dir,
            log_dir=m.log_dir,
            seed=m.seed,
            progress=False,
        )
    torch.set_num_threads(n)
    return ens, lone


def _csv(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def test_dropout_mask_is_the_one_f_dropout_draws():
    """The premise of exactness on the CPU: F.dropout's mask is bernoulli_(1 - p) / (1 - p)
    drawn from the global generator; the same draw from a generator in that state equals it."""
    torch.manual_seed(11)
    x = torch.randn(4, 5, 3, 3)
    state = torch.get_rng_state()
    expected = F.dropout(x, 0.1, training=True)
    g = torch.Generator()
    g.set_state(state)
    mask = torch.empty(2, 4, 5, 3, 3)
    mask[1].bernoulli_(0.9, generator=g)
    assert torch.equal(x * mask[1].div_(0.9), expected)
    assert torch.equal(g.get_state(), torch.get_rng_state())  # the same number of draws


def test_dropout_sites_in_forward_order():
    net = UNet(NET)
    sites = dropout_sites(net)
    names = [s[0] for s in sites]
    blocks = [n.rsplit(".", 1)[0] for n in net.cond_projection_names()]
    assert names == [f"{b}.dropout" for b in blocks]  # one per ResNet block, in forward order
    assert sites[0][1:] == (0.1, (8, 8, 8)) and sites[1][2] == (8, 4, 4)


def test_members_equal_lone_runs_to_rounding(trained):
    ens, lone = trained
    for i in range(len(SEEDS)):
        for step in CKPTS:
            a = load_checkpoint(checkpoint_path(ens / f"m{i}" / "ckpt", step))
            b = load_checkpoint(checkpoint_path(lone / f"m{i}" / "ckpt", step))
            # One builder writes both: the same keys in the same order (so the same bytes).
            assert list(a) == list(b) and list(a["rng"]) == list(b["rng"])
            assert a["step"] == step and a["seed"] == SEEDS[i]
            assert a["net_config"] == b["net_config"] and a["train_config"] == b["train_config"]
            for part in ("net", "schedule"):
                assert list(a[part]) == list(b[part])
                for k in a[part]:
                    torch.testing.assert_close(a[part][k], b[part][k], rtol=1e-5, atol=1e-5)
            # Every random stream consumed exactly as the lone run consumed it.
            for k, v in b["rng"].items():
                same = torch.equal(a["rng"][k], v) if torch.is_tensor(v) else a["rng"][k] == v
                assert same, f"member {i} step {step}: rng[{k!r}] differs"
            oa, ob = a["optimizer"], b["optimizer"]
            assert oa["param_groups"] == ob["param_groups"] and set(oa["state"]) == set(ob["state"])
            for j, s in ob["state"].items():
                assert torch.equal(oa["state"][j]["step"], s["step"])
                for k in ("exp_avg", "exp_avg_sq"):
                    assert oa["state"][j][k].shape == s[k].shape
                    torch.testing.assert_close(oa["state"][j][k], s[k], rtol=1e-4, atol=1e-9)
        for name in ("train_log.csv", "checkpoints.csv"):
            a, b = _csv(ens / f"m{i}" / "log" / name), _csv(lone / f"m{i}" / "log" / name)
            assert a.shape == b.shape and np.array_equal(a[:, 0], b[:, 0])
            np.testing.assert_allclose(a[:, 1:], b[:, 1:], rtol=1e-5)
    # The members really are different runs.
    a0 = load_checkpoint(checkpoint_path(ens / "m0" / "ckpt", 50))["net"]
    a1 = load_checkpoint(checkpoint_path(ens / "m1" / "ckpt", 50))["net"]
    assert not torch.allclose(a0["conv_in.weight"], a1["conv_in.weight"])


def test_member_checkpoints_load_and_resume_as_lone_runs(trained, tmp_path):
    ens, lone = trained
    net, schedule, ckpt = load_model(checkpoint_path(ens / "m1" / "ckpt", 50))
    assert net.cfg == NET and not net.training and ckpt["step"] == 50
    # A lone run continues from a member's checkpoint as from its own.
    (tmp_path / "ckpt").mkdir()
    shutil.copy(checkpoint_path(ens / "m1" / "ckpt", 25), tmp_path / "ckpt")
    shutil.copytree(ens / "m1" / "log", tmp_path / "log")
    m = members(tmp_path)[1]
    train(
        m.data,
        NET,
        CFG,
        ckpt_steps=CKPTS,
        ckpt_dir=tmp_path / "ckpt",
        log_dir=tmp_path / "log",
        seed=m.seed,
        progress=False,
    )
    a = load_checkpoint(checkpoint_path(tmp_path / "ckpt", 50))
    b = load_checkpoint(checkpoint_path(lone / "m1" / "ckpt", 50))
    for k in b["net"]:
        torch.testing.assert_close(a["net"][k], b["net"][k], rtol=1e-5, atol=1e-5)


def test_resume_after_sigkill_is_bit_identical(trained, tmp_path):
    ens, _ = trained
    script = (
        "import sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from pathlib import Path\n"
        "from tests.test_ensemble import run_ensemble\n"
        "run_ensemble(Path(sys.argv[1]), slow=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, env=env)
    first = checkpoint_path(tmp_path / "m2" / "ckpt", CKPTS[0])
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not checkpoint_path(tmp_path / "m0" / "ckpt", CKPTS[-1]).exists()
    run_ensemble(tmp_path)
    for i in range(len(SEEDS)):
        for name in FILES:
            a, b = tmp_path / f"m{i}" / name, ens / f"m{i}" / name
            assert a.read_bytes() == b.read_bytes(), f"m{i}/{name}"
        assert sorted(os.listdir(tmp_path / f"m{i}" / "ckpt")) == sorted(
            os.listdir(ens / f"m{i}" / "ckpt")
        )


def test_resume_from_members_one_checkpoint_apart(trained, tmp_path):
    """A kill between two members' saves: the ensemble restarts from their common step."""
    ens, _ = trained
    shutil.copytree(ens, tmp_path, dirs_exist_ok=True)
    for i, keep in ((0, 25), (1, 10), (2, 25)):  # m1 lost steps 25 and 50, the others 50
        for s in CKPTS:
            if s > keep:
                checkpoint_path(tmp_path / f"m{i}" / "ckpt", s).unlink()
    torn = tmp_path / "m2" / "ckpt" / ".tmp-killed"  # a kill during a save leaves this
    torn.mkdir()
    (torn / "step_000050.pt").write_bytes(b"partial")
    run_ensemble(tmp_path)
    assert not torn.exists()
    for i in range(len(SEEDS)):
        for name in FILES:
            a, b = tmp_path / f"m{i}" / name, ens / f"m{i}" / name
            assert a.read_bytes() == b.read_bytes(), f"m{i}/{name}"


def test_finished_ensemble_returns_immediately(trained):
    ens, _ = trained
    files = sorted(p for p in ens.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    run_ensemble(ens)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before


def test_bad_groups_are_refused_before_work(trained, tmp_path):
    ens, _ = trained
    ms = members(tmp_path)
    odd = Member(tiny_data(9, n_train=40), tmp_path / "odd" / "ckpt", tmp_path / "odd" / "log", 1)
    with pytest.raises(ValueError, match="same number"):
        train_ensemble([ms[0], odd], NET, CFG, ckpt_steps=CKPTS, progress=False)
    twin = Member(ms[1].data, ms[0].ckpt_dir, tmp_path / "twin" / "log", 1)
    with pytest.raises(ValueError, match="its own checkpoint"):
        train_ensemble([ms[0], twin], NET, CFG, ckpt_steps=CKPTS, progress=False)
    with pytest.raises(ValueError, match="do not fit"):
        other = UNetConfig(image_size=16, channels=(8, 8), groups=4)
        train_ensemble(ms, other, CFG, ckpt_steps=CKPTS, progress=False)
    with pytest.raises(ValueError, match="end at steps"):
        train_ensemble(ms, NET, CFG, ckpt_steps=[10, 25], progress=False)
    # A member whose checkpoints come from other settings: refused, nothing written.
    shutil.copytree(ens / "m1" / "ckpt", ms[1].ckpt_dir)
    with pytest.raises(ValueError, match="lr"):
        cfg = replace(CFG, lr=5e-4)
        train_ensemble(ms, NET, cfg, ckpt_steps=CKPTS, progress=False)
    assert not (ms[0].log_dir / "train_log.csv").exists()
    assert not ms[0].ckpt_dir.exists() or not any(ms[0].ckpt_dir.iterdir())


def _stage(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_train_stage_trains_a_group(tiny_doc, tmp_path):
    doc = {**tiny_doc, "train": {**tiny_doc["train"], "ensemble": 2}}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(doc, sort_keys=False))
    runs = list(doc["runs"])
    group = []
    for r in runs:
        d = tmp_path / r
        syn = _stage(
            "stages.synthesize",
            "--params",
            str(params),
            "--run",
            r,
            "--seed",
            "0",
            "--dataset",
            str(d / "dataset.npz"),
            "--card",
            str(d / "card.json"),
            "--samples",
            str(d / "samples.png"),
        )
        assert syn.returncode == 0, syn.stderr[-2000:]
        group += [
            "--run",
            r,
            "--seed",
            "0",
            "--dataset",
            str(d / "dataset.npz"),
            "--ckpt-dir",
            str(d / "ckpt"),
            "--log-dir",
            str(d / "log"),
        ]
    ok = _stage("stages.train", "--params", str(params), *group)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "as one ensemble of 2" in ok.stderr
    last = doc["train"]["steps"]
    for r in runs:
        _, _, ckpt = load_model(checkpoint_path(tmp_path / r / "ckpt", last))
        assert ckpt["step"] == last and (tmp_path / r / "log" / "checkpoints.csv").is_file()
        assert not (tmp_path / r / "ckpt.partial").exists()

    # A group larger than train.ensemble, or options given unevenly: exit 2, one clear line.
    params.write_text(yaml.safe_dump(tiny_doc, sort_keys=False))
    big = _stage("stages.train", "--params", str(params), *group)
    assert big.returncode == 2 and "train.ensemble = 1" in big.stderr
    uneven = _stage("stages.train", "--params", str(params), *group[:-2])
    assert uneven.returncode == 2 and "once per run" in uneven.stderr
    twice = _stage("stages.train", "--params", str(params), *group[:10], *group[:10])
    assert twice.returncode == 2 and "twice" in twice.stderr


# ---- step modes (docs/scaling.md) ---------------------------------------------------------
def _trainer_after(mode, tmp_path: Path, steps: int = 9):
    """A trainer of the three members after ``steps`` steps (crossing two epoch ends, each
    with a partial batch: 50 images in batches of 16), and the stacked per-step stats."""
    torch.set_num_threads(1)
    trainer = EnsembleTrainer(members(tmp_path), NET, CFG, "cpu", mode)
    return trainer, torch.stack([trainer.step() for _ in range(steps)])


def test_static_step_equals_the_eager_step_bit_for_bit(tmp_path):
    """The graph-capturable formulation (draws copied into fixed buffers, the device half
    run on them, AdamW's fused kernel called directly) gives the default step's bits:
    the same losses and norms, parameters, AdamW state and random-stream states."""
    eager, stats_e = _trainer_after(None, tmp_path)
    static, stats_s = _trainer_after(StepMode(static=True), tmp_path)
    assert static._static is not None  # the buffers were used
    assert torch.equal(stats_e, stats_s)
    for name in eager.names:
        assert torch.equal(eager.params[name], static.params[name]), name
    sd_e, sd_s = eager.optimizer.state_dict()["state"], static.optimizer.state_dict()["state"]
    for i, s in sd_e.items():
        for key, v in s.items():
            assert torch.equal(v, sd_s[i][key]), (i, key)
    for j in range(eager.k):
        a, b = eager.checkpoint(j), static.checkpoint(j)
        assert "fast_mode" not in b
        for key in ("torch", "batch", "noise", "epoch_perm"):
            assert torch.equal(a["rng"][key], b["rng"][key]), key


def test_compute_draws_nothing(tmp_path):
    """compute() is a pure function of the drawn inputs: run twice from the same parameters
    and optimizer state on the same inputs, it gives the same bits, and no generator moves."""
    trainer = EnsembleTrainer(members(tmp_path), NET, CFG, "cpu", StepMode(static=True))
    trainer.step()  # AdamW's state exists from here on
    inputs = trainer.draw()
    gens = trainer.noise_gens + trainer.dropout_gens + trainer.batch_gens
    before = [g.get_state() for g in gens]
    params = {k: v.detach().clone() for k, v in trainer.params.items()}
    state = copy.deepcopy(trainer.optimizer.state_dict())
    first = trainer.compute(inputs).clone()
    after_one = {k: v.detach().clone() for k, v in trainer.params.items()}
    with torch.no_grad():
        for k, v in trainer.params.items():
            v.copy_(params[k])
    trainer.optimizer.load_state_dict(state)
    assert torch.equal(trainer.compute(inputs), first)
    assert all(torch.equal(trainer.params[k], after_one[k]) for k in params)
    assert all(torch.equal(a, g.get_state()) for a, g in zip(before, gens, strict=True))


@pytest.mark.parametrize(
    "mode", [StepMode(precision="bf16"), StepMode(channels_last=True, static=True)]
)
def test_fast_modes_train_close_and_say_so(mode, tmp_path):
    """bf16 autocast and channels-last train (finite, close to the default after 9 steps) and
    write ``fast_mode`` into each member's checkpoint; resuming across modes is refused."""
    eager, stats_e = _trainer_after(None, tmp_path)
    fast, stats_f = _trainer_after(mode, tmp_path / "fast")
    assert torch.isfinite(stats_f).all()
    torch.testing.assert_close(stats_f[:, 0], stats_e[:, 0], rtol=1e-2, atol=0)
    for name in eager.names:
        torch.testing.assert_close(fast.params[name], eager.params[name], rtol=0.05, atol=2e-3)
    ckpt = fast.checkpoint(0)
    assert ckpt["fast_mode"] == {
        "precision": mode.precision,
        "channels_last": mode.channels_last,
        "bitwise": False,
    }
    _check_same_mode(ckpt, mode, fast.members[0])  # the same mode resumes
    with pytest.raises(ValueError, match="fast_mode"):
        _check_same_mode(ckpt, StepMode(), fast.members[0])
    with pytest.raises(ValueError, match="fast_mode"):
        _check_same_mode(eager.checkpoint(0), mode, eager.members[0])


def test_bad_step_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="precision"):
        StepMode(precision="fp16")
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA device"):
        EnsembleTrainer(members(tmp_path), NET, CFG, "cpu", StepMode(cuda_graph=True))
    with pytest.raises(ValueError, match="at least 2 runs"):
        EnsembleTrainer(members(tmp_path)[:1], NET, CFG, "cpu", StepMode(channels_last=True))
