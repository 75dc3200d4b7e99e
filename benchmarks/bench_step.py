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

Two further measurements say why the step does not go 2x faster on this CPU:

* "bf16": the new step under ``torch.autocast("cpu", torch.bfloat16)``, timed in the same
  alternating blocks (not a pipeline option: it changes the numbers the study is made of; shown
  because lower precision is the usual next switch, and this CPU has AVX-512 BF16 but no AMX).
* the convolution roofline: every convolution the step runs (shapes captured by hooks during one
  step), timed alone through oneDNN (forward, and forward + backward as autograd runs it), next
  to the same work as plain MKL matrix products (the im2col GEMMs a convolution lowers to:
  forward, grad-input, grad-weight), and the Amdahl bounds these imply for the whole step.
"""

from __future__ import annotations

import argparse
import collections
import functools
import resource
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
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


def _bf16(step: Callable[[], tuple[float, float]]) -> Callable[[], tuple[float, float]]:
    def bf16_step() -> tuple[float, float]:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return step()

    return bf16_step


def _median_cpu(fn: Callable[[], object], n: int = 10, reps: int = 5) -> float:
    """Median over ``reps`` blocks of the process-CPU seconds per call of ``fn`` (after warm-up)."""
    for _ in range(3):
        fn()
    per_call = []
    for _ in range(reps):
        c0 = time.process_time()
        for _ in range(n):
            fn()
        per_call.append((time.process_time() - c0) / n)
    return statistics.median(per_call)


def conv_calls() -> list[tuple[str, tuple[int, ...], tuple[int, ...], int, int, bool]]:
    """Every convolution one training step of the default net runs, in forward order:
    (kind, input shape, weight shape, stride, padding, input needs grad)."""
    torch.manual_seed(0)
    net = UNet(DEFAULT).train()
    calls = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        kind = "convT" if isinstance(module, nn.ConvTranspose2d) else "conv"
        x = args[0]
        calls.append(
            (
                kind,
                tuple(x.shape),
                tuple(module.weight.shape),
                module.stride[0],
                module.padding[0],
                x.requires_grad,
            )
        )

    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            m.register_forward_hook(hook)
    z = torch.rand(BATCH, DEFAULT.in_channels, 16, 16)
    net(z, torch.rand(BATCH), torch.rand(BATCH, DEFAULT.cond_dim))
    return calls


def _out_channels(kind: str, ws: tuple[int, ...]) -> int:
    """Output channels from the weight shape: [out, in, k, k] (conv) or [in, out, k, k] (convT)."""
    return ws[0] if kind == "conv" else ws[1]


def _gemm_shape(kind: str, xs: tuple[int, ...], ws: tuple[int, ...], stride: int, pad: int):
    """(m, k, n) of the GEMM a convolution lowers to: forward [m, k] @ [k, n]."""
    b, c_in, h, _ = xs
    c_out, kh = _out_channels(kind, ws), ws[2]
    if kind == "conv":  # im2col: one row per output pixel, one column per (c_in, tap)
        h_out = (h + 2 * pad - kh) // stride + 1
        return b * h_out * h_out, c_in * kh * kh, c_out
    return b * h * h, c_in, c_out * kh * kh  # transposed: each input pixel @ [c_in, c_out·taps]


def time_conv(call: tuple) -> tuple[float, float, float, float]:
    """One convolution of the step alone: (forward FLOPs, oneDNN forward s, oneDNN forward +
    backward s, the same work as MKL GEMMs s), median process-CPU time per call."""
    kind, xs, ws, stride, pad, needs_grad = call
    x = torch.randn(xs, requires_grad=needs_grad)
    w = torch.randn(ws, requires_grad=True)
    bias = torch.zeros(_out_channels(kind, ws), requires_grad=True)
    grads = (x, w, bias) if needs_grad else (w, bias)
    conv = (
        functools.partial(F.conv2d, x, w, bias, stride, pad)
        if kind == "conv"
        else functools.partial(F.conv_transpose2d, x, w, bias, stride)
    )
    g = torch.randn(conv().shape)
    with torch.no_grad():
        t_fwd = _median_cpu(conv)
    t_fb = _median_cpu(lambda: torch.autograd.grad(conv(), grads, g))
    m, k, n = _gemm_shape(kind, xs, ws, stride, pad)
    a, wm, gy = torch.randn(m, k), torch.randn(k, n), torch.randn(m, n)

    def gemms() -> None:
        a @ wm  # forward
        if needs_grad:
            gy @ wm.T  # grad-input (before col2im)
        a.T @ gy  # grad-weight

    return 2 * m * k * n, t_fwd, t_fb, _median_cpu(gemms)


def conv_roofline(peak: float) -> dict[str, float]:
    """Print one row per distinct convolution of the step; return the step's total convolution
    CPU seconds through oneDNN ("onednn"), as the same GEMMs through MKL ("gemm"), the faster of
    the two per shape ("best"), and at the matmul peak ("peak")."""
    calls = conv_calls()
    counts = collections.Counter(calls)
    print(f"convolutions of one step: {len(calls)} calls, {len(counts)} distinct shapes")
    print(
        f"{'layer (in -> out @ px, kernel)':<30} {'n':>2} {'MFLOP':>6} {'fwd ms':>7} {'GF/s':>5}"
        f" {'f+b ms':>7} {'GF/s':>5} {'GEMM ms':>8} {'GF/s':>5}"
    )
    total = dict.fromkeys(("onednn", "gemm", "best", "peak"), 0.0)
    for call, n in counts.items():
        kind, xs, ws, stride, _, needs_grad = call
        flops, t_fwd, t_fb, t_gemm = time_conv(call)
        f_fb = flops * (3 if needs_grad else 2)  # backward: grad-weight (+ grad-input) GEMMs
        total["onednn"] += n * t_fb
        total["gemm"] += n * t_gemm
        total["best"] += n * min(t_fb, t_gemm)
        total["peak"] += n * f_fb / peak
        name = f"{kind} {xs[1]}->{_out_channels(kind, ws)} @{xs[2]}px {ws[2]}x{ws[3]}"
        name += f" s{stride}" if stride > 1 else ""
        print(
            f"{name:<30} {n:>2} {f_fb / 1e6:>6.1f} {1e3 * t_fwd:>7.3f} {flops / t_fwd / 1e9:>5.0f}"
            f" {1e3 * t_fb:>7.3f} {f_fb / t_fb / 1e9:>5.0f} {1e3 * t_gemm:>8.3f}"
            f" {f_fb / t_gemm / 1e9:>5.0f}"
        )
    return total


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
    steps["bf16"] = _bf16(make_step("new")[0])
    for step in steps.values():
        for _ in range(3):
            step()
    wall: dict[str, list[float]] = {v: [] for v in steps}
    cpu: dict[str, list[float]] = {v: [] for v in steps}
    sys_cpu: dict[str, list[float]] = {v: [] for v in steps}
    faults: dict[str, list[float]] = {v: [] for v in steps}
    for _ in range(args.reps):
        for v, step in steps.items():
            t0, c0 = time.perf_counter(), time.process_time()
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            for _ in range(args.steps):
                step()
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            wall[v].append((time.perf_counter() - t0) / args.steps)
            cpu[v].append((time.process_time() - c0) / args.steps)
            sys_cpu[v].append((r1.ru_stime - r0.ru_stime) / args.steps)
            faults[v].append((r1.ru_minflt - r0.ru_minflt) / args.steps)

    print(
        f"{'step':<5} {'ms/step':>8} {'cpu-ms':>7} {'steps/s':>8} {'speed-up':>8} "
        f"{'%peak':>6} {'%141GF':>6} {'sys-ms':>6} {'faults':>6}"
    )
    ref = statistics.median(cpu["old"])
    for v in steps:
        w, c = statistics.median(wall[v]), statistics.median(cpu[v])
        print(
            f"{v:<5} {1e3 * w:>8.2f} {1e3 * c:>7.2f} {1 / c:>8.1f} {ref / c:>7.2f}x "
            f"{100 * flops / c / peak:>5.1f}% {100 * flops / c / NOMINAL_PEAK:>5.1f}%"
            f" {1e3 * statistics.median(sys_cpu[v]):>6.2f} {statistics.median(faults[v]):>6.0f}"
        )
    print("(speed-up and shares of peak from the median process-CPU time per step; %peak is of")
    print(" the peak measured above, %141GF of the 141 GFLOP/s this machine reaches when idle;")
    print(" bf16: the new step under bf16 autocast; not bit-identical, not used by the pipeline;")
    print(" sys-ms: kernel CPU time per step, faults: minor page faults per step; near zero means")
    print(" memory is reused from step to step and the step is all user-space computation)\n")

    conv = conv_roofline(peak)
    t_step = statistics.median(cpu["new"])
    print(
        f"all convolutions of a step: {1e3 * conv['onednn']:.2f} ms through oneDNN,"
        f" {1e3 * conv['gemm']:.2f} ms as MKL GEMMs, {1e3 * conv['best']:.2f} ms taking the faster"
        f" per shape, {1e3 * conv['peak']:.2f} ms at the matmul peak; the new step"
        f" {1e3 * t_step:.2f} ms"
    )
    print("upper bounds on the speed-up over the new step if all but the convolutions were free:")
    print(f"  convolutions as oneDNN runs them:              {t_step / conv['onednn']:.2f}x")
    print(f"  each convolution by the faster of oneDNN, GEMM: {t_step / conv['best']:.2f}x")
    print(f"  every convolution at the 2048x2048 matmul peak: {t_step / conv['peak']:.2f}x")
    swapped = t_step - conv["onednn"] + conv["best"]
    print(
        f"the new step with each convolution by the faster of its two forms (GEMM sums in another"
        f" order: not bit-identical): {1e3 * swapped:.2f} ms, {t_step / swapped:.2f}x\n"
    )

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
