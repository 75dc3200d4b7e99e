"""The default training step, old and new, side by side in one process on one thread.

    python benchmarks/bench_step.py [--reps 8] [--steps 5] [--threads 1] [--profile-steps 10]

"old" is a frozen copy of the step as ``conceptspace.model.training`` ran it before the speed
work: ``nn.Dropout`` (torch's Bernoulli kernel), ``nn.utils.clip_grad_norm_`` and
``AdamW.step()``. "new" is the step ``training.train`` runs today (``training._grad_norm``,
``training._optimizer_step``, the U-Net's own ``Dropout``). Both train the params.yaml default
net (channels 16/32/32, batch 32, 16 px) from the same seed on the same batches, and the script
first checks that they give the same losses, gradient norms and parameters bit for bit.

Timing: the two steps alternate in blocks of ``--steps`` steps, ``--reps`` times; the medians of
the per-step wall-clock and process-CPU times are reported (on a shared machine the CPU time of a
one-thread run is the steadier number). FLOPs per step come from ``FlopCounterMode`` (forward
and backward), the peak from a 2048x2048 fp32 ``torch.mm`` on the same thread. The per-op
profile (``torch.profiler``, self CPU time) is of the new step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from conceptspace.model import training
from conceptspace.model.diffusion import uncond_dropout, vdm_loss
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.unet import DEFAULT, Dropout, UNet

BATCH = 32  # params.yaml train.batch_size
GRAD_CLIP = 0.01  # params.yaml train.grad_clip
N_DATA = 512
NOMINAL_PEAK = 141e9  # the single-thread fp32 matmul peak this machine reaches when idle

# Self-CPU-time categories of the per-op profile: op-name fragments, first match wins.
CATEGORIES = (
    ("convolution (oneDNN, incl. layout reorders)", ("convolution", "ConvolutionBackward")),
    ("GELU", ("gelu", "Gelu")),
    ("dropout mask", ("random_", "bernoulli", "bitwise_and", "lt_")),
    ("GroupNorm", ("group_norm", "GroupNorm")),
    ("linear layers", ("aten::mm", "addmm", "Addmm", "aten::t", "transpose")),
    ("optimizer + clip", ("adamw", "AdamW", "foreach", "vector_norm", "zero_grad")),
)


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 FLOP/s of an n×n @ n×n matmul (2n³ FLOPs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times)


def _old_dropout(module: nn.Dropout, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.dropout(x, module.p, module.training, module.inplace)


def make_step(variant: str) -> tuple[Callable[[], tuple[float, float]], list[nn.Parameter]]:
    """A closure running one training step as ``training.train`` does (batch, CFG dropout, VDM
    loss, zero_grad, backward, clip, AdamW); returns (loss, grad_norm)."""
    torch.manual_seed(0)
    net = UNet(DEFAULT).train()
    if variant == "old":
        for m in net.modules():
            if isinstance(m, Dropout):
                m.forward = _old_dropout.__get__(m)
    schedule = LogSNRSchedule()
    params = [*net.parameters(), *schedule.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, fused=True)
    data_gen = torch.Generator().manual_seed(1)
    images = torch.rand(N_DATA, DEFAULT.in_channels, 16, 16, generator=data_gen)
    cond = torch.rand(N_DATA, DEFAULT.cond_dim, generator=data_gen)
    batch_gen = torch.Generator().manual_seed(2)
    noise_gen = torch.Generator().manual_seed(3)

    def step() -> tuple[float, float]:
        idx = torch.randint(N_DATA, (BATCH,), generator=batch_gen)
        h = uncond_dropout(cond[idx], 0.0, noise_gen)
        loss = vdm_loss(net, schedule, images[idx], h, generator=noise_gen)["total"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if variant == "old":
            grad_norm = nn.utils.clip_grad_norm_(params, GRAD_CLIP).item()
            opt.step()
        else:
            grad_norm = training._grad_norm(params, GRAD_CLIP).item()
            training._optimizer_step(opt)
        return loss.item(), grad_norm

    return step, params


def check_identical(n: int = 6) -> bool:
    """Both variants from the same seed: same losses, gradient norms and parameters, bit for bit
    (each variant's steps draw from the global torch RNG, so they run one after the other)."""
    out = {}
    for variant in ("old", "new"):
        torch.manual_seed(0)
        step, params = make_step(variant)
        out[variant] = ([step() for _ in range(n)], [p.detach().clone() for p in params])
    (la, pa), (lb, pb) = out["old"], out["new"]
    return la == lb and all(torch.equal(a, b) for a, b in zip(pa, pb, strict=True))


def count_flops() -> int:
    step, _ = make_step("new")
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=8, help="alternating blocks per variant")
    p.add_argument("--steps", type=int, default=5, help="steps per block")
    p.add_argument("--profile-steps", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    identical = check_identical()
    peak = matmul_peak()
    flops = count_flops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {BATCH}, 16 px")
    print(f"fp32 matmul peak (2048x2048 mm): {peak / 1e9:.1f} GFLOP/s")
    print(f"FLOPs per step (forward + backward): {flops / 1e9:.2f} GFLOP")
    print(f"old and new steps bit-identical (losses, grad norms, parameters): {identical}\n")

    steps = {v: make_step(v)[0] for v in ("old", "new")}
    for step in steps.values():
        for _ in range(3):
            step()
    wall: dict[str, list[float]] = {v: [] for v in steps}
    cpu: dict[str, list[float]] = {v: [] for v in steps}
    for _ in range(args.reps):
        for v, step in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                step()
            wall[v].append((time.perf_counter() - t0) / args.steps)
            cpu[v].append((time.process_time() - c0) / args.steps)

    print(
        f"{'step':<5} {'ms/step':>8} {'cpu-ms':>7} {'steps/s':>8} {'speed-up':>8} "
        f"{'%peak':>6} {'%141GF':>6}"
    )
    ref = statistics.median(cpu["old"])
    for v in steps:
        w, c = statistics.median(wall[v]), statistics.median(cpu[v])
        print(
            f"{v:<5} {1e3 * w:>8.2f} {1e3 * c:>7.2f} {1 / c:>8.1f} {ref / c:>7.2f}x "
            f"{100 * flops / c / peak:>5.1f}% {100 * flops / c / NOMINAL_PEAK:>5.1f}%"
        )
    print("(speed-up and shares of peak from the median process-CPU time per step; %peak is of")
    print(" the peak measured above, %141GF of the 141 GFLOP/s this machine reaches when idle)\n")

    step = steps["new"]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.profile_steps):
            step()
    print(f"new step, per-op profile over {args.profile_steps} steps (self CPU time):")
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=10))
    total = sum(e.self_cpu_time_total for e in events)
    shares = dict.fromkeys([name for name, _ in CATEGORIES] + ["other"], 0.0)
    for e in events:
        name = next((n for n, keys in CATEGORIES if any(k in e.key for k in keys)), "other")
        shares[name] += e.self_cpu_time_total
    print("new step, self CPU time by kind (share of the profiled step):")
    for name, t in shares.items():
        print(f"  {name:<46} {100 * t / total:>5.1f}%  {t / 1e3 / args.profile_steps:>6.2f} ms")


if __name__ == "__main__":
    main()
