"""Training-step throughput of the U-Net denoiser, against the machine's fp32 matmul peak.

    python benchmarks/bench_train.py [--threads N] [--device cpu|cuda] [--steps 20]
    python benchmarks/bench_train.py --nets default --variants eager --batch 32 --image-sizes 16 8

For the small default net at 16 px and the paper's net at 32 px (batch 64) this times the full
training step used by ``conceptspace.model.training`` (VDM loss, backward, global-norm clip, fused
AdamW), counts its FLOPs with ``FlopCounterMode`` (forward + backward of one step; convs,
matmuls and attention), and compares the achieved FLOP/s with a large fp32 ``torch.mm`` timed
in the same process on the same threads and device. It also tries what PyTorch offers to go
faster: channels_last memory format, bf16 autocast and ``torch.compile``. ``--image-sizes``
times the default net at other image sizes too (what a smaller image would save per step).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from conceptspace.model import training
from conceptspace.model.diffusion import vdm_loss
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.unet import DEFAULT, PAPER, UNet, UNetConfig

BATCH = 64
VARIANTS = ("eager", "channels_last", "bf16_autocast", "compile")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 FLOP/s of an n×n @ n×n matmul (2n³ FLOPs)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times)


def make_step(
    cfg: UNetConfig, device: torch.device, variant: str, batch: int = BATCH
) -> Callable[[bool], None]:
    """One training step of ``cfg`` at ``batch``; ``step(optimize=False)`` skips the update."""
    torch.manual_seed(0)
    net = UNet(cfg).to(device)
    schedule = LogSNRSchedule().to(device)
    x = torch.rand(batch, cfg.in_channels, cfg.image_size, cfg.image_size, device=device)
    cond = torch.rand(batch, cfg.cond_dim, device=device)
    if variant == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = [*net.parameters(), *schedule.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, fused=True)
    model = torch.compile(net) if variant == "compile" else net
    gen = torch.Generator(device=device).manual_seed(0)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if variant == "bf16_autocast"
        else nullcontext()
    )

    def step(optimize: bool = True) -> None:
        with autocast:
            loss = vdm_loss(model, schedule, x, cond, generator=gen)["total"].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if optimize:  # clip and update exactly as conceptspace.model.training does
            training._grad_norm(params, 0.01)
            training._optimizer_step(opt)

    return step


def count_flops(cfg: UNetConfig, device: torch.device, batch: int = BATCH) -> int:
    step = make_step(cfg, device, "eager", batch)
    with FlopCounterMode(display=False) as counter:
        step(optimize=False)
    return counter.get_total_flops()


def time_steps(
    step: Callable[[bool], None], device: torch.device, steps: int
) -> tuple[float, float, float]:
    """Seconds of the first step (compilation shows here), then the median wall-clock and
    process-CPU seconds per step after two warm-up steps. On a shared machine the CPU time of a
    one-thread run is the steadier number: it does not count time spent descheduled."""
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - t0
    step()
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return first, statistics.median(wall), statistics.median(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--steps", type=int, default=20, help="timed steps, default net")
    p.add_argument("--paper-steps", type=int, default=None, help="timed steps, paper net")
    p.add_argument("--nets", nargs="+", choices=("default", "paper"), default=["default", "paper"])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--batch", type=int, default=BATCH, help="images per step (the study: 32)")
    p.add_argument(
        "--image-sizes",
        nargs="+",
        type=int,
        default=[DEFAULT.image_size],
        help="image sizes of the default net (pixels per side)",
    )
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = matmul_peak(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__}, {name}, {torch.get_num_threads()} thread(s), "
        f"batch {args.batch}"
    )
    print(f"fp32 matmul peak (2048x2048 mm): {peak / 1e9:.1f} GFLOP/s\n")

    nets = {}
    if "default" in args.nets:
        for s in args.image_sizes:
            label = "default" if s == DEFAULT.image_size else f"default@{s}px"
            nets[label] = (dataclasses.replace(DEFAULT, image_size=s), args.steps)
    if "paper" in args.nets:
        nets["paper"] = (PAPER, args.paper_steps or args.steps)
    header = f"{'net':<14} {'variant':<14} {'params':>7} {'s/step':>8} {'img/s':>7} "
    header += (
        f"{'GFLOP/step':>10} {'GFLOP/s':>8} {'%peak':>6} {'cpu-s/step':>10} {'1st step s':>10}"
    )
    print(header)
    for key, (cfg, steps) in nets.items():
        flops = count_flops(cfg, device, args.batch)
        n_params = sum(p.numel() for p in UNet(cfg).parameters())
        for variant in args.variants:
            try:
                first, sec, cpu = time_steps(
                    make_step(cfg, device, variant, args.batch), device, steps
                )
            except Exception as e:  # e.g. no compiler for torch.compile
                print(f"{key:<14} {variant:<14} failed: {type(e).__name__}: {e}"[:200])
                continue
            print(
                f"{key:<14} {variant:<14} {n_params / 1e6:>6.2f}M {sec:>8.4f} "
                f"{args.batch / sec:>7.0f} "
                f"{flops / 1e9:>10.2f} {flops / sec / 1e9:>8.1f} {100 * flops / sec / peak:>5.0f}% "
                f"{cpu:>10.4f} {first:>10.2f}",
                flush=True,
            )
    print("\nFLOPs are those of the fp32 eager step (forward + backward); optimizer excluded.")


if __name__ == "__main__":
    main()
