"""The CUDA path: training with exact resume (lone runs and ensembles), sampling, probing and
an intervention on the device, and the stages with ``device: cuda``.

Skipped where no GPU is present; ``benchmarks/gpu_check.py`` runs these on a GPU machine.
CUDA runs use the deterministic kernels the stages select
(``conceptspace.devices.cuda_reproducible``). ``CONCEPTSPACE_TEST_DEVICE=cpu`` runs the same
tests on the CPU (a dry run of the tests themselves on a machine without a GPU).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conceptspace.data.concepts import preset
from conceptspace.devices import cuda_reproducible
from conceptspace.measure import classifier, interventions, probing
from conceptspace.model.checkpoints import checkpoint_path, load_checkpoint, load_model
from conceptspace.model.ensemble import Member, train_ensemble
from conceptspace.model.training import train
from conceptspace.model.unet import UNetConfig
from tests.squares import squares, tiny_config

DEVICE = os.environ.get("CONCEPTSPACE_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device"
)

ROOT = Path(__file__).resolve().parent.parent
NET = UNetConfig(image_size=8, channels=(8, 8), groups=4, attention=True, heads=2, time_dim=16)
CFG = tiny_config()
CKPTS = [10, 20, 30, 40]
FILES = ["ckpt/step_000040.pt", "log/train_log.csv", "log/checkpoints.csv"]


def child_env() -> dict[str, str]:
    """The environment of a subprocess: the project first, then this process's PYTHONPATH
    (benchmarks/gpu_check.py puts the packages it installed there)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def reproducible() -> None:
    """The deterministic kernels the stages select on CUDA (nothing to do on the CPU)."""
    if DEVICE == "cuda":
        cuda_reproducible()


def tiny_data(i: int = 0) -> dict[str, np.ndarray]:
    """One set of squares per member i."""
    return squares(200 + i)


def _slow(cls_or_module, name: str) -> None:
    """Stretch every call of ``cls_or_module.name`` so that a parent can kill the process."""
    fn = getattr(cls_or_module, name)

    def slow(*args, **kwargs):
        time.sleep(0.05)
        return fn(*args, **kwargs)

    setattr(cls_or_module, name, slow)


def run_lone(out: Path, slow: bool = False) -> None:
    """A lone run on CUDA into out/ckpt and out/log (also the subprocess entry point)."""
    reproducible()
    if slow:
        import conceptspace.model.training as training

        _slow(training, "vdm_loss")
    train(
        tiny_data(),
        NET,
        CFG,
        ckpt_steps=CKPTS,
        ckpt_dir=out / "ckpt",
        log_dir=out / "log",
        seed=3,
        device=DEVICE,
        progress=False,
    )


def ensemble_members(out: Path) -> list[Member]:
    return [Member(tiny_data(i), out / f"m{i}/ckpt", out / f"m{i}/log", 3 + i) for i in range(2)]


def run_ensemble(out: Path, slow: bool = False) -> None:
    """Two runs as one ensemble on CUDA into out/m0, out/m1 (also a subprocess entry point)."""
    reproducible()
    if slow:
        from conceptspace.model.ensemble import EnsembleTrainer

        _slow(EnsembleTrainer, "step")
    train_ensemble(ensemble_members(out), NET, CFG, ckpt_steps=CKPTS, device=DEVICE, progress=False)


def _kill_then_resume(entry: str, out: Path, first: Path) -> None:
    """Start ``tests.test_cuda.<entry>(out, slow=True)`` in a subprocess, SIGKILL it once
    ``first`` exists, and finish the run here."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        f"from tests.test_cuda import {entry}\n"
        f"{entry}(Path(sys.argv[1]), slow=True)\n"
    )
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=ROOT, env=env)
    deadline = time.monotonic() + 180
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    globals()[entry](out)


@contextmanager
def ieee_fp32():
    """Full fp32 convolutions and matmuls (no TF32) inside the block, to compare devices."""
    old = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = old


@pytest.fixture(scope="module")
def lone_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lone_cuda")
    run_lone(out)
    return out


def test_lone_training_repeats_and_resumes_bit_identically(lone_run, tmp_path):
    again = tmp_path / "again"
    run_lone(again)
    for name in FILES:
        assert (again / name).read_bytes() == (lone_run / name).read_bytes(), f"repeat: {name}"
    ckpt = load_checkpoint(lone_run / FILES[0])
    assert ckpt["step"] == 40 and ("cuda" in ckpt["rng"]) == (DEVICE == "cuda")
    killed = tmp_path / "killed"
    _kill_then_resume("run_lone", killed, checkpoint_path(killed / "ckpt", CKPTS[0]))
    for name in FILES:
        assert (killed / name).read_bytes() == (lone_run / name).read_bytes(), f"resume: {name}"


def test_ensemble_resumes_bit_identically_on_cuda(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_ensemble(whole)
    _kill_then_resume("run_ensemble", killed, checkpoint_path(killed / "m1/ckpt", CKPTS[0]))
    for i in range(2):
        for name in FILES:
            assert (killed / f"m{i}" / name).read_bytes() == (whole / f"m{i}" / name).read_bytes()
        net, _, ckpt = load_model(checkpoint_path(whole / f"m{i}/ckpt", 40))
        assert net.cfg == NET and ckpt["seed"] == 3 + i


def test_ensemble_members_equal_lone_cuda_runs_without_dropout(tmp_path):
    """Without dropout every random stream of a member is its lone run's on CUDA too."""
    net = UNetConfig(**{**NET.to_dict(), "dropout": 0.0})
    members = ensemble_members(tmp_path / "ens")
    reproducible()
    with ieee_fp32():
        train_ensemble(members, net, CFG, ckpt_steps=CKPTS, device=DEVICE, progress=False)
        for m in members:
            lone = tmp_path / "lone" / m.ckpt_dir.parent.name
            train(
                m.data,
                net,
                CFG,
                ckpt_steps=CKPTS,
                ckpt_dir=lone / "ckpt",
                log_dir=lone / "log",
                seed=m.seed,
                device=DEVICE,
                progress=False,
            )
            a = load_checkpoint(checkpoint_path(m.ckpt_dir, 40))
            b = load_checkpoint(checkpoint_path(lone / "ckpt", 40))
            for k in b["net"]:
                torch.testing.assert_close(a["net"][k], b["net"][k], rtol=1e-4, atol=1e-4)


def test_sampling_probing_and_intervention_on_cuda_match_cpu(lone_run):
    """The sampler draws its noise from a CPU generator on either device, so CUDA samples,
    probe readings and intervened samples equal the CPU ones up to rounding."""
    path = checkpoint_path(lone_run / "ckpt", 40)
    grid = preset("2x2", color=0.4, size=0.4)
    cond, _ = probing.prompt_set(grid, 4, 4, seed=0)
    k = grid.held_out_classes[0]
    scales = torch.linspace(0.0, 2.0, len(cond))
    torch.manual_seed(0)
    probe = classifier.ConceptClassifier(2, width=4).eval()
    out = {}
    with ieee_fp32():
        for device in ("cpu", DEVICE):
            net, schedule, _ = load_model(path)
            net, schedule = net.to(device), schedule.to(device)
            naive = probing.generate(net, schedule, cond, steps=5, seed=1, image_size=8)
            push = interventions.row_directions(net, grid, [k] * len(cond), ["color"])
            with interventions.linear_intervention(net, push, scales.to(device)):
                pushed = probing.generate(net, schedule, cond, steps=5, seed=1, image_size=8)
            probs = classifier.predict(probe.to(device), naive)
            out[device] = naive, pushed, probs
    for a, b in zip(out["cpu"], out[DEVICE], strict=True):
        assert isinstance(b, np.ndarray) and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3)
    assert not np.allclose(out[DEVICE][0], out[DEVICE][1])  # the intervention acts on CUDA


def test_probe_fits_on_cuda_as_on_cpu():
    grids = [preset("2x2", color=c, size=0.4) for c in (0.2, 0.8)]
    cfg = classifier.ClassifierConfig(width=4, steps=20, batch_size=16, n_per_class=16, n_test=8)
    with ieee_fp32():
        cpu, h_cpu = classifier.fit(grids, 8, cfg, progress=False)
        gpu, h_gpu = classifier.fit(grids, 8, cfg, progress=False, device=DEVICE)
    assert next(gpu.parameters()).device.type == DEVICE
    assert h_gpu[-1]["loss"] == pytest.approx(h_cpu[-1]["loss"], rel=1e-3)
    rows = classifier.evaluate(gpu, grids, 8, n_per_class=8)
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)


def _stage(*args: str) -> subprocess.CompletedProcess:
    env = child_env()
    r = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stderr[-3000:]}"
    return r


def test_stages_run_on_cuda(tiny_doc, tmp_path):
    """train, fit_classifier, probe and intervene with device: cuda; the probe stage on CUDA reads
    the same checkpoints as on the CPU to rounding."""
    doc = {**tiny_doc, "runs": {"c080": tiny_doc["runs"]["c080"]}}
    for section in ("train", "fit_classifier", "probe", "intervene"):
        doc[section] = {**doc[section], "device": DEVICE}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(doc, sort_keys=False))
    p, d = ["--params", str(params)], tmp_path
    ident = ["--run", "c080", "--seed", "0"]
    _stage(
        "stages.synthesize",
        *p,
        *ident,
        "--dataset",
        f"{d}/dataset.npz",
        "--card",
        f"{d}/card.json",
        "--samples",
        f"{d}/samples.png",
    )
    r = _stage(
        "stages.train",
        *p,
        *ident,
        "--dataset",
        f"{d}/dataset.npz",
        "--ckpt-dir",
        f"{d}/ckpt",
        "--log-dir",
        f"{d}/log",
    )
    assert f"on {DEVICE}" in r.stderr
    _stage(
        "stages.fit_classifier",
        *p,
        "--classifier",
        f"{d}/classifier.pt",
        "--metrics",
        f"{d}/fp.json",
    )
    tables = {}
    for device in (DEVICE, "cpu"):
        doc["probe"]["device"] = device
        params.write_text(yaml.safe_dump(doc, sort_keys=False))
        _stage(
            "stages.probe",
            *p,
            *ident,
            "--ckpt-dir",
            f"{d}/ckpt",
            "--classifier",
            f"{d}/classifier.pt",
            "--table",
            f"{d}/{device}.csv",
            "--samples",
            f"{d}/{device}.npz",
            "--grid",
            f"{d}/{device}.png",
        )
        tables[device] = pd.read_csv(d / f"{device}.csv")
    a, b = tables[DEVICE], tables["cpu"]
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    np.testing.assert_allclose(a["p1"], b["p1"], atol=0.05)
    _stage(
        "stages.intervene",
        *p,
        *ident,
        "--ckpt-dir",
        f"{d}/ckpt",
        "--classifier",
        f"{d}/classifier.pt",
        "--table",
        f"{d}/intervene.csv",
        "--embeddings",
        f"{d}/embeddings.csv",
    )
    iv = pd.read_csv(d / "intervene.csv")
    assert set(iv["method"]) == {"naive", "overprompt", "linear"}
    assert iv["joint_acc"].between(0, 1).all()


# ---- the ensemble's step modes (docs/scaling.md) ------------------------------------------
def _ensemble_after(mode, out: Path, steps: int = 12):
    """A two-member trainer on the device after ``steps`` steps (50 images in batches of 16:
    every fourth step is an epoch's partial batch, which a graph-mode trainer runs eagerly)."""
    from conceptspace.model.ensemble import EnsembleTrainer

    reproducible()
    trainer = EnsembleTrainer(ensemble_members(out), NET, CFG, DEVICE, mode)
    return trainer, torch.stack([trainer.step() for _ in range(steps)]).cpu()


def test_ensemble_cuda_graph_step_equals_the_eager_step_bit_for_bit(tmp_path):
    """The captured step (every draw made outside it, into fixed buffers) replays the eager
    step's kernels: the same losses, norms, parameters and AdamW state after 12 steps. A host
    read or a random draw inside the captured region would make the capture itself fail."""
    from conceptspace.model.ensemble import StepMode

    if DEVICE != "cuda":
        pytest.skip("CUDA graphs need a CUDA device")
    eager, a = _ensemble_after(None, tmp_path / "eager")
    graph, b = _ensemble_after(StepMode(cuda_graph=True), tmp_path / "graph")
    assert graph._graph is not None, "the step was never captured"
    assert torch.equal(a, b)
    for name in eager.names:
        assert torch.equal(eager.params[name], graph.params[name]), name
    sa, sb = eager.optimizer.state_dict()["state"], graph.optimizer.state_dict()["state"]
    assert all(torch.equal(v, sb[i][k]) for i, s in sa.items() for k, v in s.items())


def test_ensemble_fast_mode_on_cuda_trains_close_to_the_default(tmp_path):
    """bf16 autocast (+ the graph on CUDA): finite, losses within 2% of the default's over 12
    steps, and its checkpoints say they are not bitwise."""
    from conceptspace.model.ensemble import StepMode

    fast = StepMode(precision="bf16", cuda_graph=DEVICE == "cuda", static=DEVICE != "cuda")
    _, a = _ensemble_after(None, tmp_path / "eager")
    trainer, b = _ensemble_after(fast, tmp_path / "fast")
    assert torch.isfinite(b).all()
    torch.testing.assert_close(b[:, 0], a[:, 0], rtol=2e-2, atol=0)
    assert trainer.checkpoint(0)["fast_mode"]["bitwise"] is False


def test_batched_checkpoint_sampling_on_cuda_equals_per_checkpoint(lone_run):
    """Evaluation batched across checkpoints (conceptspace/measure/batched.py) on the device
    equals probing.generate checkpoint by checkpoint on the device, to fp32 rounding (TF32 off:
    a grouped and a lone convolution would round differently at TF32's 10-bit mantissa)."""
    from conceptspace.measure import batched

    reproducible()
    paths = [checkpoint_path(lone_run / "ckpt", s) for s in CKPTS]
    cond = np.random.default_rng(0).random((6, 11), dtype=np.float32)
    kw = dict(steps=5, seed=2, image_size=8)
    with ieee_fp32():
        got = batched.generate_checkpoints(paths, cond, chunk=3, device=DEVICE, **kw)
        for c, path in enumerate(paths):
            net, schedule, _ = load_model(path)
            want = probing.generate(net.to(DEVICE), schedule.to(DEVICE), cond, **kw)
            np.testing.assert_allclose(got[c], want, rtol=0, atol=1e-4)
