"""Cost of probing and intervening against the cost of training, at the params.yaml scale.

    python benchmarks/bench_probe.py [--params params.yaml] [--threads 1]

Times, with the default network of params.yaml (random weights: cost does not depend on
them) and the thread count of the stages: one training step; generating and classifying the
probe's prompt set for one checkpoint (all classes in one sampler batch); the intervention
batch of one checkpoint. Prints images per second and the cost of probing / intervening all
checkpoints of a run as a share of that run's training time.
"""

from __future__ import annotations

import argparse
import time

import torch

from conceptspace.measure import classifier, interventions, probing
from conceptspace.measure.interventions import design
from conceptspace.model.diffusion import vdm_loss
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.unet import UNet
from conceptspace.params import load_params
from stages.train import net_config


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    size = params.synthesize.image_size
    run = params.run_ids[0]
    grid = params.grid_for(run)
    torch.manual_seed(0)
    net, schedule = UNet(net_config(params, size)), LogSNRSchedule()
    probe = classifier.ConceptClassifier(
        len(grid.concepts), width=params.fit_classifier.width
    ).eval()

    # one training step
    opt = torch.optim.AdamW([*net.parameters(), *schedule.parameters()], lr=1e-3)
    x = torch.rand(params.train.batch_size, 3, size, size)
    c = torch.rand(params.train.batch_size, 11)

    def step():
        opt.zero_grad(set_to_none=True)
        vdm_loss(net, schedule, x, c)["total"].mean().backward()
        opt.step()

    net.train()
    t_step = timed(step, 10)
    net.eval()

    # probing one checkpoint
    pc = params.probe
    cond, _ = probing.prompt_set(grid, pc.n_train, pc.n_held_out, seed=0)

    def probe_one():
        imgs = probing.generate(
            net, schedule, cond, steps=pc.sampler_steps, seed=0, image_size=size
        )
        classifier.predict(probe, imgs)

    with torch.no_grad():
        t_probe = timed(probe_one, args.repeats)

    # intervening at one checkpoint
    ic = params.intervene
    plan = design(grid, ic)
    icond, row_class, scales = interventions.batch(plan, ic.n)
    scales = torch.from_numpy(scales)

    def intervene_one():
        push = interventions.row_directions(net, grid, row_class, ic.linear.concepts)
        with interventions.linear_intervention(net, push, scales):
            imgs = probing.generate(
                net,
                schedule,
                icond,
                steps=ic.sampler_steps,
                seed=0,
                image_size=size,
                noise_repeat=len(plan),
            )
        classifier.predict(probe, imgs)

    with torch.no_grad():
        t_interv = timed(intervene_one, args.repeats)

    n_ckpt = len(params.checkpoint_steps())
    train_s = params.train.steps * t_step
    print(
        f"scale: {size}px, net {params.train.net.channels}, batch {params.train.batch_size}, "
        f"{args.threads} thread(s), {n_ckpt} checkpoints, {params.train.steps} steps"
    )
    print(
        f"train: {t_step * 1e3:.1f} ms/step -> {params.train.batch_size / t_step:,.0f} "
        f"images/s; a run trains in {train_s / 60:.1f} min"
    )
    print(
        f"probe: {len(cond)} images x {pc.sampler_steps} sampler steps per checkpoint in "
        f"{t_probe:.2f} s -> {len(cond) / t_probe:,.0f} generated-and-classified images/s; "
        f"all checkpoints {n_ckpt * t_probe / 60:.1f} min = "
        f"{n_ckpt * t_probe / train_s:.1%} of training"
    )
    print(
        f"intervene: {len(icond)} images per checkpoint in {t_interv:.2f} s -> "
        f"{len(icond) / t_interv:,.0f} images/s; all checkpoints "
        f"{n_ckpt * t_interv / 60:.1f} min = {n_ckpt * t_interv / train_s:.1%} of training"
    )


if __name__ == "__main__":
    main()
