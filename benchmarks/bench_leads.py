"""How many runs would have a long lead: a study's leads under other budgets and evaluations.

    python benchmarks/bench_leads.py --study default --study unseen_seeds
    python benchmarks/bench_leads.py --study default --extend-to 9000   # trains: ~2 min a run

For every run and seed of the committed studies, reads the leads of the elicitation methods
over naive prompting at the capability threshold with the study's own interval rule
(docs/method.md §6.2), and counts the runs whose lead is at least ``--min-lead`` steps
measured inside the budget (not a lower bound at its end). Two levers are tried:

* **a longer budget** (``--extend-to STEPS``): each run is continued from its last checkpoint
  by exact resume (optimizer, weight average and random streams restored; the first steps are
  the committed run's, bit for bit), with five more square-root spaced checkpoints, each
  elicited as the study elicits (its doses, images and sampler). The new checkpoints go to
  ``--work`` (default ``/tmp/bench_leads``) and are reused when present;
* **other evaluations**, simulated: binomial draws from each measured curve (``--draws`` per
  run), read under the committed design (``intervene.n`` images per dose, the best dose with a
  Bonferroni interval), under more images per dose, and under "choose, then confirm": a few
  images per dose choose each method's dose, then fresh images of the naive prompt and of
  the chosen doses are read without a Bonferroni factor. The simulation takes each measured
  curve for the truth, so it carries that curve's noise (docs: notes, "Pilots, second round").

Prints one row per run and seed (the class its held-out prompt first imitates, the measured
lead, and the share of draws with a long lead under each design), then the expected number of
runs with a long lead, in all and by imitated class.
"""

from __future__ import annotations

from conceptspace import numerics

numerics.pin()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import conceptspace.analysis.capability as CP  # noqa: E402
import conceptspace.analysis.curves as CV  # noqa: E402
from conceptspace import studies  # noqa: E402
from conceptspace.data.concepts import COND_DIM  # noqa: E402
from conceptspace.data.dataset import load_dataset, split_arrays  # noqa: E402
from conceptspace.measure import classifier, evaluation, interventions, probing  # noqa: E402
from conceptspace.model.checkpoints import checkpoint_path  # noqa: E402
from conceptspace.model.training import TrainConfig, train  # noqa: E402
from conceptspace.model.unet import UNetConfig  # noqa: E402

RESULTS = Path("results")
#: the evaluations simulated: name -> (images per dose to choose with, images read); None:
#: every dose read with that many images and a Bonferroni interval (the committed rule)
DESIGNS = {
    "64 per dose": (None, 64),
    "128 per dose": (None, 128),
    "choose 32, confirm 128": (32, 128),
    "choose 64, confirm 256": (64, 256),
}


def extra_steps(params, steps: int) -> list[int]:
    """Checkpoints past the committed budget up to ``steps``: the study's square-root spacing
    (``train.checkpoints``) continued, the last one at ``steps``."""
    first, last, count = (
        params.train.checkpoints.first,
        params.train.steps,
        params.train.checkpoints.count,
    )
    d = (np.sqrt(last) - np.sqrt(first)) / (count - 1)
    more, i = [], 1
    while (step := int(np.floor((np.sqrt(last) + i * d) ** 2 + 1e-6))) < steps:
        more.append(step)
        i += 1
    return [*more, steps]


def extend(study: str, run: str, seed: int, params, steps: int, work: Path) -> pd.DataFrame:
    """The intervene rows of the checkpoints past the committed budget, after continuing the
    run by exact resume to ``steps`` (reused from ``work`` when there)."""
    sched = params.checkpoint_steps()
    budget = sched[-1]
    extra = extra_steps(params, steps)
    folder = work / study / run / f"seed{seed}"
    table = folder / f"intervene_to_{steps}.csv"
    if table.exists():
        return pd.read_csv(table)
    committed = RESULTS / study / "train" / run / f"seed{seed}"
    ckpt = folder / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    # plain copies (DVC may link its outputs read-only): the last checkpoint and the losses so far
    shutil.copyfile(checkpoint_path(committed / "ckpt", budget), checkpoint_path(ckpt, budget))
    shutil.copytree(
        committed / "log", folder / "log", copy_function=shutil.copyfile, dirs_exist_ok=True
    )
    data = split_arrays(
        load_dataset(RESULTS / study / "synthesize" / run / f"seed{seed}" / "dataset.npz")
    )
    net_cfg = UNetConfig.from_section(params.train.net, params.synthesize.image_size, COND_DIM)
    cfg = dataclasses.replace(TrainConfig.from_section(params.train), steps=extra[-1])
    torch.set_num_threads(params.train.threads)
    train(
        data,
        net_cfg,
        cfg,
        ckpt_steps=sched + extra,
        ckpt_dir=ckpt,
        log_dir=folder / "log",
        seed=seed,
        progress=False,
    )
    probe, grid = evaluation.classifier_for(
        params, run, RESULTS / study / "fit_classifier" / "classifier.pt"
    )
    icfg = params.intervene
    plan = interventions.design(grid, icfg)
    cond, row_class, scales = interventions.batch(plan, icfg.n)
    rows = []
    with torch.no_grad():
        for step in extra:
            net, schedule = evaluation.load_on(checkpoint_path(ckpt, step), "cpu")
            push = interventions.row_directions(net, grid, row_class, icfg.linear.concepts)
            with interventions.linear_intervention(net, push, torch.from_numpy(scales)):
                images = probing.generate(
                    net,
                    schedule,
                    cond,
                    noise_repeat=len(plan),
                    steps=icfg.sampler_steps,
                    sampler=icfg.sampler,
                    seed=seed,
                    image_size=params.synthesize.image_size,
                )
            probs = classifier.predict(probe, images)
            rows += interventions.summarize(
                grid, plan, probs, icfg.n, run=run, seed=seed, step=step
            )
    out = pd.DataFrame(rows)
    out.to_csv(table, index=False)
    return out


def best_lead(interv: pd.DataFrame, since: pd.DataFrame, analyze) -> tuple[float, bool] | None:
    """``(lead, is_lower_bound)`` of the method with the longest lead, None when none has one."""
    em = CP.emergence(
        interv,
        [analyze.capability_threshold],
        sigma=analyze.emergence_sigma,
        k=analyze.emergence_persistence,
        since=since,
    )
    em = em[em["method"] != CP.NAIVE].dropna(subset=["lead_steps"])
    if em.empty:
        return None
    best = em.sort_values("lead_steps", kind="stable").iloc[-1]
    return float(best["lead_steps"]), bool(best["lead_is_lower_bound"])


def simulate(interv: pd.DataFrame, design: tuple, rng: np.random.Generator) -> pd.DataFrame:
    """One binomial draw of the intervene table under a design (:data:`DESIGNS`)."""
    choose, n = design
    t = interv.copy()
    truth = t["joint_acc"].clip(0, 1).to_numpy()
    if choose is None:
        return t.assign(joint_acc=rng.binomial(n, truth) / n, count=n)
    t["chosen_on"] = rng.binomial(choose, truth) / choose
    naive = t[t["method"] == CP.NAIVE]
    pushed = t[t["method"] != CP.NAIVE]
    best = pushed.loc[pushed.groupby(["step", "method", "class"])["chosen_on"].idxmax()]
    read = pd.concat([naive, best]).drop(columns="chosen_on")
    # the chosen dose is read on fresh images: one setting, so no Bonferroni factor
    fresh = rng.binomial(n, read["joint_acc"].clip(0, 1).to_numpy()) / n
    return read.assign(joint_acc=fresh, count=n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument(
        "--study", action="append", help="committed study (repeatable; default: default)"
    )
    p.add_argument("--extend-to", type=int, help="continue every run to this many steps")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_leads"))
    p.add_argument("--draws", type=int, default=10, help="simulated draws per run and design")
    p.add_argument("--min-lead", type=float, default=1000.0, help="a long lead, in steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation's draws")
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for study in args.study or ["default"]:
        params, _ = studies.load(studies.resolve(study).params_file)
        analyze = params.analyze
        points = pd.read_csv(RESULTS / study / "analyze" / "across_seeds_points.csv")
        imitates = points.set_index(["run", "seed"])["nearest_class"]
        for run in params.runs:
            for seed in params.seeds:
                base = RESULTS / study
                interv = pd.read_csv(base / "intervene" / run / f"seed{seed}" / "intervene.csv")
                probe = pd.read_csv(base / "probe" / run / f"seed{seed}" / "probe.csv")
                if args.extend_to:
                    more = extend(study, run, seed, params, args.extend_to, args.work)
                    interv = pd.concat([interv, more], ignore_index=True)
                since = CP.readable_from(
                    CV.training_accuracy(probe), analyze.ready_acc, analyze.sigma
                )
                lead = best_lead(interv, since, analyze)
                row = {
                    "study": study,
                    "run": run,
                    "seed": seed,
                    "first imitates": imitates.get((run, seed)),
                    "lead": "-" if lead is None else f"{'≥' if lead[1] else ''}{lead[0]:.0f}",
                }
                for name, design in DESIGNS.items():
                    draws = [
                        best_lead(simulate(interv, design, rng), since, analyze)
                        for _ in range(args.draws)
                    ]
                    # long: measured inside the budget (not a lower bound) and long enough
                    row[name] = float(np.mean([
                        d is not None and not d[1] and d[0] >= args.min_lead for d in draws
                    ]))  # fmt: skip
                rows.append(row)
                print(f"{study} {run} seed {seed}: lead {row['lead']}", flush=True)
    table = pd.DataFrame(rows)
    budget = f"budget {args.extend_to} steps" if args.extend_to else "the committed budget"
    print(
        f"\nShare of {args.draws} draws with a lead of at least {args.min_lead:.0f} steps inside "
        f"{budget}, per run:"
    )
    print(table.round(2).to_string(index=False))
    print("\nExpected number of runs with such a lead:")
    total = table[list(DESIGNS)].sum().to_frame("all runs").T
    by_class = table.groupby("first imitates")[list(DESIGNS)].sum()
    print(pd.concat([total, by_class]).round(1).to_string())
    counts = table.groupby("first imitates").size()
    print("runs per imitated class: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
