"""Validate a few-step sampler against the authors' 50-step ancestral one, on real checkpoints.

    python benchmarks/bench_sampler.py --ckpt-dir results/default/train/c060/seed0/ckpt \
        --classifier results/default/fit_classifier/classifier.pt --run c060 --seed 0

For three checkpoints of one run (the first, the one in the middle of the schedule, where the
held-out prompt turns in the default study, and the last; or ``--steps``), every class is
sampled ``--n`` times with the probe's prompts under each sampler, classified, and its
per-concept accuracy printed with its Wilson 95% interval. A few-step sampler *agrees* with
the reference at a (checkpoint, class, concept) when the two intervals overlap
(docs/method.md §4). The cost is the process-CPU time of sampling one checkpoint's probe
design (all classes, ``--n`` images each) on one thread.
"""

from __future__ import annotations

from conceptspace import numerics

numerics.pin()

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from scipy.stats import binomtest  # noqa: E402

from conceptspace import studies  # noqa: E402
from conceptspace.measure import classifier, evaluation, probing  # noqa: E402

REFERENCE = ("ancestral", 50)
CANDIDATES = ("ddim:20", "ddim:10", "ancestral:20")


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def measure(net, schedule, probe, grid, cond, class_id, sampler, steps, seed, size):
    t0 = time.process_time()
    images = probing.generate(
        net, schedule, cond, steps=steps, sampler=sampler, seed=seed, image_size=size
    )
    cost = time.process_time() - t0
    table = probing.concept_table(grid, classifier.predict(probe, images), class_id)
    return table, cost


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ckpt-dir", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=256, help="images per class and sampler")
    p.add_argument("--steps", type=int, nargs="*", help="checkpoint steps (default: 3)")
    p.add_argument(
        "--candidates",
        nargs="+",
        default=list(CANDIDATES),
        help="samplers to validate, as name:steps (default: %(default)s)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)

    params, _ = studies.load(args.params)
    schedule_steps = params.checkpoint_steps()
    picks = args.steps or [schedule_steps[i] for i in (0, len(schedule_steps) // 2, -1)]
    ckpts = evaluation.expected_checkpoints(picks, args.ckpt_dir)
    probe, grid = evaluation.classifier_for(params, args.run, args.classifier)
    cond, class_id = probing.prompt_set(grid, args.n, args.n, seed=args.seed)
    size = params.synthesize.image_size

    candidates = [(name, int(k)) for name, k in (c.split(":") for c in args.candidates)]
    samplers = (REFERENCE, *candidates)
    names = [f"{s}-{k}" for s, k in samplers]
    print(f"run {args.run} seed {args.seed}, {args.n} images per class; accuracy [Wilson 95%]")
    header = f"{'step':>5} {'class':<11} {'concept':<7} " + " ".join(f"{n:>20}" for n in names)
    print(header + "  agree")
    costs = {n: [] for n in names}
    agree, total = 0, 0
    for step, path in ckpts:
        net, schedule = evaluation.load_on(path, "cpu")
        tables = {}
        for (sampler, k), name in zip(samplers, names, strict=True):
            tables[name], cost = measure(
                net, schedule, probe, grid, cond, class_id, sampler, k, args.seed, size
            )
            costs[name].append(cost)
        ref = tables[names[0]]
        for i, row in ref.iterrows():
            cells, bounds = [], []
            for name in names:
                r = tables[name].iloc[i]
                lo, hi = wilson(round(r.acc * r["count"]), int(r["count"]))
                bounds.append((lo, hi))
                cells.append(f"{r.acc:.3f} [{lo:.2f},{hi:.2f}]")
            ok = all(lo <= bounds[0][1] and bounds[0][0] <= hi for lo, hi in bounds[1:])
            agree += ok
            total += 1
            print(
                f"{step:>5} {row['class']:<11} {row.concept:<7} "
                + " ".join(f"{c:>20}" for c in cells)
                + f"  {'yes' if ok else 'NO'}"
            )
    print(f"\nintervals overlap with {names[0]} in {agree} of {total} (checkpoint, class, concept)")
    n_img = len(cond)
    for name in names:
        mean = sum(costs[name]) / len(costs[name])
        print(f"{name:>14}: {mean:6.2f} s per checkpoint ({n_img} images, one thread)")


if __name__ == "__main__":
    main()
