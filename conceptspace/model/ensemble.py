"""K runs of one study trained together as one batched model in one process.

One run of these small U-Nets leaves most of a GPU idle (README, "Scaling out"); K runs whose
parameters are stacked along a new leading dimension fill it with about the same number of
kernel launches. Each member keeps everything a lone run (:func:`.training.train`) has: its
own data, its own random streams, its own global-norm gradient clip, its own AdamW state, and
its own checkpoints and logs in the per-run format, so probe, intervene and analyze read them
as they read a lone run's, and a lone run can resume from a member's checkpoint.

How. One forward and backward pass of the U-Net is vectorised over the members with
``torch.func.vmap`` and ``functional_call`` (the template network's parameters are replaced by
each member's slice). Nothing random happens inside the vectorised function (``vmap`` is run
with ``randomness="error"``): every random number is drawn before it, from the member's own
generators and in the order a lone run draws them:

- batches: the member's CPU batch generator (one permutation of its training set per epoch);
- noise: the member's noise generator: CFG dropout, then times, ε and ε_0 (:func:`vdm_noise`);
- dropout: a generator that stands in for the lone run's global torch RNG. On the CPU it
  starts in the state that ``torch.manual_seed(seed)`` and the parameter init leave, and every
  ``nn.Dropout`` is replaced by a mask drawn from it the way ``F.dropout`` draws its own
  (``bernoulli_(1 - p)`` then ``/ (1 - p)``), site by site in forward order. On CUDA the masks
  come from a CUDA generator seeded with the run's seed: a valid dropout stream of its own (a
  lone CUDA run uses the fused dropout kernel, which draws differently).

So on the CPU a member follows its lone run up to floating-point rounding (a batched
convolution rounds differently from a single one), and the random-stream states in its
checkpoints equal the lone run's bit for bit. AdamW is elementwise, so one AdamW over the
stacked parameters is K AdamWs; gradients are clipped with each member's own global norm.

Resume: each member's newest usable checkpoint is found, and the ensemble restarts from the
newest step all members have (a kill between two members' saves leaves them one checkpoint
apart); the files after it are rewritten byte for byte. Like the thread count, the group a run
is trained in changes its rounding: a member is reproducible for the same group, machine and
thread count, and agrees with its lone run to rounding.

Members must share the network, the training config and the checkpoint schedule (one study),
and have the same number of training images, so that their batches and epochs line up; their
validation and held-out sets may differ.

Step modes (:class:`StepMode`, docs/scaling.md). A step is two halves: :meth:`EnsembleTrainer.draw`
makes every random draw and gathers the batch (host and generators), and
:meth:`EnsembleTrainer.compute` does the device work on what was drawn: forward, backward, clip,
AdamW, with no random draw and no host read. The default mode runs them one after the other
(what committed results use). ``static=True`` copies the draws into fixed buffers and runs
``compute`` on those, the formulation a CUDA graph captures; ``cuda_graph=True`` captures it on
CUDA after a few eager warm-up steps and replays it (a partial last batch of an epoch, whose
shape differs, runs eagerly). Both give the default mode's bits. The *fast* options are not
bitwise: ``precision="bf16"`` (autocast around the vectorised forward; the master weights, the
gradients and AdamW's state stay fp32) and ``channels_last`` (the batch laid out so that the
vectorised, grouped convolutions see channels-last tensors); a checkpoint written in a fast mode
says so under ``fast_mode``, and a run never resumes across modes that differ there.
"""

from __future__ import annotations

import copy
import math
import shutil
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, vmap
from tqdm import tqdm

from conceptspace.io import ArtifactError
from conceptspace.model.averaging import WeightAverage, averaged_state, parameters_of
from conceptspace.model.checkpoints import (
    CheckpointError,
    atomic_torch_save,
    canonicalize,
    checkpoint_path,
    remove_stale_temporaries,
)
from conceptspace.model.diffusion import uncond_dropout, vdm_noise
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.training import (
    CKPT_LOG,
    CKPT_LOG_HEADER,
    TRAIN_LOG,
    TRAIN_LOG_HEADER,
    TrainConfig,
    _append,
    _check_same_run,
    _derived_seed,
    _latest_checkpoint,
    _optimizer_step,
    _to_tensor,
    _truncate_csv,
    _write_text_atomic,
    checked_schedule,
    checkpoint_record,
    evaluate_loss,
    resumable_mismatch,
    rng_record,
    train,
)
from conceptspace.model.unet import UNet, UNetConfig
from conceptspace.model.vectorised import MaskDropout, MemberLoss, dropout_sites
from conceptspace.sections import Net


@dataclass(frozen=True)
class Member:
    """One run of an ensemble: its data (the arrays :func:`.training.train` takes), its output
    directories, its seed and a name for messages (e.g. ``c040/seed0``)."""

    data: dict[str, np.ndarray]
    ckpt_dir: Path
    log_dir: Path
    seed: int
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"seed {self.seed} ({self.ckpt_dir})"


PRECISIONS = ("fp32", "bf16")
WARMUP_STEPS = 3  # eager steps before a CUDA graph is captured (allocator, cuDNN, AdamW state)


@dataclass(frozen=True)
class StepMode:
    """How :meth:`EnsembleTrainer.step` runs (module docstring; docs/scaling.md).

    ``static`` and ``cuda_graph`` give the default's bits; ``precision="bf16"`` and
    ``channels_last`` are fast options that do not, and are recorded in checkpoints.
    """

    precision: str = "fp32"
    channels_last: bool = False
    static: bool = False
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"step precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def bitwise(self) -> bool:
        """Whether the mode gives the default mode's bits."""
        return self.precision == "fp32" and not self.channels_last

    def provenance(self) -> dict | None:
        """What a checkpoint records of a fast mode (None for a bitwise one: nothing written)."""
        if self.bitwise:
            return None
        return {"precision": self.precision, "channels_last": self.channels_last, "bitwise": False}


# ---- the trainer --------------------------------------------------------------------------


def check_members(members: Sequence[Member], net_cfg: UNetConfig) -> None:
    """Refuse a group whose runs cannot be trained together (raises ``ValueError``)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    dirs = [Path(d).resolve() for m in members for d in (m.ckpt_dir, m.log_dir)]
    if len(set(dirs)) != len(dirs):
        raise ValueError("every member needs its own checkpoint and log directories")
    shape = (net_cfg.in_channels, net_cfg.image_size, net_cfg.image_size)
    first = None
    for m in members:
        missing = [
            f"{s}_{a}"
            for s in ("train", "val", "held_out")
            for a in ("images", "cond")
            if f"{s}_{a}" not in m.data
        ]
        if missing:
            raise ValueError(f"{m.label}: data lack {missing}")
        x, c = m.data["train_images"], m.data["train_cond"]
        if x.shape[0] == 0:
            raise ValueError(f"{m.label}: data['train_images'] is empty")
        if tuple(x.shape[1:]) != shape or c.shape != (x.shape[0], net_cfg.cond_dim):
            raise ValueError(
                f"{m.label}: training images {tuple(x.shape)} and conditioning {tuple(c.shape)} "
                f"do not fit the network ([N, {', '.join(map(str, shape))}], "
                f"[N, {net_cfg.cond_dim}])"
            )
        if first is None:
            first = m
        elif x.shape[0] != first.data["train_images"].shape[0]:
            raise ValueError(
                f"{m.label} has {x.shape[0]} training images and {first.label} "
                f"{first.data['train_images'].shape[0]}: members of an ensemble need the same "
                "number, so that their batches and epochs line up"
            )


class EnsembleTrainer:
    """The stacked models, one AdamW, and every member's random streams.

    :meth:`step` trains all members one step; :meth:`checkpoint` is member ``j``'s checkpoint
    dict in the per-run format; :meth:`load` restores all members from theirs.
    """

    def __init__(
        self,
        members: Sequence[Member],
        net_cfg: UNetConfig,
        cfg: TrainConfig,
        device: str | torch.device = "cpu",
        mode: StepMode | None = None,
    ) -> None:
        check_members(members, net_cfg)
        self.mode = mode = mode or StepMode()
        if mode.cuda_graph and torch.device(device).type != "cuda":
            raise ValueError(f"cuda_graph needs a CUDA device, not {device!r}; use static=True")
        self.members, self.k = list(members), len(members)
        if mode.channels_last and self.k == 1:
            # With one member, GroupNorm under vmap asks whether its input is channels-last
            # contiguous, which vmap does not implement (measured on CPU, torch 2.13).
            raise ValueError(
                "channels_last needs an ensemble of at least 2 runs: vmap cannot query a "
                "channels-last layout for one; train with channels_last=False"
            )
        self.net_cfg, self.cfg = net_cfg, cfg
        self.dev = dev = torch.device(device)

        def stack(key: str) -> Tensor:
            return torch.stack([_to_tensor(m.data[key], dev) for m in self.members])

        self.train_x, self.train_c = stack("train_images"), stack("train_cond")  # [K, N, ...]
        self.n_train = self.train_x.shape[1]
        self.rows = torch.arange(self.k, device=dev)[:, None]
        self.eval_sets = [
            {
                s: (_to_tensor(m.data[f"{s}_images"], dev), _to_tensor(m.data[f"{s}_cond"], dev))
                for s in ("val", "held_out")
            }
            for m in self.members
        ]

        # Parameters initialised as a lone run's: torch.manual_seed(seed), then UNet(net_cfg).
        nets, after_init = [], []
        for m in self.members:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(m.seed)
                nets.append(UNet(net_cfg))
                after_init.append(torch.get_rng_state())
        schedules = [LogSNRSchedule(cfg.gamma_min, cfg.gamma_max) for _ in self.members]
        self.names = [f"net.{n}" for n, _ in nets[0].named_parameters()]
        self.names += [f"schedule.{n}" for n, _ in schedules[0].named_parameters()]
        self.params: dict[str, Tensor] = {}
        for name in self.names:
            owner, key = name.split(".", 1)
            values = [
                (net if owner == "net" else sched).get_parameter(key).detach()
                for net, sched in zip(nets, schedules, strict=True)
            ]
            self.params[name] = torch.stack(values).to(dev).requires_grad_(True)

        # The function vmap runs: a template whose tensors functional_call replaces.
        self.sites = dropout_sites(nets[0])
        schedule = LogSNRSchedule(cfg.gamma_min, cfg.gamma_max)
        template = MemberLoss(copy.deepcopy(nets[0]), schedule, cfg.data_noise)
        for name, p, _ in self.sites:
            parent, _, child = name.rpartition(".")
            setattr(template.net.get_submodule(parent), child, MaskDropout(p))
        self.template = template.to("meta")
        self._loss = vmap(self._member_loss, randomness="error")

        # One network and schedule on the device, loaded with a member's slice when needed.
        self.eval_net = nets[0].to(dev)
        self.eval_schedule = schedules[0].to(dev)
        del nets, schedules

        # Fused AdamW is the same algorithm in fewer kernels, as in a lone run.
        self.optimizer = torch.optim.AdamW(
            [self.params[n] for n in self.names],
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            fused=dev.type in ("cpu", "cuda"),
        )
        # the weight average each member's checkpoints are evaluated with, as in a lone run
        self.average = (
            WeightAverage([self.params[n] for n in self.names], cfg.ema) if cfg.ema > 0 else None
        )

        seeds = [m.seed for m in self.members]
        self.batch_gens = [torch.Generator().manual_seed(_derived_seed(s, "batch")) for s in seeds]
        self.noise_gens = [
            torch.Generator(device=dev).manual_seed(_derived_seed(s, "noise")) for s in seeds
        ]
        self.eval_seeds = [_derived_seed(s, "eval") for s in seeds]
        self.cpu_states = after_init  # the global CPU RNG state of each lone run
        if dev.type == "cpu":
            self.dropout_gens = [torch.Generator() for _ in seeds]
            for g, state in zip(self.dropout_gens, after_init, strict=True):
                g.set_state(state)
        else:
            self.dropout_gens = [torch.Generator(device=dev).manual_seed(s) for s in seeds]
        self.perms = [torch.randperm(self.n_train, generator=g) for g in self.batch_gens]
        self.perm_pos = 0
        self._perms_dev: Tensor | None = None
        self.step_count = 0
        self._static: dict[str, Tensor] | None = None  # the buffers compute() reads when static
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_out: Tensor | None = None
        self._eager_steps = 0  # eager full-batch steps since the graph was last dropped

    # ---- one step ---------------------------------------------------------------------------
    def _member_loss(self, params, masks, x, cond, t, eps, eps_0) -> Tensor:
        return functional_call(self.template, (params, masks), (x, cond, t, eps, eps_0))

    def _dropout_masks(self, b: int) -> dict[str, Tensor]:
        """[K, b, C, H, W] mask per dropout site, each member's from its own generator."""
        masks = {}
        for name, p, shape in self.sites:
            if p == 0:
                continue
            m = torch.empty((self.k, b, *shape), device=self.dev)
            for j, g in enumerate(self.dropout_gens):
                m[j].bernoulli_(1 - p, generator=g)
            masks[f"net.{name}.mask"] = m.div_(1 - p)
        return masks

    def _clip(self) -> Tensor:
        """Each member's global L2 gradient norm before clipping, [K]; clips in place."""
        grads = []
        for name in self.names:
            g = self.params[name].grad
            if g is None:
                raise RuntimeError(f"parameter {name} received no gradient")
            grads.append(g)
        per_tensor = torch.stack(
            [torch.linalg.vector_norm(g.reshape(self.k, -1), 2, dim=1) for g in grads]
        )
        norms = torch.linalg.vector_norm(per_tensor, 2, dim=0)
        if self.cfg.grad_clip:
            coef = torch.clamp(self.cfg.grad_clip / (norms + 1e-6), max=1.0)
            for g in grads:
                g.mul_(coef.reshape(self.k, *([1] * (g.ndim - 1))))
        return norms

    def draw(self) -> dict[str, Tensor]:
        """Every random input of one step, drawn from the members' generators in a lone run's
        order, and the batch: ``x``, ``cond`` (after CFG dropout), ``t``, ``eps``, ``eps_0``
        stacked over members, and one mask per dropout site. Advances the epoch position."""
        cfg = self.cfg
        if self.perm_pos >= self.n_train:  # a new epoch; the last, partial batch was kept
            self.perms = [torch.randperm(self.n_train, generator=g) for g in self.batch_gens]
            self.perm_pos, self._perms_dev = 0, None
        if self._perms_dev is None:
            self._perms_dev = torch.stack(self.perms).to(self.dev)
        idx = self._perms_dev[:, self.perm_pos : self.perm_pos + cfg.batch_size]
        self.perm_pos += idx.shape[1]
        x, c = self.train_x[self.rows, idx], self.train_c[self.rows, idx]

        h, t, eps, eps_0 = [], [], [], []
        for j, g in enumerate(self.noise_gens):  # a lone run's draws, in its order
            h.append(uncond_dropout(c[j], cfg.p_uncond, g))
            for out, v in zip((t, eps, eps_0), vdm_noise(x[j], g), strict=True):
                out.append(v)
        masks = self._dropout_masks(idx.shape[1])
        stacked = [torch.stack(v) for v in (h, t, eps, eps_0)]
        return dict(zip(("x", "cond", "t", "eps", "eps_0"), [x, *stacked], strict=True)) | masks

    def _layout(self, v: Tensor) -> Tensor:
        """[K, B, C, H, W] laid out so that vmap's grouped convolution input [B, K*C, H, W] is
        channels-last in memory (memory order B, H, W, K, C); other tensors as they are."""
        if not self.mode.channels_last or v.ndim != 5:
            return v
        return v.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)

    def compute(self, inputs: dict[str, Tensor]) -> Tensor:
        """The device half of a step on drawn ``inputs``: loss, backward, per-member clip,
        AdamW. No random draw and no host read, so a CUDA graph can capture it. Returns
        ``[2, K]``: each member's batch loss and pre-clip gradient norm."""
        masks = {k: v for k, v in inputs.items() if k.startswith("net.")}
        args = [self._layout(inputs[k]) for k in ("x", "cond", "t", "eps", "eps_0")]
        autocast = (
            # No cast cache in a captured region (the cached casts would outlive the graph's
            # memory pool; torch.cuda.make_graphed_callables asks the same).
            torch.autocast(
                self.dev.type, dtype=torch.bfloat16, cache_enabled=not self.mode.cuda_graph
            )
            if self.mode.precision == "bf16"
            else nullcontext()
        )
        with autocast:
            losses = self._loss(self.params, masks, *args)
        losses = losses.float()

        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # member j's loss reaches member j's parameters only
        norms = self._clip()
        if self.mode.static or self.mode.cuda_graph:
            # The fused kernel called directly (training._optimizer_step: the same bits), since
            # Optimizer.step refuses a CUDA-graph capture unless the optimizer is "capturable".
            _optimizer_step(self.optimizer)
        else:
            self.optimizer.step()
        return torch.stack([losses.detach(), norms])

    def step(self) -> Tensor:
        """One training step of every member. Returns ``[2, K]`` on the device: each member's
        batch loss and pre-clip gradient norm (not synchronised, so the host runs ahead)."""
        inputs = self.draw()
        mode = self.mode
        full = inputs["x"].shape[1] == self.cfg.batch_size
        if not (mode.static or mode.cuda_graph) or not full:
            out = self.compute(inputs)
        elif mode.cuda_graph and self._graph is not None:
            for k, v in inputs.items():
                self._static[k].copy_(v)
            self._graph.replay()
            out = self._graph_out.clone()
        else:
            if self._static is None:
                self._static = {k: v.clone() for k, v in inputs.items()}
            else:
                for k, v in inputs.items():
                    self._static[k].copy_(v)
            if mode.cuda_graph:  # warm-up on a side stream, as capture requires
                side = torch.cuda.Stream(self.dev)
                side.wait_stream(torch.cuda.current_stream(self.dev))
                with torch.cuda.stream(side):
                    out = self.compute(self._static)
                torch.cuda.current_stream(self.dev).wait_stream(side)
                out = out.clone()
            else:
                out = self.compute(self._static).clone()
            self._eager_steps += 1
            if mode.cuda_graph and self._eager_steps >= WARMUP_STEPS:
                self._capture()
        self.step_count += 1
        if self.average is not None:
            self.average.update([self.params[n] for n in self.names], self.step_count)
        return out

    def _capture(self) -> None:
        """Capture :meth:`compute` on the static buffers as a CUDA graph (nothing runs)."""
        torch.cuda.synchronize(self.dev)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.compute(self._static)
        self._graph, self._graph_out = graph, out

    def _drop_graph(self) -> None:
        """Forget the captured graph (optimizer state replaced): recaptured after warm-up."""
        self._graph, self._graph_out, self._eager_steps = None, None, 0

    # ---- members' checkpoints ---------------------------------------------------------------
    @torch.no_grad()
    def member_model(self, j: int) -> tuple[UNet, LogSNRSchedule]:
        """The (shared) network and schedule loaded with member ``j``'s parameters."""
        for name in self.names:
            owner, key = name.split(".", 1)
            module = self.eval_net if owner == "net" else self.eval_schedule
            module.get_parameter(key).copy_(self.params[name][j])
        return self.eval_net, self.eval_schedule

    def checkpoint(self, j: int) -> dict:
        """Member ``j``'s checkpoint at the current step, as a lone run writes it."""
        net, schedule = self.member_model(j)
        sd = self.optimizer.state_dict()
        state = {
            i: {key: v.clone() if key == "step" else v[j].clone() for key, v in s.items()}
            for i, s in sd["state"].items()
        }
        on_cpu = self.dev.type == "cpu"
        rng = rng_record(
            self.dropout_gens[j].get_state() if on_cpu else self.cpu_states[j],
            self.dropout_gens[j].get_state() if self.dev.type == "cuda" else None,
            self.batch_gens[j],
            self.noise_gens[j],
            self.perms[j],
            self.perm_pos,
        )
        modules = {"net": net, "schedule": schedule}
        ema = None
        if self.average is not None:
            ema = averaged_state(modules, [a[j] for a in self.average.tensors])
        optimizer = {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}
        seed = self.members[j].seed
        ckpt = checkpoint_record(
            self.step_count, self.net_cfg, self.cfg, seed, modules, optimizer, rng, ema
        )
        return ckpt | ({"fast_mode": fast} if (fast := self.mode.provenance()) else {})

    @torch.no_grad()
    def load(self, ckpts: Sequence[dict]) -> None:
        """Restore every member from its checkpoint (all at the same step)."""
        if len(ckpts) != self.k:
            raise ValueError(f"{len(ckpts)} checkpoints for {self.k} members")
        steps = {int(c["step"]) for c in ckpts}
        positions = {int(c["rng"]["perm_pos"]) for c in ckpts}
        if len(steps) != 1 or len(positions) != 1:
            raise ValueError(
                f"members' checkpoints disagree: steps {steps}, batch positions {positions}"
            )
        for name in self.names:
            owner, key = name.split(".", 1)
            value = torch.stack([c[owner][key] for c in ckpts])
            self.params[name].copy_(value.to(self.dev))
        if self.average is not None:
            modules = {"net": self.eval_net, "schedule": self.eval_schedule}
            members = [parameters_of(c["ema"], modules) for c in ckpts]
            self.average.load([torch.stack(ts) for ts in zip(*members, strict=True)])
        opts = [c["optimizer"] for c in ckpts]
        state = {}
        for i, s0 in opts[0]["state"].items():
            state[i] = {}
            for key, v in s0.items():
                vs = [o["state"][i][key] for o in opts]
                if key == "step":
                    if any(not torch.equal(u, v) for u in vs):
                        raise ValueError("members' optimizer step counts differ")
                    state[i][key] = v
                else:
                    state[i][key] = torch.stack(vs)
        self.optimizer.load_state_dict({"state": state, "param_groups": opts[0]["param_groups"]})
        self._drop_graph()  # the graph read the replaced state tensors
        for j, c in enumerate(ckpts):
            rng = c["rng"]
            self.cpu_states[j] = rng["torch"]
            if self.dev.type == "cpu":
                self.dropout_gens[j].set_state(rng["torch"])
            elif "cuda" in rng:
                self.dropout_gens[j].set_state(rng["cuda"])
            self.batch_gens[j].set_state(rng["batch"])
            self.noise_gens[j].set_state(rng["noise"])
            self.perms[j] = rng["epoch_perm"]
        self.perm_pos, self._perms_dev = positions.pop(), None
        self.step_count = steps.pop()


# ---- the training loop --------------------------------------------------------------------


def _check_same_mode(ckpt: dict, mode: StepMode, member: Member) -> None:
    """Refuse to resume across step modes that differ in their bits (``fast_mode``)."""
    old, new = ckpt.get("fast_mode"), mode.provenance()
    if old != new:
        raise ValueError(
            f"{member.label}: cannot resume from step {ckpt['step']}: it was trained with "
            f"fast_mode {old} and this run asks for {new}; train with the same step mode or "
            "use a fresh checkpoint directory"
        )


def _common_resume(
    members: Sequence[Member],
    net_cfg: UNetConfig,
    cfg: TrainConfig,
    ckpt_steps: list[int],
    mode: StepMode | None = None,
) -> list[dict] | None:
    """Every member's checkpoint at the newest step that all of them have, or None (start
    afresh). Refuses checkpoints written with other settings or another fast mode."""
    latest = [_latest_checkpoint(m.ckpt_dir, ckpt_steps) for m in members]
    for c, m in zip(latest, members, strict=True):
        if c is not None:
            _check_same_run(c, net_cfg, cfg, m.seed)
            _check_same_mode(c, mode or StepMode(), m)
    while True:
        if any(c is None for c in latest):
            return None
        target = min(int(c["step"]) for c in latest)
        if all(int(c["step"]) == target for c in latest):
            return latest
        earlier = [s for s in ckpt_steps if s <= target]
        latest = [
            c if int(c["step"]) == target else _latest_checkpoint(m.ckpt_dir, earlier)
            for c, m in zip(latest, members, strict=True)
        ]


def train_ensemble(
    members: Sequence[Member],
    net_cfg: UNetConfig,
    cfg: TrainConfig,
    *,
    ckpt_steps: list[int],
    device: str = "cpu",
    progress: bool = True,
    mode: StepMode | None = None,
) -> None:
    """Train every member as :func:`.training.train` trains one run, all in one batched model;
    resume if checkpoints exist. Returns at once when every member's last checkpoint exists.

    Members share ``net_cfg``, ``cfg`` and ``ckpt_steps`` (which must be positive and end at
    ``cfg.steps``) and have the same number of training images (see :func:`check_members`).
    ``mode`` is the step mode (:class:`StepMode`; default: eager, bitwise).
    """
    ckpt_steps = checked_schedule(ckpt_steps, cfg.steps)
    check_members(members, net_cfg)
    for m in members:
        for d in (m.ckpt_dir, m.log_dir):
            Path(d).mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(d)

    resume = _common_resume(members, net_cfg, cfg, ckpt_steps, mode)
    if resume is not None and int(resume[0]["step"]) == ckpt_steps[-1]:
        return
    trainer = EnsembleTrainer(members, net_cfg, cfg, device, mode)
    logs = [(Path(m.log_dir) / TRAIN_LOG, Path(m.log_dir) / CKPT_LOG) for m in members]
    for train_log, ckpt_log in logs:
        if resume is None:
            _write_text_atomic(train_log, TRAIN_LOG_HEADER + "\n")
            _write_text_atomic(ckpt_log, CKPT_LOG_HEADER + "\n")
    if resume is not None:
        trainer.load(resume)
        for train_log, ckpt_log in logs:
            _truncate_csv(train_log, TRAIN_LOG_HEADER, trainer.step_count)
            _truncate_csv(ckpt_log, CKPT_LOG_HEADER, trainer.step_count)
    del resume

    k, step = trainer.k, trainer.step_count
    pending: list[tuple[int, Tensor]] = []  # per-step [2, K] stats, read at the next flush
    rows: list[list[str]] = [[] for _ in members]
    since_ckpt: list[list[float]] = [[] for _ in members]
    ckpt_set = set(ckpt_steps)
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        desc=f"train x{k}",
        file=sys.stderr,
        disable=None if progress else True,
    )

    def flush() -> None:
        """Read the pending stats (one device sync), check them, write the log rows."""
        values = torch.stack([v for _, v in pending]).cpu().tolist() if pending else []
        for (s, _), (loss, norm) in zip(pending, values, strict=True):
            for j in range(k):
                if not math.isfinite(loss[j]):
                    raise FloatingPointError(
                        f"training loss of {members[j].label} is {loss[j]} at step {s}"
                    )
                since_ckpt[j].append(loss[j])
                rows[j].append(f"{s},{loss[j]:.6f},{norm[j]:.6e}\n")
        pending.clear()
        for j, (train_log, _) in enumerate(logs):
            _append(train_log, rows[j])
            rows[j] = []

    t_last = time.perf_counter()
    while step < cfg.steps:
        pending.append((step + 1, trainer.step()))
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            flush()
            now = time.perf_counter()
            recent = "  ".join(
                f"{sum(x[-cfg.log_every :]) / len(x[-cfg.log_every :]):.4f}" for x in since_ckpt
            )
            tqdm.write(
                f"step {step}/{cfg.steps}  loss {recent}  "
                f"{(now - t_last) / cfg.log_every:.4f} s/step ({k} runs)",
                file=sys.stderr,
            )
            t_last = now
        if step in ckpt_set:
            flush()
            for j, m in enumerate(members):
                net, schedule = trainer.member_model(j)
                losses = [
                    evaluate_loss(
                        net,
                        schedule,
                        *trainer.eval_sets[j][s],
                        seed=trainer.eval_seeds[j],
                        data_noise=cfg.data_noise,
                    )
                    for s in ("val", "held_out")
                ]
                train_loss = sum(since_ckpt[j]) / len(since_ckpt[j])
                since_ckpt[j] = []
                _append(logs[j][1], [f"{step},{train_loss:.6f},{losses[0]:.6f},{losses[1]:.6f}\n"])
                atomic_torch_save(
                    canonicalize(trainer.checkpoint(j)), checkpoint_path(m.ckpt_dir, step)
                )
    bar.close()


# ---- a training job: its runs trained in work folders, then put in place -------------------


def work_folder(ckpt_dir: str | Path) -> Path:
    """``<ckpt_dir>.partial``: where a run of a :class:`TrainingJob` trains."""
    ckpt_dir = Path(ckpt_dir)
    return ckpt_dir.with_name(ckpt_dir.name + ".partial")


@dataclass(frozen=True)
class TrainingJob:
    """The runs of one training job (stages/train.py), trained as one ensemble, or lone when
    there is one (:func:`.training.train`, the same bits as a group of one would give).

    Each run trains in its work folder (:func:`work_folder`, ``ckpt`` and ``log`` inside),
    renamed into place once the job is done, so that its outputs are never half-written; a
    killed job started again resumes from the last checkpoints there."""

    runs: tuple[tuple[str, int], ...]  # (run id, seed) of each member
    net_cfg: UNetConfig
    members: tuple[Member, ...]  # each training in its work folder
    outputs: tuple[tuple[Path, Path], ...]  # (ckpt_dir, log_dir) of each run, once done

    @classmethod
    def plan(
        cls,
        net: Net,
        runs: Sequence[tuple[str, int]],
        datasets: Sequence[dict[str, np.ndarray]],
        ckpt_dirs: Sequence[str | Path],
        log_dirs: Sequence[str | Path],
    ) -> TrainingJob:
        """The job of these runs and their datasets (the arrays :func:`.training.train`
        takes), with the U-Net of the ``train.net`` section at the datasets' image size and
        conditioning width; raises :class:`~conceptspace.io.ArtifactError` for runs that
        cannot be trained together (:func:`check_members`)."""
        shapes = {(d["train_images"].shape[-1], d["train_cond"].shape[1]) for d in datasets}
        if len(shapes) != 1:
            raise ArtifactError(
                f"the group's datasets differ in image size or conditioning width "
                f"{sorted(shapes)}; an ensemble trains one network"
            )
        net_cfg = UNetConfig.from_section(net, *shapes.pop())
        members = tuple(
            Member(d, work_folder(c) / "ckpt", work_folder(c) / "log", s, f"{r}/seed{s}")
            for (r, s), d, c in zip(runs, datasets, ckpt_dirs, strict=True)
        )
        try:
            check_members(members, net_cfg)
        except ValueError as e:
            names = [m.name for m in members]
            raise ArtifactError(f"cannot train {names} together: {e}") from None
        outputs = tuple((Path(c), Path(g)) for c, g in zip(ckpt_dirs, log_dirs, strict=True))
        return cls(tuple(runs), net_cfg, members, outputs)

    @property
    def label(self) -> str:
        """The runs, for messages: ``c040 seed 0, c080 seed 0``."""
        return ", ".join(f"{r} seed {s}" for r, s in self.runs)

    def train(self, cfg: TrainConfig, ckpt_steps: list[int], device: str = "cpu") -> None:
        """Train the runs and put their checkpoints and logs in place. A work folder written
        with other settings is discarded first. A failed write raises
        :class:`~conceptspace.io.ArtifactError` saying what was kept to resume from; a diverged
        loss raises ``FloatingPointError``, and the work folders stay for a resume."""
        for run, member in zip(self.runs, self.members, strict=True):
            self._discard_unresumable(run, member, cfg, ckpt_steps)
        try:
            if len(self.members) == 1:
                m = self.members[0]
                train(
                    m.data,
                    self.net_cfg,
                    cfg,
                    ckpt_steps=ckpt_steps,
                    ckpt_dir=m.ckpt_dir,
                    log_dir=m.log_dir,
                    seed=m.seed,
                    device=device,
                )
            else:
                train_ensemble(
                    self.members, self.net_cfg, cfg, ckpt_steps=ckpt_steps, device=device
                )
        except (CheckpointError, OSError) as e:  # a full disk while saving a checkpoint or a log
            cause = str(e) if isinstance(e, CheckpointError) else f"cannot write {e.filename} ({e})"
            raise ArtifactError(
                f"run {self.label}: {cause}; {self._after_write_failure()}"
            ) from None
        for member, (ckpt_dir, log_dir) in zip(self.members, self.outputs, strict=True):
            work = member.ckpt_dir.parent
            for src, dst in ((member.ckpt_dir, ckpt_dir), (member.log_dir, log_dir)):
                if dst.is_dir() and not dst.is_symlink():
                    shutil.rmtree(dst)
                elif dst.exists() or dst.is_symlink():  # a file where the folder belongs
                    dst.unlink()
                dst.parent.mkdir(parents=True, exist_ok=True)
                src.rename(dst)
            shutil.rmtree(work)

    def _discard_unresumable(
        self, run: tuple[str, int], m: Member, cfg: TrainConfig, ckpt_steps: list[int]
    ) -> None:
        """Start a run afresh when its unfinished work folder was written with other settings
        (a changed lr, say): that folder is only ever resumed, never served as a result, so
        nothing current is lost; the run's finished outputs stay until replaced."""
        reason = resumable_mismatch(m.ckpt_dir, ckpt_steps, self.net_cfg, cfg, m.seed)
        if reason is None:
            return
        work = m.ckpt_dir.parent
        print(
            f"{run[0]} seed {run[1]}: the unfinished run in {work} cannot be resumed ({reason});"
            " discarding it and starting afresh",
            file=sys.stderr,
        )
        shutil.rmtree(work)

    def _after_write_failure(self) -> str:
        """What is left after a failed write and what to do: a work folder without a complete
        checkpoint holds nothing to resume and is removed (it would only take space); one with
        checkpoints is kept, and named, so that a rerun resumes from its last one."""
        kept = []
        for m in self.members:
            work = m.ckpt_dir.parent
            steps = sorted(m.ckpt_dir.glob("step_*.pt")) if work.is_dir() else []
            if steps:  # atomic saves: every step file there is complete
                kept.append(f"{work} (up to {steps[-1].stem})")
            else:
                shutil.rmtree(work, ignore_errors=True)
        if not kept:
            return "nothing half-written was kept; free disk space and run again"
        return (
            "free disk space and run again: training resumes from the last complete checkpoint in "
            + ", ".join(kept)
            + " (remove that folder instead to start afresh)"
        )
