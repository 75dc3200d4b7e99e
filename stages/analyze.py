"""Analyze the sweep: trajectories, learning times, turns, emergence of hidden capabilities.

    python -m stages.analyze --synthesize results/synthesize --train results/train \
        --probe results/probe --intervene results/intervene --out results/analyze

Reads every run and seed listed in params.yaml (never a glob, so stale results of removed
sweep points are ignored) and writes ``metrics.json`` (for ``dvc metrics show``; the three
phenomena as booleans computed from the data, with their evidence), ``summary.md``, tidy CSVs
for ``dvc plots`` and figures (PNG + PDF, an animated GIF) under ``figures/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from conceptspace.analysis import across_seeds, underspecification
from conceptspace.analysis.headline import headline
from conceptspace.analysis.study import EXTENSION_TABLES, analyze_study
from conceptspace.analysis.verdicts import swept_concept
from conceptspace.data.dataset import load_card
from conceptspace.figures.across_seeds import across_seeds_figure
from conceptspace.figures.study import draw_study
from conceptspace.io import ArtifactError, read_npz, write_bytes, write_json, write_with
from stages.common import entry, load, parser


def _csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.exists():
        raise ArtifactError(f"{path}: file not found")
    try:
        df = pd.read_csv(path)
    except Exception as e:
        raise ArtifactError(f"{path}: unreadable csv ({e})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ArtifactError(f"{path}: missing columns {missing}")
    return df


def gather(params, args) -> dict:
    """Load every table of the sweep named in params.yaml."""
    probe, interv, emb, logs, info = [], [], [], [], []
    for run in params.run_ids:
        for seed in params.seeds:
            rs = f"{run}/seed{seed}"
            probe.append(_csv(Path(args.probe) / rs / "probe.csv", ("run", "step", "p1", "acc")))
            interv.append(
                _csv(
                    Path(args.intervene) / rs / "intervene.csv",
                    ("run", "step", "method", "joint_acc"),
                )
            )
            emb.append(_csv(Path(args.intervene) / rs / "embeddings.csv", ("pair", "cosine")))
            log = _csv(Path(args.train) / rs / "log" / "checkpoints.csv", ("step", "val_loss"))
            logs.append(log.assign(run=run, seed=seed))
        cards = [
            load_card(Path(args.synthesize) / run / f"seed{seed}" / "card.json")
            for seed in params.seeds
        ]
        row = {"run": run}
        for c, v in cards[0].get("separations", {}).items():
            row[f"sep_{c}"] = v
        for c, v in cards[0]["concept_signal"].items():
            row[f"signal_{c}"] = v
        # realized masked fraction of the prompts (0 without masking), mean over seeds
        row[underspecification.COLUMN] = float(
            np.mean([underspecification.mask_fraction(card) for card in cards])
        )
        info.append(row)
    return {
        "probe": pd.concat(probe, ignore_index=True),
        "intervene": pd.concat(interv, ignore_index=True),
        "embeddings": pd.concat(emb, ignore_index=True),
        "logs": pd.concat(logs, ignore_index=True),
        "run_info": pd.DataFrame(info),
    }


def summary_markdown(metrics: dict) -> str:
    lines = ["# Study summary", "", "| phenomenon | holds | statement |", "|---|---|---|"]
    for name, d in metrics["phenomena_detail"].items():
        holds = "n/a" if d["holds"] is None else ("yes" if d["holds"] else "no")
        lines.append(f"| {name} | {holds} | {d['statement']} |")
    lines += [
        "",
        "| run | signal | held-out learning times | memorized | turned | best lead over naive |",
        "|---|---|---|---|---|---|",
    ]
    for run, r in metrics["runs"].items():
        sig = ", ".join(f"{k} {v:.4f}" for k, v in r["signal"].items())
        lt = ", ".join(
            f"{k}: {'>' if v['censored_seeds'] else ''}{v['mean']:.0f}"
            for k, v in r["learning_time_held_out"].items()
        )
        leads = [
            (v["lead_steps"], k)
            for k, v in r["emergence"].items()
            if v["lead_steps"] is not None and not k.startswith("naive")
        ]
        lead = max(leads)[1] + f" +{max(leads)[0]:.0f} steps" if leads else "-"
        t = r["trajectory"]
        if "by_class" in t:  # several held-out classes: class -> memorized class
            mem = ", ".join(f"{h}: {v['nearest_class']}" for h, v in t["by_class"].items())
            turned = ", ".join(f"{h}: {v['turned']}" for h, v in t["by_class"].items())
        else:
            mem, turned = t["nearest_class"], t["turned"]
        lines.append(f"| {run} | {sig} | {lt} | {mem} | {turned} | {lead} |")
    if "concept_distance" in metrics:
        rel = metrics["concept_distance"]["relation"]
        rho = "n/a" if rel["spearman_rho"] is None else f"{rel['spearman_rho']:+.2f}"
        lines += [
            "",
            f"Distance to the target corner at training convergence vs class-learned time: "
            f"Spearman rho {rho} over {rel['n']} held-out classes ({rel['n_censored']} never "
            "learned); table concept_distance.csv.",
        ]
    fits = metrics.get("dynamics_model", {}).get("fits", {})
    if fits:
        lines += [
            "",
            "| ODE fit (run/class) | a | switch step | R² | at search bound |",
            "|---|---|---|---|---|",
        ]
        for k, f in fits.items():
            a, sw, r2 = (
                "-" if f[x] is None else format(f[x], spec)
                for x, spec in (("a", ".2f"), ("switch_step", ".0f"), ("r2", ".2f"))
            )
            lines.append(f"| {k} | {a} | {sw} | {r2} | {f.get('at_bound') or '-'} |")
    return "\n".join(lines) + "\n"


def run(argv=None) -> None:
    p = parser(__doc__, identity=False)
    for name in ("synthesize", "train", "probe", "intervene"):
        p.add_argument(f"--{name}", required=True, help=f"results folder of {name}")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    params = load(args)
    data = gather(params, args)

    frames, metrics = analyze_study(
        data["probe"], data["intervene"], data["run_info"], params.analyze
    )
    out = Path(args.out)
    seed = params.seeds[0]
    samples = {
        run: read_npz(
            Path(args.probe) / run / f"seed{seed}" / "samples.npz",
            required=("steps", "images", "class_id"),
        )
        for run in params.run_ids
    }
    draw_study(
        frames,
        metrics,
        data["run_info"],
        out / "figures",
        params,
        embeddings=data["embeddings"],
        losses=data["logs"],
        samples=samples,
    )

    # Verdicts across seeds, with their uncertainty (docs/method.md): one study analysis per
    # seed, then pooled order, k of n seeds, medians with bootstrap intervals, the 1/T fit.
    probe, interv, info, cfg = data["probe"], data["intervene"], data["run_info"], params.analyze
    swept = swept_concept(info.set_index("run"), list(dict.fromkeys(probe["concept"])))
    if swept is not None:
        per_seed = {
            s: analyze_study(probe[probe["seed"] == s], interv[interv["seed"] == s], info, cfg)
            for s in params.seeds
        }
        points = across_seeds.points_from_study(
            per_seed,
            concept=swept,
            threshold=cfg.thresholds[0],
            capability_threshold=cfg.capability_threshold,
        )
        seed_frames, metrics["across_seeds"] = across_seeds.summarize(points, concept=swept)
        across_seeds_figure(
            seed_frames["points"],
            seed_frames["by_separation"],
            out / "figures" / "across_seeds.png",
            concept=swept,
            metrics=metrics["across_seeds"],
        )
        frames |= {f"across_seeds_{k}": v for k, v in seed_frames.items()}

    csvs = {"trajectories": "trajectories", "learning_times": "learning_times_summary"}
    csvs |= {k: k for k in frames if k.startswith("across_seeds_")}
    csvs |= {"capability": "capability", **{name: name for name in EXTENSION_TABLES}}
    for name, df in [(n, frames[key]) for n, key in csvs.items()] + [("losses", data["logs"])]:
        write_with(
            out / f"{name}.csv", lambda tmp, df=df: df.to_csv(tmp, index=False, float_format="%.6f")
        )
    write_json(out / "details.json", metrics)
    write_json(out / "metrics.json", headline(metrics))
    write_bytes(out / "summary.md", summary_markdown(metrics).encode())
    print(summary_markdown(metrics) + f"\nFigures: {out / 'figures'}/  Tables: {out}/")


main = entry(run)

if __name__ == "__main__":
    sys.exit(main())
