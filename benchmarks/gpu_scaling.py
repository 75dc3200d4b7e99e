"""How far one K-model ensemble scales on one GPU beyond the K = 16 of the prepared check.

    python benchmarks/gpu_scaling.py [--ks 16,32,64] [--json scaling.json]
    python benchmarks/gpu_scaling.py --tiny --device cpu --ks 1,2    # a test

benchmarks/gpu_check.py measures K = 1, 4, 16 and found the paper network's ensemble still
rising at 16 (README, "One GPU, many runs"). This measures the ensemble's aggregate
model-steps/s and peak memory at larger K for the default and the paper network (the same
trainer and settings as the check: ``conceptspace.model.ensemble.EnsembleTrainer``,
deterministic cuDNN, torch's default precision), then projects the paper's colour sweep's
training time with the best K, beside the check's. Needs only torch, numpy and the project
(pydantic, as the check: bring wheels, ``--wheels``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check as G  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--ks", default="16,32,64", help="ensemble sizes, comma-separated")
    p.add_argument("--tiny", action="store_true", help="tiny networks and windows (a test)")
    p.add_argument("--wheels", type=Path, default=G.WHEELS_DIR)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    G.ensure_packages(args.wheels)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type == "cuda":
        from conceptspace.devices import cuda_reproducible

        cuda_reproducible()
        where = torch.cuda.get_device_name(device)
    else:
        torch.set_num_threads(1)
        where = "CPU, 1 thread"
    ks = [int(k) for k in args.ks.split(",")]
    root = G.ROOT
    if args.tiny:
        tiny = root / "tests" / "params.tiny.yaml"
        studies = {"default": G.load_study(tiny), "paper": G.load_study(tiny, net=G.TINY_NET)}
    else:
        studies = {
            "default": G.load_study(root / "params.yaml"),
            "paper": G.load_study(root / "configs" / "paper.yaml"),
        }
    window = 0.2 if args.tiny else 3.0
    print(f"== ensemble scaling: torch {torch.__version__}, {where} ==", flush=True)
    record: dict = {"device": where, "torch": torch.__version__, "rates": {}}
    print(f"{'network':<10}{'K':>5}{'model-steps/s':>16}{'peak GiB':>10}{'seconds':>9}")
    for key, study in studies.items():
        net_cfg, cfg = G.configs_of(study)
        n_train = G.study_counts(study)["n_train"]
        rates = record["rates"].setdefault(key, {})
        for k in ks:
            t0 = time.monotonic()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                r = G.ensemble_rate(net_cfg, cfg, device, k, n_train, window)
            except Exception as e:  # out of memory at large K is data, not a crash
                rates[k] = f"failed: {type(e).__name__}: {e}"[:200]
                print(f"{key:<10}{k:>5}  {rates[k]}", flush=True)
                G.free(device)
                continue
            G.free(device)
            rates[k] = r
            peak = r.get("peak_gib")
            print(
                f"{key:<10}{k:>5}{r['model_steps_per_s']:>16.1f}"
                f"{'-' if peak is None else format(peak, '.1f'):>10}"
                f"{time.monotonic() - t0:>9.1f}",
                flush=True,
            )
    paper = G.study_counts(studies["paper"])
    measured = {k: v["model_steps_per_s"] for k, v in record["rates"]["paper"].items()
                if isinstance(v, dict)}  # fmt: skip
    if measured:
        best = min(measured, key=lambda k: G.training_seconds(
            paper["runs"], paper["steps"], k, measured))  # fmt: skip
        s = G.training_seconds(paper["runs"], paper["steps"], best, measured)
        record["paper_training"] = {"k": best, "seconds": s}
        print(
            f"\npaper's colour sweep ({paper['runs']} runs x {paper['steps']:,} steps): training "
            f"{G._hms(s)} with {best}-model ensembles (K measured here: {sorted(measured)})"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
