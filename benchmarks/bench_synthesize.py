"""How fast does `synthesize` render? Prints images per second on one core.

    python benchmarks/bench_synthesize.py [--size 32] [--n 20000] [--repeats 3]

Renders training images of the 2x2 grid (attributes sampled within class ranges, Gaussian
edge blur, pixel noise) exactly as the synthesize stage does, with numpy limited to one
thread, and prints the best of a few repeats.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from conceptspace.data.concepts import preset  # noqa: E402
from conceptspace.data.render import render_classes  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    grid = preset("2x2", color=0.4, size=0.4)
    ids = np.resize(np.array(grid.train_classes), args.n)
    best = float("inf")
    for r in range(args.repeats):
        t0 = time.perf_counter()
        render_classes(grid, ids, args.size, np.random.default_rng(r))
        best = min(best, time.perf_counter() - t0)
    print(
        f"synthesize: {args.n} images of {args.size}x{args.size} px in {best:.3f} s "
        f"on one core -> {args.n / best:,.0f} images/s (best of {args.repeats})"
    )


if __name__ == "__main__":
    main()
