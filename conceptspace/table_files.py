"""Reading a study's tables from its stages' folders, for the analysis (docs/method.md §5-§8):
every run and seed listed in its params (never a glob, so stale results of removed sweep
points are ignored), each file checked for the columns the analysis reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from conceptspace.analysis import underspecification
from conceptspace.data.dataset import load_card
from conceptspace.io import ArtifactError


def read_table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
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


def gather(params, folders) -> dict:
    """Every table of the sweep named in ``params``: probe, intervene, embeddings, training
    logs (as tidy frames) and ``run_info`` (separations, measured concept signal and masked
    fraction per run). ``folders`` has the attributes ``synthesize``, ``train``, ``probe``
    and ``intervene``: each stage's results folder."""
    args = folders
    probe, interv, emb, logs, info = [], [], [], [], []
    for run in params.run_ids:
        for seed in params.seeds:
            rs = f"{run}/seed{seed}"
            probe.append(
                read_table(Path(args.probe) / rs / "probe.csv", ("run", "step", "p1", "acc"))
            )
            interv.append(
                read_table(
                    Path(args.intervene) / rs / "intervene.csv",
                    ("run", "step", "method", "joint_acc"),
                )
            )
            emb.append(read_table(Path(args.intervene) / rs / "embeddings.csv", ("pair", "cosine")))
            log = read_table(
                Path(args.train) / rs / "log" / "checkpoints.csv", ("step", "val_loss")
            )
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
