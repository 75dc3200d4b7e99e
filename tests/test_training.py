"""Checkpoint schedule, checkpoint files, and training that resumes bit-identically."""

import os
import re
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

from conceptspace.model.checkpoints import (
    CheckpointError,
    atomic_torch_save,
    checkpoint_path,
    load_checkpoint,
    load_model,
)
from conceptspace.model.training import TrainConfig, train
from conceptspace.model.unet import UNetConfig
from conceptspace.params import load_params
from conceptspace.sections import checkpoint_steps
from tests.squares import squares, tiny_config

ROOT = Path(__file__).resolve().parent.parent
NET = UNetConfig(image_size=8, channels=(8, 8), groups=4)
CFG = tiny_config()
CKPTS = [10, 20, 30, 40]
SEED = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_data() -> dict[str, np.ndarray]:
    return squares(0)


def run_tiny(out: Path, slow: bool = False) -> None:
    """Train the tiny run into out/ckpt and out/log (the subprocess entry point too)."""
    if slow:  # stretch each step so the parent can kill the process mid-run
        import conceptspace.model.training as training

        loss = training.vdm_loss

        def slow_loss(*args, **kwargs):
            time.sleep(0.03)
            return loss(*args, **kwargs)

        training.vdm_loss = slow_loss
    train(
        tiny_data(),
        NET,
        CFG,
        ckpt_steps=CKPTS,
        ckpt_dir=out / "ckpt",
        log_dir=out / "log",
        seed=SEED,
        progress=False,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    run_tiny(out)
    torch.set_num_threads(n)
    return out


def test_checkpoint_steps_known_values():
    steps = checkpoint_steps(500, 20000, 60)
    assert len(steps) == 60
    assert steps[:6] == [500, 594, 696, 807, 926, 1053]
    assert steps[-4:] == [18324, 18874, 19433, 20000]
    assert checkpoint_steps(1, 5, 20) == [1, 2, 3, 4, 5]  # de-duplicated, sorted
    assert checkpoint_steps(50, 50, 3) == [50]
    with pytest.raises(ValueError):
        checkpoint_steps(100, 10, 5)


def test_train_config_validation():
    """The train section's ranges hold for a config built without params: one statement of
    each (conceptspace/sections.py)."""
    with pytest.raises(ValueError, match=r"train\.steps = 0"):
        replace(CFG, steps=0)
    with pytest.raises(ValueError, match=r"train\.p_uncond = 1\.0"):
        replace(CFG, p_uncond=1.0)
    with pytest.raises(ValueError, match=r"train\.lr = 2\.0"):
        replace(CFG, lr=2.0)
    with pytest.raises(ValueError, match="log_every"):
        replace(CFG, log_every=0)
    assert replace(CFG, grad_clip=None).grad_clip is None  # no clip
    with pytest.raises(TypeError):  # no default for a setting of the train section
        TrainConfig(steps=10)


def test_train_config_of_the_section():
    """The library takes the train section itself; grad_clip 0 disables the clip."""
    params = load_params(ROOT / "params.yaml")
    cfg = TrainConfig.from_section(params.train)
    for name in ("steps", "batch_size", "lr", "weight_decay", "grad_clip", "p_uncond"):
        assert getattr(cfg, name) == getattr(params.train, name), name
    zero = params.train.model_copy(update={"grad_clip": 0.0})
    assert TrainConfig.from_section(zero).grad_clip is None


def test_outputs_of_a_run(uninterrupted):
    ckpts = sorted(p.name for p in (uninterrupted / "ckpt").iterdir())
    assert ckpts == [checkpoint_path(Path(), s).name for s in CKPTS]
    train_log = (uninterrupted / "log" / "train_log.csv").read_text().splitlines()
    assert train_log[0] == "step,loss,grad_norm"
    assert [int(r.split(",")[0]) for r in train_log[1:]] == list(range(1, CFG.steps + 1))
    ckpt_log = (uninterrupted / "log" / "checkpoints.csv").read_text().splitlines()
    assert ckpt_log[0] == "step,train_loss,val_loss,held_out_loss"
    rows = [[float(v) for v in r.split(",")] for r in ckpt_log[1:]]
    assert [int(r[0]) for r in rows] == CKPTS
    assert all(np.isfinite(r).all() for r in rows)
    # train_loss is the mean of the per-step losses since the previous checkpoint.
    losses = [float(r.split(",")[1]) for r in train_log[1:]]
    assert rows[1][1] == pytest.approx(np.mean(losses[10:20]), abs=1e-5)


def test_checkpoint_contents_and_load_model(uninterrupted):
    path = checkpoint_path(uninterrupted / "ckpt", 40)
    ckpt = load_checkpoint(path)  # weights_only=True
    assert ckpt["format"] == "conceptspace.ckpt.v1" and ckpt["step"] == 40
    assert ckpt["net_config"] == NET.to_dict() and ckpt["seed"] == SEED
    assert set(ckpt["rng"]) >= {"torch", "batch", "noise", "epoch_perm", "perm_pos"}
    net, schedule, loaded = load_model(path)
    assert net.cfg == NET and not net.training and loaded["step"] == 40
    # evaluation loads the weight average (docs/method.md §3.3); the raw weights resume
    for k, v in net.state_dict().items():
        assert torch.equal(v, ckpt["ema"]["net"][k])
    assert torch.equal(schedule.b.detach(), ckpt["ema"]["schedule"]["b"])
    assert not all(torch.equal(ckpt["ema"]["net"][k], v) for k, v in ckpt["net"].items())


def test_the_weight_average_leaves_the_raw_trajectory_alone(tmp_path, uninterrupted):
    """Training with and without the average takes the same steps: the average is read only
    by evaluation, and the raw weights of every checkpoint are the same bits."""
    raw = tmp_path / "raw"
    train(tiny_data(), NET, replace(CFG, ema=0.0), ckpt_steps=CKPTS, ckpt_dir=raw / "ckpt",
          log_dir=raw / "log", seed=SEED, progress=False)  # fmt: skip
    a = load_checkpoint(checkpoint_path(raw / "ckpt", 40))
    b = load_checkpoint(checkpoint_path(uninterrupted / "ckpt", 40))
    assert "ema" not in a
    for k, v in a["net"].items():
        assert torch.equal(v, b["net"][k])
    net, _, _ = load_model(checkpoint_path(raw / "ckpt", 40))
    for k, v in net.state_dict().items():
        assert torch.equal(v, a["net"][k])


def test_finished_run_returns_immediately(uninterrupted):
    files = sorted((uninterrupted / "ckpt").iterdir()) + sorted((uninterrupted / "log").iterdir())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    run_tiny(uninterrupted)
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before


def test_resume_after_sigkill_is_bit_identical(uninterrupted, tmp_path):
    script = (
        "import sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from pathlib import Path\n"
        "from tests.test_training import run_tiny\n"
        "run_tiny(Path(sys.argv[1]), slow=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, env=env)
    first = checkpoint_path(tmp_path / "ckpt", CKPTS[0])
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert first.exists() and not checkpoint_path(tmp_path / "ckpt", CKPTS[-1]).exists()

    stray = tmp_path / "ckpt" / ".tmp-killed"  # what a kill during a save leaves behind
    stray.mkdir(exist_ok=True)
    (stray / "step_000020.pt").write_bytes(b"partial")
    run_tiny(tmp_path)  # resumes from the last complete checkpoint
    assert not stray.exists()
    for name in ("ckpt/step_000040.pt", "log/train_log.csv", "log/checkpoints.csv"):
        assert (tmp_path / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == sorted(
        p.name for p in (uninterrupted / "ckpt").iterdir()
    )


def _state_bytes(x) -> list[bytes]:
    """Every tensor and value of a checkpoint entry, in a fixed order, as bytes."""
    if torch.is_tensor(x):
        return [x.detach().cpu().numpy().tobytes()]
    if isinstance(x, dict):
        return [b for k in sorted(x, key=str) for b in _state_bytes(x[k])]
    if isinstance(x, list | tuple):
        return [b for v in x for b in _state_bytes(v)]
    return [repr(x).encode()]


def test_budget_and_checkpoint_schedule_do_not_change_the_run(uninterrupted, tmp_path):
    """A longer budget with other checkpoints (configs/long_budget.yaml against the default)
    trains the same run: at a step both save, weights, average, optimizer and random streams
    are identical, so a longer study extends the shorter one."""
    longer = replace(CFG, steps=CKPTS[-1] + 15)
    train(
        tiny_data(),
        NET,
        longer,
        ckpt_steps=[15, CKPTS[-1], longer.steps],
        ckpt_dir=tmp_path / "ckpt",
        log_dir=tmp_path / "log",
        seed=SEED,
        progress=False,
    )
    a = load_checkpoint(checkpoint_path(uninterrupted / "ckpt", CKPTS[-1]))
    b = load_checkpoint(checkpoint_path(tmp_path / "ckpt", CKPTS[-1]))
    for key in ("net", "ema", "schedule", "optimizer", "rng"):
        assert _state_bytes(a[key]) == _state_bytes(b[key]), key


def test_resume_skips_a_corrupt_checkpoint_and_truncates_logs(uninterrupted, tmp_path):
    shutil.copytree(uninterrupted, tmp_path, dirs_exist_ok=True)  # logs run to step 40
    (tmp_path / "ckpt" / "step_000040.pt").unlink()
    last = tmp_path / "ckpt" / "step_000030.pt"
    last.write_bytes(last.read_bytes()[:1000])  # unusable: resume must start from step 20
    with pytest.warns(UserWarning, match="step_000030"):
        run_tiny(tmp_path)
    for name in ("ckpt/step_000030.pt", "ckpt/step_000040.pt", "log/train_log.csv"):
        assert (tmp_path / name).read_bytes() == (uninterrupted / name).read_bytes(), name
    assert (tmp_path / "log/checkpoints.csv").read_bytes() == (
        uninterrupted / "log/checkpoints.csv"
    ).read_bytes()


def test_resume_refuses_other_settings(uninterrupted, tmp_path):
    (tmp_path / "ckpt").mkdir()
    src = checkpoint_path(uninterrupted / "ckpt", 20)
    checkpoint_path(tmp_path / "ckpt", 20).write_bytes(src.read_bytes())
    with pytest.raises(ValueError, match="lr"):
        train(
            tiny_data(),
            NET,
            replace(CFG, lr=5e-4),
            ckpt_steps=CKPTS,
            ckpt_dir=tmp_path / "ckpt",
            log_dir=tmp_path / "log",
            seed=SEED,
            progress=False,
        )


def test_bad_checkpoints_raise_checkpoint_error(uninterrupted, tmp_path):
    good = checkpoint_path(uninterrupted / "ckpt", 10).read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path in (truncated, garbage, foreign, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            load_checkpoint(path)


def test_atomic_save(tmp_path):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "step": 7, "name": "x"}
    a, b = tmp_path / "a" / "step_000007.pt", tmp_path / "b" / "step_000007.pt"
    atomic_torch_save(obj, a)
    atomic_torch_save(obj, b)
    direct = tmp_path / "direct" / "step_000007.pt"
    direct.parent.mkdir()
    torch.save(obj, direct)
    assert a.read_bytes() == b.read_bytes() == direct.read_bytes()
    assert [p.name for p in a.parent.iterdir()] == ["step_000007.pt"]  # no temporaries left
    atomic_torch_save({"step": 8}, a)  # replacing an existing file
    assert torch.load(a, weights_only=True) == {"step": 8}


def test_fast_clip_and_adamw_match_torch_bit_for_bit():
    """training's clip and fused-AdamW step are the same kernels as clip_grad_norm_ and
    AdamW.step (first step included, before any optimizer state exists)."""
    from torch import nn

    from conceptspace.model.training import _grad_norm, _optimizer_step
    from conceptspace.model.unet import UNet

    runs = []
    for fast in (False, True):
        torch.manual_seed(0)
        net = UNet(NET)
        params = list(net.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, fused=True)
        g = torch.Generator().manual_seed(1)
        norms = []
        for _ in range(4):
            z = torch.randn(8, 3, 8, 8, generator=g)
            loss = net(z, torch.rand(8, generator=g), torch.rand(8, 11, generator=g)).square()
            opt.zero_grad(set_to_none=True)
            loss.mean().backward()
            if fast:
                norms.append(_grad_norm(params, 0.01).item())
                _optimizer_step(opt)
            else:
                norms.append(nn.utils.clip_grad_norm_(params, 0.01).item())
                opt.step()
        runs.append((norms, [p.detach().clone() for p in params], opt.state_dict()))
    (n0, p0, s0), (n1, p1, s1) = runs
    assert n0 == n1 and n0[-1] > 0.01  # clipping was active
    assert all(torch.equal(a, b) for a, b in zip(p0, p1, strict=True))
    for k, state in s0["state"].items():
        assert all(torch.equal(v, s1["state"][k][name]) for name, v in state.items())
    assert s0["param_groups"] == s1["param_groups"]


def test_train_config_is_the_params_section():
    """The library takes the train section itself: each shared field once, by name."""
    from conceptspace.params import load_params

    t = load_params(Path(__file__).resolve().parent.parent / "params.yaml").train
    cfg = TrainConfig.from_section(t)
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.grad_clip, cfg.p_uncond) == (
        t.steps,
        t.batch_size,
        t.lr,
        t.weight_decay,
        t.grad_clip,
        t.p_uncond,
    )
    assert TrainConfig.from_section(t.model_copy(update={"grad_clip": 0.0})).grad_clip is None
