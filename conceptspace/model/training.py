"""Training loop of the conditional VDM with dense checkpoints and exact resume.

docs/method.md §3.3.

``train`` runs AdamW on the U-Net and the learned noise schedule, and at every scheduled step
records validation and held-out losses and writes a checkpoint. A killed run started again
with the same arguments continues from its last checkpoint and ends with files that are
byte-identical to an uninterrupted run on the same machine and thread count: every source of
randomness has its own generator whose state is saved in the checkpoint.

Random streams:
- ``torch.manual_seed(seed)``: parameter init, then dropout (the global torch RNG);
- batch generator (CPU): one permutation of the training set per epoch. The last, partial
  batch of an epoch is kept (as a DataLoader with drop_last=False does); a new permutation
  starts the next epoch;
- noise generator (on ``device``): CFG dropout, diffusion times, ε and ε_0;
- evaluation: a fresh generator with a fixed seed at every checkpoint, so losses are
  comparable across checkpoints and evaluating never moves the training streams.

Outputs: ``ckpt_dir/step_XXXXXX.pt`` (see :mod:`conceptspace.model.checkpoints`),
``log_dir/train_log.csv`` (step, loss, grad_norm; every step) and ``log_dir/checkpoints.csv``
(step, train_loss, val_loss, held_out_loss; train_loss averages the steps since the previous
checkpoint). The caller fixes the torch thread count: results depend on it.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from conceptspace.model.averaging import WeightAverage, averaged_state, parameters_of
from conceptspace.model.checkpoints import (
    FORMAT,
    CheckpointError,
    atomic_torch_save,
    canonicalize,
    checkpoint_path,
    load_checkpoint,
    remove_stale_temporaries,
)
from conceptspace.model.diffusion import DATA_NOISE, uncond_dropout, vdm_loss
from conceptspace.model.schedule import GAMMA_MAX, GAMMA_MIN, LogSNRSchedule
from conceptspace.model.unet import UNet, UNetConfig
from conceptspace.sections import Train, check_values

TRAIN_LOG = "train_log.csv"
CKPT_LOG = "checkpoints.csv"
TRAIN_LOG_HEADER = "step,loss,grad_norm"
CKPT_LOG_HEADER = "step,train_loss,val_loss,held_out_loss"
EVAL_BATCH = 256
# Config fields that may change between a run and its resumption without changing results.
RESUMABLE_CHANGES = ("steps", "log_every")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; stored in every checkpoint as ``train_config``.

    The fields up to ``ema`` are settings of the ``train`` params section
    (:class:`conceptspace.sections.Train`), which states their ranges once: they have no
    default here and are checked by the section however the config is built. The fields from
    ``data_noise`` on are the library's own (no params key), with their defaults."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    grad_clip: float | None  # global-norm clip; None or 0 disables it
    p_uncond: float  # probability of the classifier-free-guidance null token
    ema: float  # decay of the weight average checkpoints are evaluated with; 0: raw weights
    data_noise: float = DATA_NOISE
    gamma_min: float = GAMMA_MIN
    gamma_max: float = GAMMA_MAX
    log_every: int = 100

    def __post_init__(self) -> None:
        shared = {k: getattr(self, k) for k in SECTION_FIELDS}
        shared["grad_clip"] = shared["grad_clip"] or 0.0  # the section's "disabled"
        check_values(Train, shared, "train")  # a ParamsError, a ValueError
        if self.log_every < 1:
            raise ValueError(f"log_every must be positive, got {self.log_every}")

    @classmethod
    def from_section(cls, section: Train) -> TrainConfig:
        """The config of a ``train`` params section: each of its settings by name
        (``grad_clip: 0`` disables the clip); the library's own fields keep their defaults."""
        shared = {k: getattr(section, k) for k in SECTION_FIELDS}
        shared["grad_clip"] = shared["grad_clip"] or None
        return cls(**shared)


# The fields of TrainConfig that are settings of the train section, in their order.
SECTION_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.name in Train.model_fields)


def _derived_seed(seed: int, stream: str) -> int:
    """Independent, reproducible seed for one named random stream of a run."""
    digest = hashlib.sha256(f"{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _to_tensor(a: np.ndarray, device: torch.device) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)


@torch.no_grad()
def evaluate_loss(
    net: nn.Module,
    schedule: nn.Module,
    images: Tensor,
    cond: Tensor,
    *,
    seed: int,
    data_noise: float = DATA_NOISE,
    batch_size: int = EVAL_BATCH,
) -> float:
    """Mean total loss (bits/dim) over a whole set, in eval mode, with a fresh generator.

    images: [N, C, H, W], cond: [N, K] on the model's device. Returns NaN for an empty set.
    """
    n = images.shape[0]
    if n == 0:
        return math.nan
    was_training = net.training
    net.eval()
    gen = torch.Generator(device=images.device).manual_seed(seed)
    total = 0.0
    for i in range(0, n, batch_size):
        terms = vdm_loss(
            net,
            schedule,
            images[i : i + batch_size],
            cond[i : i + batch_size],
            generator=gen,
            data_noise=data_noise,
        )
        total += terms["total"].sum().item()
    net.train(was_training)
    return total / n


def _grad_norm(params: list[nn.Parameter], clip: float | None) -> Tensor:
    """Global L2 norm of the gradients before clipping; clips in place when ``clip`` is set.

    The same kernels, in the same order, as ``nn.utils.clip_grad_norm_`` (or ``get_total_norm``)
    on one device and dtype, so the same bits, without their per-call grouping of tensors by
    device and dtype; anything else goes through those functions.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or len({(g.device, g.dtype) for g in grads}) > 1 or grads[0].is_sparse:
        if clip:
            return nn.utils.clip_grad_norm_(params, clip)
        return nn.utils.get_total_norm(grads)
    total_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    if clip:
        clip_coef = float(clip) / (total_norm + 1e-6)  # the expression of clip_grad_norm_
        torch._foreach_mul_(grads, torch.clamp(clip_coef, max=1.0))
    return total_norm


def _optimizer_step(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.step()``; for a fused AdamW whose state exists, the fused kernel is called
    directly with the arguments ``torch.optim.AdamW`` would give it (one device and dtype), which
    skips the per-step Python bookkeeping of ``Optimizer.step`` and gives the same bits."""
    groups = optimizer.param_groups
    g = groups[0]
    fast = (
        isinstance(optimizer, torch.optim.AdamW)
        and len(groups) == 1
        and g["fused"]
        and not (g["amsgrad"] or g["maximize"] or g["capturable"] or g["differentiable"])
        and isinstance(g["lr"], float)
        and getattr(optimizer, "grad_scale", None) is None
        and getattr(optimizer, "found_inf", None) is None
    )
    params = g["params"]
    if fast:
        state = optimizer.state
        fast = all(p.grad is not None and p in state for p in params)
    if fast:
        states = [state[p] for p in params]
        fast = len({(p.device, p.dtype) for p in params}) == 1 and all(
            len(s) == 3 and "step" in s for s in states
        )
    if not fast:
        optimizer.step()
        return
    steps = [s["step"] for s in states]
    beta1, beta2 = g["betas"]
    torch._foreach_add_(steps, 1)
    torch._fused_adamw_(
        params,
        [p.grad for p in params],
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [],
        steps,
        amsgrad=False,
        lr=g["lr"],
        beta1=float(beta1),
        beta2=float(beta2),
        weight_decay=g["weight_decay"],
        eps=g["eps"],
        maximize=False,
        grad_scale=None,
        found_inf=None,
    )


# --- CSV logs -------------------------------------------------------------------------------


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _truncate_csv(path: Path, header: str, last_step: int) -> None:
    """Keep the header and the complete rows with step <= last_step (drops a torn last line)."""
    rows = []
    if path.is_file():
        n_fields = header.count(",") + 1
        for line in path.read_text().splitlines()[1:]:
            fields = line.split(",")
            try:
                values = [float(f) for f in fields[1:]]
                ok = len(values) == n_fields - 1 and int(fields[0]) <= last_step
            except ValueError:
                ok = False
            if ok:
                rows.append(line + "\n")
    else:
        warnings.warn(f"{path} is missing; its rows before step {last_step} are lost", stacklevel=3)
    _write_text_atomic(path, header + "\n" + "".join(rows))


def _append(path: Path, rows: list[str]) -> None:
    if rows:
        with open(path, "a") as f:
            f.writelines(rows)
            f.flush()


# --- checkpoints ----------------------------------------------------------------------------


def _latest_checkpoint(ckpt_dir: Path, ckpt_steps: list[int]) -> dict | None:
    """The newest checkpoint among the scheduled steps that loads cleanly, or None."""
    for step in reversed(ckpt_steps):
        path = checkpoint_path(ckpt_dir, step)
        if not path.exists():
            continue
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as e:
            warnings.warn(f"skipping unusable checkpoint: {e}", stacklevel=3)
            continue
        if ckpt["step"] == step and "optimizer" in ckpt and "rng" in ckpt:
            return ckpt
        warnings.warn(f"skipping checkpoint {path}: wrong step or no training state", stacklevel=3)
    return None


class ResumeError(CheckpointError, ValueError):
    """A checkpoint directory holds a run with other settings: it cannot be resumed. The
    message names the directory to remove (an :class:`~conceptspace.io.ArtifactError`, so a
    stage reports it in one line; a ``ValueError`` for callers of the library)."""


class DivergedError(FloatingPointError):
    """The training loss is not finite; the message names the seed and the step."""


def settings_mismatch(ckpt: dict, net_cfg: UNetConfig, cfg: TrainConfig, seed: int) -> str | None:
    """Why ``ckpt`` cannot be resumed with these settings (None when it can): the first of
    net_config, train_config (less :data:`RESUMABLE_CHANGES`) and seed that differs."""
    old_cfg = {k: v for k, v in ckpt.get("train_config", {}).items() if k not in RESUMABLE_CHANGES}
    new_cfg = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
    for what, old, new in [
        ("net_config", ckpt["net_config"], net_cfg.to_dict()),
        ("train_config", old_cfg, new_cfg),
        ("seed", ckpt.get("seed"), seed),
    ]:
        if old != new:
            if isinstance(old, dict) and isinstance(new, dict):
                keys = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
                diff = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys)
                return f"its {what} differs ({diff})"
            return f"its {what} {old!r} differs from {new!r}"
    return None


def resumable_mismatch(
    ckpt_dir: Path, ckpt_steps: list[int], net_cfg: UNetConfig, cfg: TrainConfig, seed: int
) -> str | None:
    """Why the newest usable checkpoint in ``ckpt_dir`` cannot be resumed with these settings
    ("step N: its ... differs"), or None (no checkpoint, or one that can be resumed)."""
    latest = _latest_checkpoint(Path(ckpt_dir), sorted(set(int(s) for s in ckpt_steps)))
    reason = None if latest is None else settings_mismatch(latest, net_cfg, cfg, seed)
    return None if reason is None else f"step {latest['step']}: {reason}"


def _check_same_run(
    ckpt: dict, net_cfg: UNetConfig, cfg: TrainConfig, seed: int, ckpt_dir: Path | None = None
) -> None:
    """Refuse to resume a checkpoint written by a run with different settings."""
    reason = settings_mismatch(ckpt, net_cfg, cfg, seed)
    if reason is not None:
        where = f" in {ckpt_dir}" if ckpt_dir is not None else ""
        todo = (
            f"remove {ckpt_dir} to start afresh"
            if ckpt_dir is not None
            else "start in an empty checkpoint directory"
        )
        raise ResumeError(
            f"cannot resume from the checkpoint of step {ckpt['step']}{where}: {reason} "
            f"(lr, seed and the network must match the run being resumed); {todo}"
        )


def checked_schedule(ckpt_steps: list[int], steps: int) -> list[int]:
    """The checkpoint steps sorted and de-duplicated; they must be positive and end at
    ``steps`` (training past the last checkpoint would be lost)."""
    ckpt_steps = sorted(set(int(s) for s in ckpt_steps))
    if not ckpt_steps or ckpt_steps[0] < 1 or ckpt_steps[-1] != steps:
        raise ValueError(f"ckpt_steps must be positive and end at steps={steps}, got {ckpt_steps}")
    return ckpt_steps


def rng_record(
    torch_state: Tensor,
    cuda_state: Tensor | None,
    batch_gen: torch.Generator,
    noise_gen: torch.Generator,
    perm: Tensor,
    perm_pos: int,
) -> dict:
    """A run's random streams as its checkpoint records them (the module docstring lists
    them); ``cuda_state`` only on a GPU."""
    rng = {
        "torch": torch_state,
        "batch": batch_gen.get_state(),
        "noise": noise_gen.get_state(),
        "epoch_perm": perm,
        "perm_pos": perm_pos,
    }
    if cuda_state is not None:
        rng["cuda"] = cuda_state
    return rng


def checkpoint_record(
    step: int,
    net_cfg: UNetConfig,
    cfg: TrainConfig,
    seed: int,
    modules: dict[str, nn.Module],
    optimizer: dict,
    rng: dict,
    ema: dict | None,
) -> dict:
    """The checkpoint of one run at ``step``, for a lone run and an ensemble member alike
    (``modules``: its ``net`` and ``schedule``; ``optimizer``: its optimizer's state dict).
    One builder, so both write the same keys in the same order and so the same bytes."""
    ckpt = {
        "format": FORMAT,
        "step": step,
        "net_config": net_cfg.to_dict(),
        "train_config": asdict(cfg),
        "net": modules["net"].state_dict(),
        "schedule": modules["schedule"].state_dict(),
        "optimizer": optimizer,
        "rng": rng,
        "seed": seed,
    }
    if ema is not None:
        ckpt["ema"] = ema
    return ckpt


@dataclass
class _LoneRun:
    """One run's model, optimizer, weight average and random streams (the module docstring
    lists the streams): what a checkpoint saves and a resume restores."""

    net: UNet
    schedule: LogSNRSchedule
    optimizer: torch.optim.Optimizer
    average: WeightAverage | None
    batch_gen: torch.Generator
    noise_gen: torch.Generator
    perm: Tensor  # this epoch's order of the training set
    perm_pos: int  # how much of it has been used
    n: int  # training images
    dev: torch.device

    @classmethod
    def start(cls, net_cfg: UNetConfig, cfg: TrainConfig, seed: int, dev: torch.device, n: int):
        """A fresh run of ``n`` training images: the parameters drawn from ``seed``."""
        torch.manual_seed(seed)
        net = UNet(net_cfg).to(dev)
        schedule = LogSNRSchedule(cfg.gamma_min, cfg.gamma_max).to(dev)
        params = [*net.parameters(), *schedule.parameters()]
        # Fused AdamW is the same algorithm in fewer kernels (~6% faster per step on CPU).
        optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=dev.type in ("cpu", "cuda")
        )
        average = WeightAverage(params, cfg.ema) if cfg.ema > 0 else None
        batch_gen = torch.Generator().manual_seed(_derived_seed(seed, "batch"))
        noise_gen = torch.Generator(device=dev).manual_seed(_derived_seed(seed, "noise"))
        perm = torch.randperm(n, generator=batch_gen)
        return cls(net, schedule, optimizer, average, batch_gen, noise_gen, perm, 0, n, dev)

    @property
    def params(self) -> list[nn.Parameter]:
        return [*self.net.parameters(), *self.schedule.parameters()]

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net, "schedule": self.schedule}

    def next_batch(self, batch_size: int) -> Tensor:
        """The next batch's indices: the epoch's permutation walked in order, its final partial
        batch kept; a new permutation starts the next epoch."""
        if self.perm_pos >= self.n:
            self.perm, self.perm_pos = torch.randperm(self.n, generator=self.batch_gen), 0
        idx = self.perm[self.perm_pos : self.perm_pos + batch_size].to(self.dev)
        self.perm_pos += idx.shape[0]
        return idx

    def checkpoint(self, step: int, net_cfg: UNetConfig, cfg: TrainConfig, seed: int) -> dict:
        cuda = torch.cuda.get_rng_state(self.dev) if self.dev.type == "cuda" else None
        rng = rng_record(
            torch.get_rng_state(), cuda, self.batch_gen, self.noise_gen, self.perm, self.perm_pos
        )
        ema = None
        if self.average is not None:
            ema = averaged_state(self.modules, self.average.tensors)
        optimizer = self.optimizer.state_dict()
        return checkpoint_record(step, net_cfg, cfg, seed, self.modules, optimizer, rng, ema)

    def load(self, ckpt: dict) -> int:
        """Restore the run from its checkpoint; returns the checkpoint's step."""
        self.net.load_state_dict(ckpt["net"])
        self.schedule.load_state_dict(ckpt["schedule"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.average is not None:
            self.average.load(parameters_of(ckpt["ema"], self.modules))
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        if self.dev.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.dev)
        self.batch_gen.set_state(rng["batch"])
        self.noise_gen.set_state(rng["noise"])
        self.perm, self.perm_pos = rng["epoch_perm"], int(rng["perm_pos"])
        return int(ckpt["step"])


def _start_logs(log_dir: Path, resume_step: int | None) -> tuple[Path, Path]:
    """The training and checkpoint logs: new, or cut back to ``resume_step``."""
    train_log, ckpt_log = log_dir / TRAIN_LOG, log_dir / CKPT_LOG
    if resume_step is None:
        _write_text_atomic(train_log, TRAIN_LOG_HEADER + "\n")
        _write_text_atomic(ckpt_log, CKPT_LOG_HEADER + "\n")
    else:
        _truncate_csv(train_log, TRAIN_LOG_HEADER, resume_step)
        _truncate_csv(ckpt_log, CKPT_LOG_HEADER, resume_step)
    return train_log, ckpt_log


def train(
    data: dict[str, np.ndarray],
    net_cfg: UNetConfig,
    cfg: TrainConfig,
    *,
    ckpt_steps: list[int],
    ckpt_dir: Path,
    log_dir: Path,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
) -> None:
    """Train a VDM on ``data`` and checkpoint at ``ckpt_steps``; resume if checkpoints exist.

    data: float32 arrays "train_images" [N, C, H, W], "train_cond" [N, K], and the same for
    "val_*" and "held_out_*". ``ckpt_steps`` must be positive, at most ``cfg.steps``, and end at
    ``cfg.steps`` (training past the last checkpoint would be lost). Returns at once when the
    last scheduled checkpoint already exists.
    """
    ckpt_steps = checked_schedule(ckpt_steps, cfg.steps)
    ckpt_dir, log_dir = Path(ckpt_dir), Path(log_dir)
    for d in (ckpt_dir, log_dir):
        d.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(d)

    resume = _latest_checkpoint(ckpt_dir, ckpt_steps)
    if resume is not None:
        _check_same_run(resume, net_cfg, cfg, seed, ckpt_dir)
        if resume["step"] == ckpt_steps[-1]:
            return

    dev = torch.device(device)
    sets = {
        name: (_to_tensor(data[f"{name}_images"], dev), _to_tensor(data[f"{name}_cond"], dev))
        for name in ("train", "val", "held_out")
    }
    (train_x, train_c), n_train = sets["train"], sets["train"][0].shape[0]
    if n_train == 0:
        raise ValueError("data['train_images'] is empty")
    run = _LoneRun.start(net_cfg, cfg, seed, dev, n_train)
    step = run.load(resume) if resume is not None else 0
    train_log, ckpt_log = _start_logs(log_dir, step if resume is not None else None)
    del resume
    params, eval_seed = run.params, _derived_seed(seed, "eval")

    pending_rows: list[str] = []
    losses_since_ckpt: list[float] = []
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc="train",
        file=sys.stderr,
        disable=None if progress else True,
    )
    run.net.train()
    t_last = time.perf_counter()
    while step < cfg.steps:
        idx = run.next_batch(cfg.batch_size)
        x = train_x[idx]
        h = uncond_dropout(train_c[idx], cfg.p_uncond, run.noise_gen)
        terms = vdm_loss(
            run.net, run.schedule, x, h, generator=run.noise_gen, data_noise=cfg.data_noise
        )
        loss = terms["total"].mean()
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _grad_norm(params, cfg.grad_clip).item()
        _optimizer_step(run.optimizer)
        step += 1
        if run.average is not None:
            run.average.update(params, step)

        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise DivergedError(f"training loss of seed {seed} is {loss_value} at step {step}")
        losses_since_ckpt.append(loss_value)
        pending_rows.append(f"{step},{loss_value:.6f},{grad_norm:.6e}\n")
        bar.update(1)

        if step % cfg.log_every == 0:
            _append(train_log, pending_rows)
            pending_rows = []
            now = time.perf_counter()
            recent = losses_since_ckpt[-cfg.log_every :]
            tqdm.write(
                f"step {step}/{cfg.steps}  loss {sum(recent) / len(recent):.4f}  "
                f"grad_norm {grad_norm:.3e}  {(now - t_last) / cfg.log_every:.4f} s/step",
                file=sys.stderr,
            )
            t_last = now

        if step in ckpt_steps:
            _append(train_log, pending_rows)
            pending_rows = []
            val, held = (
                evaluate_loss(
                    run.net, run.schedule, *sets[name], seed=eval_seed, data_noise=cfg.data_noise
                )
                for name in ("val", "held_out")
            )
            train_loss = sum(losses_since_ckpt) / len(losses_since_ckpt)
            losses_since_ckpt = []
            _append(ckpt_log, [f"{step},{train_loss:.6f},{val:.6f},{held:.6f}\n"])
            ckpt = run.checkpoint(step, net_cfg, cfg, seed)
            atomic_torch_save(canonicalize(ckpt), checkpoint_path(ckpt_dir, step))
            bar.set_postfix(val=f"{val:.4f}", held_out=f"{held:.4f}")
    bar.close()
