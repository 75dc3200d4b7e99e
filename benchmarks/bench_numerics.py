"""The cost of pinned numerics: training step, probe and intervene, pinned against native.

    python benchmarks/bench_numerics.py [--reps 3]

Each variant runs in its own process (the dispatch is chosen when torch loads), on one thread,
alternating pinned and native ``--reps`` times; the table shows the median process-CPU time:
one training step of the default network at batch 32; sampling one checkpoint's probe design
(4 classes x 64 images, 20 DDIM steps); one checkpoint's intervene design (naive + 3 overprompt
+ 4 linear doses, 64 images each, 20 DDIM steps, linear hooks on). docs/method.md §11.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from conceptspace import numerics

ROOT = Path(__file__).resolve().parent.parent
LEVELS = ("avx2", "native")

WORKLOAD = r"""
from conceptspace import numerics
numerics.pin()
import json, time, torch
from conceptspace.model.diffusion import sample, vdm_loss
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.unet import UNet, UNetConfig
torch.set_num_threads(1)
torch.manual_seed(0)
net, sch = UNet(UNetConfig()), LogSNRSchedule(-13.3, 5.0)
opt = torch.optim.AdamW(list(net.parameters()) + list(sch.parameters()), lr=2e-3)
g = torch.Generator().manual_seed(0)
x, c = torch.rand(32, 3, 16, 16) * 2 - 1, torch.rand(32, 11)
times = []
for i in range(25):
    t0 = time.process_time()
    loss = vdm_loss(net, sch, x, c, generator=g)["total"].mean()
    opt.zero_grad(); loss.backward(); opt.step()
    times.append(time.process_time() - t0)
step = sorted(times[5:])[len(times[5:]) // 2]
def sampling(n):
    cond = torch.rand(n, 11)
    t0 = time.process_time()
    sample(net, sch, cond, steps=20, generator=g, image_shape=(3, 16, 16), sampler="ddim")
    return time.process_time() - t0
print(json.dumps({"train_step": step, "probe": sampling(256), "intervene": sampling(512)}))
"""


def run(level: str) -> dict:
    env = {**os.environ, "CONCEPTSPACE_NUMERICS": level, "PYTHONPATH": str(ROOT)}
    for k in numerics.PINNED:  # the level alone decides what is pinned
        env.pop(k, None)
    out = subprocess.run(
        [sys.executable, "-c", WORKLOAD], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    results = {lvl: [] for lvl in LEVELS}
    for _ in range(args.reps):
        for lvl in LEVELS:
            results[lvl].append(run(lvl))
    print(f"median of {args.reps} processes each, one thread (process-CPU time)")
    print(f"{'':<28}{'pinned (avx2)':>15}{'native':>12}{'cost':>9}")
    units = {
        "train_step": ("training step", 1000, "ms"),
        "probe": ("probe, per checkpoint", 1, "s"),
    }
    units["intervene"] = ("intervene, per checkpoint", 1, "s")
    for key, (label, scale, unit) in units.items():
        med = {lvl: statistics.median(r[key] for r in results[lvl]) for lvl in LEVELS}
        cost = med["avx2"] / med["native"] - 1
        print(
            f"{label:<28}{med['avx2'] * scale:>11.1f} {unit:<3}{med['native'] * scale:>8.1f} "
            f"{unit:<3}{cost:>+8.0%}"
        )


if __name__ == "__main__":
    main()
