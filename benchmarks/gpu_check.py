"""The prepared check of the CUDA path: tests, one throughput table, a projection, settings.

    python benchmarks/gpu_check.py [--wheels build/wheels] [--json gpu_check.json]
    python benchmarks/gpu_check.py --tiny --device cpu    # the same at a tiny size (a test)
    python benchmarks/gpu_check.py --replay benchmarks/gpu_check_h200.json   # a saved record

1. Makes the packages it needs that a GPU image lacks (pydantic, jsonschema, pytest and their
   dependencies; the image has torch, numpy, pandas, scipy, matplotlib, tqdm and PyYAML)
   importable: ``pip install --no-index --find-links <wheels>`` into build/pydeps, from wheels
   brought along with the working tree (README, "GPU check", has the ``pip download``).
2. Runs tests/test_cuda.py: training with exact resume (lone runs and ensembles), sampling,
   probing and an intervention on the device, and the stages with ``device: cuda``.
3. Prints one table, measured with the settings the stages use on CUDA (deterministic cuDNN,
   math attention; ``conceptspace.devices.cuda_reproducible``): training-step time and images/s of a
   lone run of the default and of the paper network (configs/paper.yaml) at fp32, TF32, bf16
   autocast, torch's default precision (TF32 convolutions, fp32 matmuls: what the pipeline
   runs) and TF32 without the reproducibility settings; per-checkpoint time and images/s of
   the probe and intervene stages (sampler plus probe); the cost of writing, evaluating and
   loading one checkpoint; fit_classifier's step time; and aggregate model-steps/s of K = 1, 4, 16
   runs as (a) K processes sharing the device, each running the lone trainer's step, and (b)
   one K-model ensemble (conceptspace/model/ensemble.py).
4. From the table: the projected wall time of the paper's colour sweep (its runs x seeds x
   steps, every checkpoint probed and intervened on) under the best arrangement and under one
   run per process, and the recommended gpu-profile settings (training jobs per GPU,
   ``train.ensemble``).

Measurements stop being started once --budget seconds are spent (what is left is printed as
skipped); one that fails (e.g. out of memory at K = 16) is printed as failed and the rest go
on. Exit status: 0 when the tests passed (or were skipped without a GPU) and every measurement
ran, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DEPS_DIR = ROOT / "build" / "pydeps"
WHEELS_DIR = ROOT / "build" / "wheels"
# Imported by the project and the tests but not part of a GPU image: module -> distribution.
NEEDED = {"pydantic": "pydantic", "jsonschema": "jsonschema", "pytest": "pytest"}
KS = (1, 4, 16)
TINY_KS = (1, 2)
VARIANTS = ("fp32", "default", "tf32", "bf16", "tf32_fast")
VARIANT_NOTE = {
    "fp32": "fp32 convs and matmuls",
    "default": "torch default: TF32 convs, fp32 matmuls (the pipeline)",
    "tf32": "TF32 convs and matmuls",
    "bf16": "bf16 autocast, TF32",
    "tf32_fast": "TF32, cudnn.benchmark, fused attention (not reproducible)",
}
NEAR_BEST = 0.95  # prefer the smallest K within this fraction of the best rate
TINY_NET = {"channels": [8, 16], "blocks_per_level": 2, "attention": True, "heads": 2}

for p in (str(ROOT), str(DEPS_DIR)):
    if p not in sys.path:
        sys.path.insert(0 if p == str(ROOT) else len(sys.path), p)


# ---- 1. packages ----------------------------------------------------------------------------
def missing_modules(names) -> list[str]:
    importlib.invalidate_caches()
    return [n for n in names if importlib.util.find_spec(n) is None]


def install_command(dists: list[str], wheels: Path, target: Path) -> list[str]:
    """pip from local wheels only, into ``target`` (no write to the image's site-packages)."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-index",
        "--find-links",
        str(wheels),
        "--target",
        str(target),
        "--disable-pip-version-check",
        "--no-warn-script-location",
        "--quiet",
        *dists,
    ]


def ensure_packages(wheels: Path) -> list[str]:
    """Install the missing NEEDED distributions from ``wheels``; returns what was installed."""
    missing = missing_modules(NEEDED)
    if not missing:
        return []
    if not wheels.is_dir() or not any(wheels.glob("*.whl")):
        raise SystemExit(
            f"error: {missing} cannot be imported and {wheels} holds no wheels; download them "
            "first (README, 'GPU check') and bring the folder along with the working tree"
        )
    cmd = install_command([NEEDED[m] for m in missing], wheels, DEPS_DIR)
    r = subprocess.run(cmd, capture_output=True, text=True)
    still = missing_modules(missing)
    if r.returncode or still:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return missing


def child_env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), str(DEPS_DIR), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}


# ---- studies --------------------------------------------------------------------------------
def merge(base: dict, overlay: dict) -> dict:
    """``overlay`` over ``base``, as every study is made (:func:`conceptspace.studies.merge`)."""
    from conceptspace.studies import merge as study_merge

    return study_merge(base, overlay)


def load_study(path: Path, net: dict | None = None):
    """The validated params of a study file (a full params file or an overlay of params.yaml),
    optionally with ``train.net`` keys replaced."""
    from conceptspace.params import read_yaml, validate

    doc = read_yaml(path)
    if path.resolve() != (ROOT / "params.yaml").resolve():
        doc = merge(read_yaml(ROOT / "params.yaml"), doc)
    if net:
        doc["train"]["net"] = {**doc["train"]["net"], **net}
    return validate(doc, source=str(path))


def study_counts(study) -> dict:
    """What the projection needs from a study: runs, steps, checkpoints, stage batch sizes."""
    grid = study.grid_for(study.run_ids[0])
    n_held_out_cls = len(grid.held_out_classes)
    n_train_cls = grid.n_classes - n_held_out_cls
    images = study.synthesize.n_per_class * n_train_cls
    n_val = int(round(images * study.synthesize.val_fraction))
    iv = study.intervene
    settings = ("naive" in iv.methods) + len(iv.overprompt.doses) * ("overprompt" in iv.methods)
    settings += len(iv.linear.doses) * ("linear" in iv.methods)
    settings += len(iv.guidance) * ("guidance" in iv.methods)
    return {
        "runs": len(study.run_ids) * len(study.seeds),
        "steps": study.train.steps,
        "checkpoints": len(study.checkpoint_steps()),
        "n_train": images - n_val,
        "n_val": n_val,
        "n_held_out": study.synthesize.n_held_out * n_held_out_cls,
        "probe_images": study.probe.n_train * n_train_cls + study.probe.n_held_out * n_held_out_cls,
        "intervene_images": n_held_out_cls * settings * iv.n,
        "fit_classifier_steps": study.fit_classifier.steps,
    }


def configs_of(study):
    from conceptspace.model.training import TrainConfig
    from conceptspace.model.unet import UNetConfig

    net = UNetConfig(image_size=study.synthesize.image_size, **study.train.net.model_dump())
    return net, TrainConfig.from_section(study.train)


# ---- measuring ------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextmanager
def variant(name: str, device: torch.device):
    """The precision and kernel settings of one training-table variant; yields the autocast
    factory for the forward pass. Everything is restored afterwards."""
    from conceptspace.devices import cuda_reproducible

    cuda = device.type == "cuda"
    saved = _tf32_state() if cuda else None
    try:
        if cuda:
            _set_tf32(conv=name != "fp32", matmul=name in ("tf32", "bf16", "tf32_fast"))
            if name == "tf32_fast":
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
                for fn in ("enable_flash_sdp", "enable_mem_efficient_sdp", "enable_cudnn_sdp"):
                    if hasattr(torch.backends.cuda, fn):
                        getattr(torch.backends.cuda, fn)(True)
        dtype = torch.bfloat16
        yield (lambda: torch.autocast(device.type, dtype=dtype)) if name == "bf16" else nullcontext
    finally:
        if cuda:
            _restore_tf32(saved)
            cuda_reproducible()


def _new_tf32_api() -> bool:
    return hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")


def _tf32_state():
    if _new_tf32_api():
        return torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def _set_tf32(conv: bool, matmul: bool) -> None:
    if _new_tf32_api():
        torch.backends.cudnn.conv.fp32_precision = "tf32" if conv else "ieee"
        torch.backends.cuda.matmul.fp32_precision = "tf32" if matmul else "ieee"
    else:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def _restore_tf32(state) -> None:
    if _new_tf32_api():
        torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = state
    else:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = state


def lone_step(net_cfg, cfg, device: torch.device, n_train: int, autocast=nullcontext, seed=0):
    """One step of a lone run, as the loop of conceptspace.model.training.train does it (batch
    from the epoch permutation, CFG dropout, VDM loss, backward, global-norm clip, fused AdamW,
    and its two host reads per step), on random data of the study's shape."""
    from conceptspace.model.diffusion import uncond_dropout, vdm_loss
    from conceptspace.model.schedule import LogSNRSchedule
    from conceptspace.model.training import _grad_norm
    from conceptspace.model.unet import UNet

    torch.manual_seed(seed)
    net = UNet(net_cfg).to(device)
    schedule = LogSNRSchedule(cfg.gamma_min, cfg.gamma_max).to(device)
    params = [*net.parameters(), *schedule.parameters()]
    fused = device.type in ("cpu", "cuda")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    gen = torch.Generator(device=device).manual_seed(seed)
    s = net_cfg.image_size
    x_all = torch.rand((n_train, net_cfg.in_channels, s, s), generator=gen, device=device)
    c_all = torch.rand((n_train, net_cfg.cond_dim), generator=gen, device=device)
    batch_gen = torch.Generator().manual_seed(seed)
    state = {"perm": torch.randperm(n_train, generator=batch_gen), "pos": 0}

    def step() -> None:
        if state["pos"] >= n_train:
            state["perm"], state["pos"] = torch.randperm(n_train, generator=batch_gen), 0
        idx = state["perm"][state["pos"] : state["pos"] + cfg.batch_size].to(device)
        state["pos"] += idx.shape[0]
        h = uncond_dropout(c_all[idx], cfg.p_uncond, gen)
        with autocast():
            terms = vdm_loss(net, schedule, x_all[idx], h, generator=gen, data_noise=cfg.data_noise)
        loss = terms["total"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _grad_norm(params, cfg.grad_clip).item()
        opt.step()
        loss.item()

    return step


def timed(
    step: Callable[[], object], device, window: float, every: int = 1, min_calls: int = 3
) -> dict:
    """Seconds of the first call, then calls per second over at least ``window`` seconds and
    ``min_calls`` calls (synchronised every ``every`` calls, after two warm-up calls)."""
    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    step()
    sync(device)
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(every):
            step()
        n += every
        sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= window and n >= min_calls:
            return {"per_s": n / elapsed, "first_s": first}


def synthetic_members(net_cfg, k: int, n_train: int, n_eval: int = 8):
    from conceptspace.model.ensemble import Member

    rng = np.random.default_rng(0)
    s, c = net_cfg.image_size, net_cfg.in_channels
    data = {}
    for split, n in (("train", n_train), ("val", n_eval), ("held_out", n_eval)):
        data[f"{split}_images"] = rng.random((n, c, s, s), dtype=np.float32)
        data[f"{split}_cond"] = rng.random((n, net_cfg.cond_dim), dtype=np.float32)
    where = Path(tempfile.gettempdir()) / "gpu_check_unused"
    return [Member(data, where / f"m{i}/ckpt", where / f"m{i}/log", i) for i in range(k)]


def ensemble_rate(net_cfg, cfg, device, k: int, n_train: int, window: float) -> dict:
    """Model-steps/s of one K-model ensemble (host reads every 10 steps, as often as the
    ensemble's training loop reads them at log_every = 100 or less)."""
    from conceptspace.model.ensemble import EnsembleTrainer

    trainer = EnsembleTrainer(synthetic_members(net_cfg, k, n_train), net_cfg, cfg, device)
    r = timed(trainer.step, device, window, every=10)
    out = {"model_steps_per_s": k * r["per_s"], "first_s": r["first_s"]}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def worker(index: int) -> None:
    """A process of :class:`WorkerPool`: on ``PREP <spec>`` it builds a lone run's step (and
    warms it up), on ``GO <start> <end>`` it steps during that window and reports the count,
    on ``DROP`` it frees the model, on ``EXIT`` it ends."""
    from conceptspace.model.training import TrainConfig
    from conceptspace.model.unet import UNetConfig

    torch.set_num_threads(1)
    step, device = None, None
    print("UP", flush=True)
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "PREP":
            spec = json.loads(rest)
            step = None
            device = torch.device(spec["device"])
            free(device)
            if device.type == "cuda":
                from conceptspace.devices import cuda_reproducible

                cuda_reproducible()
            net_cfg, cfg = UNetConfig.from_dict(spec["net"]), TrainConfig(**spec["train"])
            step = lone_step(net_cfg, cfg, device, spec["n_train"], seed=index)
            step()
            step()
            print("READY", flush=True)
        elif command == "GO":
            start, end = (float(v) for v in rest.split())
            while time.time() < start:
                time.sleep(0.0005)
            n, last = 0, start
            while True:  # steps that end inside the window count, and at least one
                step()  # synchronises: the lone step reads the loss and the gradient norm
                now = time.time()
                if now > end and n:
                    break
                n, last = n + 1, now
            print(json.dumps({"steps": n, "seconds": last - start}), flush=True)
        elif command == "DROP":
            step = None
            free(device)
        elif command == "EXIT":
            return


class WorkerPool:
    """Up to ``size`` worker processes, started once and reused for every K and network."""

    def __init__(self, size: int) -> None:
        self.logs = [tempfile.TemporaryFile("w+") for _ in range(size)]
        self.procs = []
        t0 = time.monotonic()
        for i in range(size):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(i)]
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=child_env(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=self.logs[i],
                    text=True,
                )
            )
        # Wait until every worker has imported its modules, so that starting them does not
        # compete with the measurements that follow.
        try:
            if any(r != "UP" for r in self._read(self.procs, 300)):
                raise RuntimeError(f"a worker did not start{self._tail()}")
        except Exception:
            self.close()
            raise
        self.started_s = time.monotonic() - t0

    def _send(self, procs, text: str) -> None:
        for p in procs:
            p.stdin.write(text + "\n")
            p.stdin.flush()

    def _read(self, procs, seconds: float) -> list[str]:
        deadline = time.monotonic() + seconds
        out = []
        for p in procs:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
                raise TimeoutError(f"a worker did not answer within {seconds:.0f} s{self._tail()}")
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f"a worker exited (status {p.wait()}){self._tail()}")
            out.append(line.strip())
        return out

    def _tail(self) -> str:
        tails = []
        for f in self.logs:
            f.seek(0)
            text = f.read()[-500:]
            if text:
                tails.append(text)
        return f"; worker stderr: {' | '.join(tails)}" if tails else ""

    def rate(self, net_cfg, cfg, device, k: int, n_train: int, window: float) -> dict:
        """Aggregate model-steps/s of ``k`` workers, each a lone run's step, in one window."""
        from dataclasses import asdict

        if k > len(self.procs):
            raise ValueError(f"the pool has {len(self.procs)} workers, not {k}")
        procs = self.procs[:k]
        spec = {"device": str(device), "net": net_cfg.to_dict(), "train": asdict(cfg)}
        spec["n_train"] = n_train
        t0 = time.monotonic()
        self._send(procs, "PREP " + json.dumps(spec))
        if any(r != "READY" for r in self._read(procs, 300)):
            raise RuntimeError(f"a worker did not get ready{self._tail()}")
        ready_s = time.monotonic() - t0
        start = time.time() + 0.2
        self._send(procs, f"GO {start} {start + window}")
        results = [json.loads(r) for r in self._read(procs, window + 120)]
        self._send(procs, "DROP")
        rate = sum(r["steps"] / r["seconds"] for r in results if r["seconds"] > 0)
        return {"model_steps_per_s": rate, "ready_s": ready_s}

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    self._send([p], "EXIT")
                    p.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    p.kill()
                    p.wait()
        for f in self.logs:
            f.close()


@torch.no_grad()
def eval_costs(study, device, window: float) -> dict:
    """Seconds per checkpoint of the probe and intervene stages' device work (sampler over all
    of a checkpoint's prompts in one batch, then the probe), with random weights."""
    from conceptspace.measure import classifier, interventions, probing
    from conceptspace.measure.interventions import design
    from conceptspace.model.schedule import LogSNRSchedule
    from conceptspace.model.unet import UNet

    net_cfg, _ = configs_of(study)
    grid = study.grid_for(study.run_ids[0])
    torch.manual_seed(0)
    net = UNet(net_cfg).to(device).eval()
    schedule = LogSNRSchedule().to(device)
    probe = (
        classifier.ConceptClassifier(len(grid.concepts), study.fit_classifier.width)
        .to(device)
        .eval()
    )
    size = net_cfg.image_size
    pc, iv = study.probe, study.intervene
    cond, _ = probing.prompt_set(grid, pc.n_train, pc.n_held_out, seed=0)
    plan = design(grid, iv)
    icond, row_class, scales = interventions.batch(plan, iv.n)
    scales = torch.from_numpy(scales)

    def probe_ckpt() -> None:
        images = probing.generate(
            net, schedule, cond, steps=pc.sampler_steps, seed=0, image_size=size
        )
        classifier.predict(probe, images)

    def intervene_ckpt() -> None:
        kw = dict(steps=iv.sampler_steps, seed=0, image_size=size)
        push = interventions.row_directions(net, grid, row_class, iv.linear.concepts)
        with interventions.linear_intervention(net, push, scales.to(device)):
            images = probing.generate(net, schedule, icond, noise_repeat=len(plan), **kw)
        classifier.predict(probe, images)
        if "guidance" in iv.methods:
            for k in grid.held_out_classes:
                h = np.tile(grid.class_mean_cond(k), (iv.n, 1))
                for w in iv.guidance:
                    classifier.predict(probe, probing.generate(net, schedule, h, guidance=w, **kw))

    out = {}
    for name, fn, images in (("probe", probe_ckpt, len(cond)), ("intervene", intervene_ckpt, 0)):
        r = timed(fn, device, window, min_calls=1)
        out[name] = {"s_per_ckpt": 1 / r["per_s"], "images": images}
    out["intervene"]["images"] = study_counts(study)["intervene_images"]
    for v in out.values():
        v["images_per_s"] = v["images"] / v["s_per_ckpt"]
    return out


def checkpoint_costs(study, device) -> dict:
    """Seconds to evaluate (validation + held-out loss), write and load one checkpoint of a
    run of this study (the ensemble trainer's per-run checkpoint, the lone run's format)."""
    from conceptspace.model.checkpoints import (
        atomic_torch_save,
        canonicalize,
        checkpoint_path,
        load_model,
    )
    from conceptspace.model.ensemble import EnsembleTrainer
    from conceptspace.model.training import evaluate_loss

    net_cfg, cfg = configs_of(study)
    counts = study_counts(study)
    members = synthetic_members(net_cfg, 1, 256, n_eval=counts["n_val"])
    trainer = EnsembleTrainer(members, net_cfg, cfg, device)
    trainer.step()
    net, schedule = trainer.member_model(0)
    x, c = trainer.eval_sets[0]["val"]
    hx, hc = x[: counts["n_held_out"]], c[: counts["n_held_out"]]
    sync(device)
    t0 = time.perf_counter()
    evaluate_loss(net, schedule, x, c, seed=0)
    evaluate_loss(net, schedule, hx, hc, seed=0)
    sync(device)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint_path(Path(tmp), 1)
        atomic_torch_save(canonicalize(trainer.checkpoint(0)), path)
        t2 = time.perf_counter()
        net2, schedule2, _ = load_model(path)
        net2.to(device), schedule2.to(device)
        sync(device)
        t3 = time.perf_counter()
        mib = path.stat().st_size / 2**20
    return {"eval_s": t1 - t0, "save_s": t2 - t1, "load_s": t3 - t2, "file_mib": mib}


def fit_classifier_cost(study, device, steps: int) -> dict:
    """Seconds per fit_classifier step (the probe CNN at the study's width and batch)."""
    from conceptspace.measure import classifier

    fp, s = study.fit_classifier, study.synthesize.image_size
    cfg = classifier.ClassifierConfig(
        width=fp.width, steps=steps, batch_size=fp.batch_size, lr=fp.lr
    )
    rng = np.random.default_rng(0)
    images = rng.random((512, 3, s, s), dtype=np.float32)
    values = rng.integers(0, 2, (512, len(study.grid.concepts)))
    classifier.fit_arrays(images, values, values.shape[1], cfg, progress=False, device=device)
    t0 = time.perf_counter()
    classifier.fit_arrays(images, values, values.shape[1], cfg, progress=False, device=device)
    sync(device)
    return {"s_per_step": (time.perf_counter() - t0) / steps}


# ---- 4. projection and recommendation (pure functions of the table) -------------------------
def rate_at(rates: dict[int, float], k: int) -> float:
    """Model-steps/s of ``k`` runs at once, linear between the measured K (clamped)."""
    ks = sorted(kk for kk, r in rates.items() if r)
    if not ks:
        raise ValueError("no measured rate")
    return float(np.interp(k, ks, [rates[kk] for kk in ks]))


def training_seconds(n_runs: int, steps: int, k: int, rates: dict[int, float]) -> float:
    """Wall time of n_runs runs trained k at a time (the last group smaller)."""
    full, rest = divmod(n_runs, k)
    total = full * steps * k / rate_at(rates, k)
    if rest:
        total += steps * rest / rate_at(rates, rest)
    return total


def best_arrangement(
    table: dict[str, dict[int, float]], n_runs: int | None = None
) -> tuple[str, int]:
    """(arrangement, K) with the highest aggregate rate; among those within NEAR_BEST of it,
    the smallest K (less memory, finer scheduling), an ensemble before processes. With
    ``n_runs``, only K up to the study's number of runs count (4 runs make no 16-model group)."""
    cells = [(r, a, k) for a, row in table.items() for k, r in row.items() if r]
    if n_runs is not None:
        cells = [c for c in cells if c[2] <= max(n_runs, 1)]
    if not cells:
        raise ValueError("no measured arrangement")
    best = max(r for r, _, _ in cells)
    near = [(k, a != "ensemble", a) for r, a, k in cells if r >= NEAR_BEST * best]
    k, _, a = min(near)
    return a, k


def project(counts: dict, table: dict[str, dict[int, float]], costs: dict) -> dict:
    """Projected seconds of a study on one device: training (plus checkpoints), probe and
    intervene of every checkpoint, fit_classifier; for the best arrangement and for one run per
    process. Stages are assumed to share the device one after another (a device-bound sum)."""
    n, c = counts["runs"], counts["checkpoints"]
    ck = costs["checkpoint"]
    per_ckpt_train = ck["eval_s"] + ck["save_s"]
    per_ckpt_eval = costs["eval"]["probe"]["s_per_ckpt"] + costs["eval"]["intervene"]["s_per_ckpt"]
    per_ckpt_eval += 2 * ck["load_s"]
    common = n * c * (per_ckpt_train + per_ckpt_eval)
    common += counts["fit_classifier_steps"] * costs["fit_classifier"]["s_per_step"]
    out = {"eval_and_checkpoints_s": common}
    arrangement, k = best_arrangement(table, n)
    for name, (a, kk) in (("best", (arrangement, k)), ("one_run_per_process", ("processes", 1))):
        if not table.get(a, {}).get(kk):
            continue
        train_s = training_seconds(n, counts["steps"], kk, table[a])
        out[name] = {"arrangement": a, "k": kk, "train_s": train_s, "total_s": train_s + common}
    return out


def profile_lines(arrangement: str, k: int) -> list[str]:
    """The gpu-profile and params settings for an arrangement."""
    jobs, ensemble = (k, 1) if arrangement == "processes" else (1, k)
    return [
        f"workflow/profiles/gpu/profile.yaml:  resources: {{gpu: {jobs}}}"
        f"    # training jobs sharing one GPU",
        f"the study's params:                  train: {{ensemble: {ensemble}}}"
        f"    # runs per training job",
    ]


# ---- the check ------------------------------------------------------------------------------
class Budget:
    def __init__(self, seconds: float) -> None:
        self.t0, self.seconds = time.monotonic(), seconds

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.t0)


def _hms(s: float) -> str:
    h, m = divmod(int(round(s / 60)), 60)
    return f"{h} h {m:02d} min" if h else f"{s / 60:.1f} min"


def run_tests(device: torch.device, timeout: float) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "tests/test_cuda.py",
    ]
    env = child_env()
    env.pop("CONCEPTSPACE_TEST_DEVICE", None)  # the CUDA tests as they are: run, or skipped
    t0 = time.perf_counter()
    try:
        r = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(timeout, 1)
        )
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        summary, ok = (lines[-1] if lines else "no output"), r.returncode == 0
        tail = r.stdout[-4000:] + r.stderr[-2000:]
    except subprocess.TimeoutExpired:
        summary, ok, tail = f"timed out after {timeout:.0f} s", False, ""
    return {"ok": ok, "summary": summary, "seconds": time.perf_counter() - t0, "tail": tail}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--tiny", action="store_true", help="tiny networks and windows (a test)")
    p.add_argument("--wheels", type=Path, default=WHEELS_DIR, help="wheels for missing packages")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check")
    p.add_argument("--json", type=Path, help="also write every measurement here")
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument(
        "--replay",
        type=Path,
        help="print the table, projection and settings of a record saved with --json (no device)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        worker(int(args.worker))
        return 0

    if args.replay is not None:
        replay(args.replay)
        return 0

    budget = Budget(args.budget)
    installed = ensure_packages(args.wheels)
    from conceptspace.devices import cuda_reproducible
    from conceptspace.model.unet import UNet

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device is available")
    device = torch.device(args.device)
    if device.type == "cuda":
        cuda_reproducible()
        name = torch.cuda.get_device_name(device)
        mem = torch.cuda.get_device_properties(device).total_memory / 2**30
        where = f"{name} ({mem:.0f} GiB), CUDA {torch.version.cuda}"
    else:
        torch.set_num_threads(1)
        where = "CPU, 1 thread"
    tiny = args.tiny
    ks = TINY_KS if tiny else KS
    window = 0.2 if tiny else 3.0
    if tiny:
        studies = {
            "default": load_study(ROOT / "tests" / "params.tiny.yaml"),
            "paper": load_study(ROOT / "tests" / "params.tiny.yaml", net=TINY_NET),
        }
    else:
        studies = {
            "default": load_study(ROOT / "params.yaml"),
            "paper": load_study(ROOT / "configs" / "paper.yaml"),
        }
    variants = VARIANTS if device.type == "cuda" else ("fp32", "bf16")
    head = f"torch {torch.__version__}, python {sys.version.split()[0]}, {where}"
    print(f"== conceptspace GPU check{' (tiny)' if tiny else ''}: {head} ==", flush=True)
    if installed:
        print(f"installed from {args.wheels}: {', '.join(installed)}", flush=True)

    record: dict = {"device": where, "torch": torch.__version__, "tiny": tiny, "cells": {}}
    failures: list[str] = []

    def cell(key: str, estimate: float, fn: Callable[[], dict]) -> dict | None:
        """Run one measurement unless the budget is spent; keep failures as data."""
        if budget.left() < estimate:
            record["cells"][key] = "skipped (time budget)"
            return None
        t0 = time.monotonic()
        try:
            value = fn()
        except Exception as e:
            record["cells"][key] = f"failed: {type(e).__name__}: {e}"[:300]
            failures.append(key)
            value = None
        else:
            record["cells"][key] = value
        finally:
            free(device)
            record.setdefault("seconds", {})[key] = round(time.monotonic() - t0, 2)
        return value

    # 2. tests
    if args.skip_tests:
        tests = {"ok": True, "summary": "not run (--skip-tests)", "seconds": 0.0, "tail": ""}
    else:
        tests = run_tests(device, min(240.0, budget.left() - 60))
    record["tests"] = tests
    print(f"tests/test_cuda.py: {tests['summary']} ({tests['seconds']:.0f} s)", flush=True)
    if not tests["ok"]:
        print(tests["tail"], flush=True)

    # 3. the table
    counts = {k: study_counts(s) for k, s in studies.items()}
    for key, study in studies.items():
        net_cfg, cfg = configs_of(study)
        n_train = counts[key]["n_train"]
        n_params = sum(q.numel() for q in UNet(net_cfg).parameters()) / 1e6
        what = f"{key} {n_params:.2f}M, {net_cfg.image_size} px, batch {cfg.batch_size}"
        for v in variants:

            def measure(v=v, net_cfg=net_cfg, cfg=cfg, n_train=n_train) -> dict:
                with variant(v, device) as autocast:
                    step = lone_step(net_cfg, cfg, device, n_train, autocast)
                    r = timed(step, device, window)
                return {"s_per_step": 1 / r["per_s"], "images_per_s": cfg.batch_size * r["per_s"]}

            cell(f"train/{key}/{v}", 10, measure)
        record.setdefault("nets", {})[key] = what

    for key, study in studies.items():
        cell(f"eval/{key}", 10, lambda study=study: eval_costs(study, device, window))
        cell(f"checkpoint/{key}", 10, lambda study=study: checkpoint_costs(study, device))
        n = 5 if tiny else 50
        cell(
            f"fit_classifier/{key}",
            10,
            lambda study=study, n=n: fit_classifier_cost(study, device, n),
        )

    pool, pool_error = None, "skipped (time budget)"
    try:
        if budget.left() > 60:
            try:
                pool = WorkerPool(max(ks))
                record["pool_start_s"] = pool.started_s
            except Exception as e:
                pool_error = f"failed: {type(e).__name__}: {e}"[:300]
        # The paper network first: the projection needs it (tiny: only it, to stay quick).
        for key in ("paper",) if tiny else ("paper", "default"):
            net_cfg, cfg = configs_of(studies[key])
            n_train = counts[key]["n_train"]
            for k in ks:
                cell(
                    f"runs/{key}/ensemble/{k}",
                    15,
                    lambda k=k, net_cfg=net_cfg, cfg=cfg, n_train=n_train: ensemble_rate(
                        net_cfg, cfg, device, k, n_train, window
                    ),
                )
                if pool is None:
                    record["cells"][f"runs/{key}/processes/{k}"] = pool_error
                    continue
                cell(
                    f"runs/{key}/processes/{k}",
                    20,
                    lambda k=k, net_cfg=net_cfg, cfg=cfg, n_train=n_train: pool.rate(
                        net_cfg, cfg, device, k, n_train, window
                    ),
                )
    finally:
        if pool is not None:
            pool.close()

    record["counts"] = counts
    record["variants"], record["ks"] = list(variants), list(ks)
    report(record)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1, default=str))
    skipped = [k for k, v in record["cells"].items() if isinstance(v, str)]
    if skipped:
        print(f"\nnot measured: {', '.join(skipped)}")
    return 0 if tests["ok"] and not skipped else 1


def report(record: dict) -> None:
    """Print the table, then the projected wall times and the recommended settings, from a
    measurement record (a fresh one, or one saved with --json and read back with --replay)."""
    studies, variants, ks = record["nets"], record["variants"], record["ks"]
    print_table(record, studies, variants, ks)

    # 4. projection and recommendation
    for key in ("paper", "default"):
        table = {
            a: {k: _get(record, f"runs/{key}/{a}/{k}", "model_steps_per_s") for k in ks}
            for a in ("processes", "ensemble")
        }
        costs = {
            "eval": record["cells"].get(f"eval/{key}"),
            "checkpoint": record["cells"].get(f"checkpoint/{key}"),
            "fit_classifier": record["cells"].get(f"fit_classifier/{key}"),
        }
        if not any(r for row in table.values() for r in row.values()):
            print(f"\nno runs-at-once measurement of the {key} network: no projection")
            continue
        c = record["counts"][key]
        arrangement, k = best_arrangement(table, c["runs"])
        label = "paper's colour sweep" if key == "paper" else "default study"
        if all(isinstance(v, dict) for v in costs.values()):
            proj = project(c, table, costs)
            record.setdefault("projection", {})[key] = proj
            print(
                f"\nprojected wall time, {label} ({c['runs']} runs x {c['steps']:,} steps, "
                f"{c['checkpoints']} checkpoints probed and intervened on, one device):"
            )
            for name in ("best", "one_run_per_process"):
                if name in proj:
                    q = proj[name]
                    how = _arrangement_text(q["arrangement"], q["k"])
                    print(
                        f"  {name.replace('_', ' '):<20} {how:<34} training {_hms(q['train_s'])}"
                        f", total {_hms(q['total_s'])}"
                    )
            print(
                f"  (checkpoints, probe, intervene and fit_classifier: "
                f"{_hms(proj['eval_and_checkpoints_s'])} of each total)"
            )
        record.setdefault("recommended", {})[key] = {"arrangement": arrangement, "k": k}
        print(f"recommended for the {key} network: {_arrangement_text(arrangement, k)}")
        for line in profile_lines(arrangement, k):
            print(f"  {line}")


def replay(path: Path) -> None:
    """:func:`report` of a saved record; what an older record lacks (study counts, variants,
    K) is taken from today's study files and defaults."""
    record = json.loads(path.read_text())
    if "counts" not in record:
        record["counts"] = {
            "default": study_counts(load_study(ROOT / "params.yaml")),
            "paper": study_counts(load_study(ROOT / "configs" / "paper.yaml")),
        }
    record.setdefault("variants", list(VARIANTS))
    record.setdefault("ks", list(TINY_KS if record.get("tiny") else KS))
    for key in ("projection", "recommended"):
        record.pop(key, None)  # recomputed
    print(f"== conceptspace GPU check, replayed from {path}: torch {record['torch']}, "
          f"{record['device']} ==")  # fmt: skip
    print(f"tests/test_cuda.py: {record['tests']['summary']}")
    report(record)


def _arrangement_text(arrangement: str, k: int) -> str:
    if arrangement == "ensemble":
        return f"one {k}-model ensemble per process"
    return f"{k} process{'es' if k > 1 else ''} sharing the device"


def _get(record: dict, key: str, field: str):
    v = record["cells"].get(key)
    return v.get(field) if isinstance(v, dict) else None


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(record: dict, studies: dict, variants, ks) -> None:
    cells = record["cells"]

    def status(key: str) -> str:
        v = cells.get(key)
        return v if isinstance(v, str) else ""

    print(f"\n{'measurement':<66} {'s/step':>9} {'img/s':>9}")
    print("training step of a lone run (deterministic cuDNN, math attention unless 'fast')")
    for key in studies:
        print(f"  {record['nets'][key]}")
        for v in variants:
            c = cells.get(f"train/{key}/{v}")
            s, i = (c["s_per_step"], c["images_per_s"]) if isinstance(c, dict) else (None, None)
            print(
                f"    {VARIANT_NOTE[v]:<62} {_fmt(s, '9.4f')} {_fmt(i, '9.0f')} "
                f"{status(f'train/{key}/{v}')}"
            )
    print(f"\n{'per checkpoint of a run (torch default precision)':<66} {'s':>9} {'img/s':>9}")
    for key in studies:
        e, ck = cells.get(f"eval/{key}"), cells.get(f"checkpoint/{key}")
        fp = cells.get(f"fit_classifier/{key}")
        for stage in ("probe", "intervene"):
            d = e.get(stage) if isinstance(e, dict) else None
            label = f"{key}: {stage} stage, {d['images'] if d else '?'} images (sampler + probe)"
            print(
                f"  {label:<64} {_fmt(d and d['s_per_ckpt'], '9.3f')} "
                f"{_fmt(d and d['images_per_s'], '9.0f')} {status(f'eval/{key}')}"
            )
        if isinstance(ck, dict):
            label = f"{key}: checkpoint eval / write / load ({ck['file_mib']:.0f} MiB)"
            times = f"{ck['eval_s']:.3f} / {ck['save_s']:.3f} / {ck['load_s']:.3f}"
            print(f"  {label:<64} {times:>19}")
        else:
            print(f"  {key}: checkpoint {status(f'checkpoint/{key}')}")
        s = fp["s_per_step"] if isinstance(fp, dict) else None
        print(
            f"  {key + ': fit_classifier step':<64} {_fmt(s, '9.4f')} "
            f"{status(f'fit_classifier/{key}')}"
        )
    head = "".join(f"{'K=' + str(k):>10}" for k in ks)
    print(f"\n{'runs at once: aggregate model-steps/s (torch default precision)':<66}{head}")
    for key in ("paper", "default"):
        if not any(k.startswith(f"runs/{key}/") for k in cells):
            continue
        for a, label in (
            ("processes", "K processes sharing the device"),
            ("ensemble", "one K-model ensemble"),
        ):
            vals = "".join(
                f"{_fmt(_get(record, f'runs/{key}/{a}/{k}', 'model_steps_per_s'), '10.1f')}"
                for k in ks
            )
            notes = [status(f"runs/{key}/{a}/{k}") for k in ks]
            note = "; ".join(f"K={k}: {n}" for k, n in zip(ks, notes, strict=True) if n)
            print(f"  {key + ': ' + label:<64}{vals} {note}")


if __name__ == "__main__":
    sys.exit(main())
