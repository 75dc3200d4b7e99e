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

from conceptspace.analysis import across_seeds
from conceptspace.analysis.headline import headline, terse
from conceptspace.analysis.summary import summary_markdown
from conceptspace.analysis.tables import EXTENSION_TABLES, analyze_study
from conceptspace.analysis.verdicts import swept_concept
from conceptspace.figures.across_seeds import across_seeds_figure
from conceptspace.figures.drawing import draw_study
from conceptspace.io import read_npz, write_bytes, write_json, write_with
from conceptspace.table_files import gather
from stages.common import entry, load, parser


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
    csvs |= {"capability": "capability", "dose_response": "dose_response"}
    csvs |= {name: name for name in EXTENSION_TABLES}
    for name, df in [(n, frames[key]) for n, key in csvs.items()] + [("losses", data["logs"])]:
        write_with(
            out / f"{name}.csv", lambda tmp, df=df: df.to_csv(tmp, index=False, float_format="%.6f")
        )
    write_json(out / "details.json", metrics)
    write_json(out / "metrics.json", headline(metrics))
    write_json(out / "headline.json", terse(metrics))
    summary = summary_markdown(metrics, frames.get("across_seeds_points"))
    write_bytes(out / "summary.md", summary.encode())
    print(summary + f"\nFigures: {out / 'figures'}/  Tables: {out}/")


main = entry(run)

if __name__ == "__main__":
    sys.exit(main())
