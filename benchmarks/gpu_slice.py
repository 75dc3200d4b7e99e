"""The prepared device check of the paper-scale slice: CUDA tests, the ensemble step's throughput,
the slice trained and evaluated, one archive back, and the projection of the paper's sweep.

    bash benchmarks/gpu_slice.sh                  # on the GPU machine (build/wheels carried)
    python benchmarks/gpu_slice.py --out DIR [--budget 450] [--wheels build/wheels]
    python benchmarks/gpu_slice.py --tiny --device cpu --out DIR   # the same on CPU (a test)

In one call of at most 8 minutes on one H100/H200 (docs/scaling.md):

1. Makes pydantic, jsonschema and pytest importable from carried wheels (a GPU image has torch,
   numpy, pandas, scipy, matplotlib, PyYAML; ``benchmarks/gpu_check.py`` explains the wheels).
2. Runs ``tests/test_cuda.py`` (training with exact resume, the captured ensemble step against
   the eager one bit for bit, the fast mode, sampling, the stages on CUDA).
3. Measures the ensemble's training step (conceptspace/model/ensemble.py) of the paper network
   at K = 4, 16, 64 in four modes: ``eager`` (what the train stage runs: deterministic cuDNN,
   math attention, torch's default precision), ``graph`` (the same step captured as a CUDA
   graph: the same bits), ``fast`` (bf16 autocast with fp32 master weights, the graph, cuDNN
   autotuning: not bitwise) and ``fast_cl`` (``fast`` with channels-last inputs). Each cell:
   model-steps/s, TFLOP/s (FLOPs of one model-step counted by PyTorch's FLOP counter) and that
   as a fraction of the chip's dense TF32 or bf16 peak (datasheet; a matrix product measured
   here beside it).
4. Trains and evaluates ``configs/paper_slice.yaml`` (4 runs as one ensemble) in a scratch copy
   of the project, with the commands Snakemake and DVC run (``conceptspace.pipeline``),
   independent jobs in parallel; its steps and checkpoint count are sized to the time left
   (20,000 steps and 60 checkpoints when they fit; what ran is in the archive's params.yaml).
5. Packs the slice's analysis (tables, metrics.json, figures), its training logs, probe and
   intervene tables, study params and this check's record into ``DIR/gpu_slice.tar.gz``.
6. Prints the projection for ``configs/paper.yaml`` (100 runs x 20,000 steps, every checkpoint
   probed and intervened on) from what was measured, against the goal of 2 hours.

``--tiny``: the tiny network and params (tests/params.tiny.yaml) with the slice's design,
K = 1, 2, short windows; runs end to end on a CPU in a minute or two.
Exit status: 0 when the tests passed (or skipped without a GPU) and the slice ran, else 1.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]
try:  # the stages' numeric code path, set before torch or numpy is loaded (docs/method.md)
    from conceptspace import numerics

    numerics.pin()
except ImportError:  # a project without conceptspace/numerics.py
    pass

import gpu_check as G  # noqa: E402
import torch  # noqa: E402

ROOT = G.ROOT
STUDY = "paper_slice"
PAPER = "paper"
KS, TINY_KS = (4, 16, 64), (1, 2)
MODES = ("eager", "graph", "fast", "fast_cl")
GOAL_S = 2 * 3600.0
# Dense peaks (TFLOP/s, no sparsity) from NVIDIA's datasheets: (TF32, bf16).
DATASHEET = {"H100 PCIe": (378.0, 756.0), "H100": (494.7, 989.4), "H200": (494.7, 989.4)}
# What the slice reads back (the checkpoints and datasets stay behind: 122 MiB per checkpoint).
KEEP_SUFFIXES = (".csv", ".json", ".png", ".yaml", ".txt", ".md", ".html")


# ---- 3. the step ------------------------------------------------------------------------------
def step_mode(name: str, device: torch.device):
    from conceptspace.model.ensemble import StepMode

    cuda = device.type == "cuda"
    if name == "eager":
        return StepMode()
    if name == "graph":
        return StepMode(cuda_graph=True) if cuda else StepMode(static=True)
    cl = name == "fast_cl"
    return StepMode(precision="bf16", channels_last=cl, cuda_graph=cuda, static=not cuda)


def flops_per_model_step(net_cfg, cfg, device: torch.device) -> float:
    """FLOPs of one model-step (forward and backward of a lone run's batch loss), counted by
    PyTorch's FLOP counter (convolutions, matrix products, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    from conceptspace.model.diffusion import vdm_loss
    from conceptspace.model.schedule import LogSNRSchedule
    from conceptspace.model.unet import UNet

    torch.manual_seed(0)
    net = UNet(net_cfg).to(device)
    schedule = LogSNRSchedule(cfg.gamma_min, cfg.gamma_max).to(device)
    s = net_cfg.image_size
    x = torch.rand(cfg.batch_size, net_cfg.in_channels, s, s, device=device)
    h = torch.rand(cfg.batch_size, net_cfg.cond_dim, device=device)
    with FlopCounterMode(display=False) as counter:
        vdm_loss(net, schedule, x, h)["total"].mean().backward()
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float) -> float | None:
    """TFLOP/s of a large square matrix product (the measured ceiling), or None on the CPU."""
    if device.type != "cuda":
        return None
    n = 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    saved = G._tf32_state()
    G._set_tf32(conv=True, matmul=dtype == torch.float32)  # TF32 for the fp32 ceiling
    try:
        r = G.timed(lambda: a @ b, device, seconds, every=5)
    finally:
        G._restore_tf32(saved)
    return 2 * n**3 * r["per_s"] / 1e12


def datasheet_peaks(device: torch.device) -> tuple[float, float] | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(DATASHEET, key=len, reverse=True):
        if key in name:
            return DATASHEET[key]
    return None


def step_rate(net_cfg, cfg, device, k: int, mode: str, n_train: int, window: float) -> dict:
    """Model-steps/s of one K-model ensemble in ``mode`` (host reads every 10 steps)."""
    from conceptspace.devices import cuda_reproducible
    from conceptspace.model.ensemble import EnsembleTrainer

    members = G.synthetic_members(net_cfg, k, n_train)
    if device.type == "cuda":
        cuda_reproducible()
        if mode.startswith("fast"):
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
        torch.cuda.reset_peak_memory_stats(device)
    try:
        trainer = EnsembleTrainer(members, net_cfg, cfg, device, step_mode(mode, device))
        r = G.timed(trainer.step, device, window, every=10)
    finally:
        if device.type == "cuda":
            cuda_reproducible()
    out = {"model_steps_per_s": k * r["per_s"], "first_s": r["first_s"]}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def eval_speedup(study, device, n_models: int, window: float) -> dict:
    """Seconds to sample one checkpoint's probe prompts, checkpoint by checkpoint
    (``probing.generate``) and ``n_models`` at once (conceptspace/measure/batched.py), with
    random weights; the ratio is what batching across checkpoints would save."""
    import numpy as np

    from conceptspace.measure import batched, probing
    from conceptspace.model.schedule import LogSNRSchedule
    from conceptspace.model.unet import UNet

    net_cfg, _ = G.configs_of(study)
    grid = study.grid_for(study.run_ids[0])
    pc = study.probe
    cond, _ = probing.prompt_set(grid, pc.n_train, pc.n_held_out, seed=0)
    kw = {"sampler": pc.sampler} if hasattr(pc, "sampler") else {}
    models = []
    for i in range(n_models):
        torch.manual_seed(i)
        models.append(batched._Model(UNet(net_cfg), LogSNRSchedule()).to(device).eval())
    size = net_cfg.image_size

    def one_by_one() -> None:
        for m in models:
            probing.generate(
                m.net, m.schedule, cond, steps=pc.sampler_steps, seed=0, image_size=size, **kw
            )

    fn = batched.sampler_fn(
        cond, steps=pc.sampler_steps, seed=0, image_size=size, device=device, **kw
    )

    def together() -> None:
        np.asarray(batched.map_models(fn, models).cpu())

    a = G.timed(one_by_one, device, window, min_calls=1)
    b = G.timed(together, device, window, min_calls=1)
    per, bat = 1 / a["per_s"] / n_models, 1 / b["per_s"] / n_models
    return {"models": n_models, "images": len(cond), "s_per_ckpt": per, "batched_s_per_ckpt": bat,
            "speedup": per / bat}  # fmt: skip


# ---- 4. the slice -----------------------------------------------------------------------------
def copy_project(dest: Path) -> Path:
    """The project's tracked and untracked-not-ignored files (no results, no dvc.lock) in
    ``dest``: a scratch workspace whose results never reach the repository. Without git
    (a bare copy), every file but results/, build/ and .git/."""
    try:
        files = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        skip = {"results", "build", ".git", ".venv", ".whl"}
        files = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file() and p.relative_to(ROOT).parts[0] not in skip
        ]
    for f in files:
        src = ROOT / f
        if not src.is_file() or f.startswith("results/") or f == "dvc.lock":
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f)
    return dest


def slice_overlay(tiny: bool, steps: int | None, count: int | None) -> dict:
    """The slice's overlay: configs/paper_slice.yaml, or with ``--tiny`` its design alone
    (runs, seeds, ensemble) over the tiny params; ``steps``/``count`` resize its schedule."""
    import yaml

    over = yaml.safe_load((ROOT / "configs" / f"{STUDY}.yaml").read_text())
    if tiny:
        over = {
            "runs": over["runs"],
            "seeds": over["seeds"],
            "train": {"ensemble": over["train"]["ensemble"]},
        }
    train = over.setdefault("train", {})
    if steps is not None:
        full = yaml.safe_load((ROOT / "configs" / f"{STUDY}.yaml").read_text())["train"]
        first = max(1, round(steps * full["checkpoints"]["first"] / full["steps"]))
        train["steps"] = steps
        train["checkpoints"] = {"first": first, "count": count or full["checkpoints"]["count"]}
    return over


def size_slice(rate: float | None, eval_ckpt_s: float, seconds: float, k: int) -> tuple[int, int]:
    """(steps, checkpoints) of the slice that fit ``seconds`` of training and evaluation, at
    ``rate`` model-steps/s for its K runs and ``eval_ckpt_s`` per run and checkpoint (probe and
    intervene), at most the preset's 20,000 and 60; about 60% of the time trains."""
    if not rate:
        return 200, 8
    count = int(min(60, max(8, 0.4 * seconds / max(k * eval_ckpt_s, 1e-3))))
    train_s = seconds - count * k * eval_ckpt_s
    steps = int(min(20000, max(200, train_s * rate / k)))
    return steps, count


def job_commands(doc: dict, params_file: str) -> list[list[str]]:
    """The slice's jobs in waves of independent commands, as Snakemake and DVC run them."""
    from conceptspace import pipeline

    study_dir = f"results/{STUDY}"

    def per_run(stage: str) -> list[str]:
        return [
            pipeline.command(stage, study_dir, params_file, r, str(s))
            for r, s in pipeline.jobs(doc, stage)
        ]

    if pipeline.grouped(doc):
        train = [
            pipeline.train_command(study_dir, params_file, g.members)
            for g in pipeline.train_groups(doc)
        ]
    else:
        train = per_run("train")
    analyze = pipeline.command("analyze", study_dir, params_file, "", "")
    fit = pipeline.command("fit_classifier", study_dir, params_file, "", "")
    return [
        per_run("synthesize") + [fit],
        train,
        per_run("probe") + per_run("intervene"),
        [analyze],
    ]


def run_slice(work: Path, over: dict, jobs: int, timeout: float) -> dict:
    """Write the slice's overlay and study params in ``work``, run its jobs wave by wave;
    returns the seconds of each wave and the failures (stderr tails)."""
    import yaml

    from conceptspace import studies

    (work / "configs" / f"{STUDY}.yaml").write_text(yaml.safe_dump(over, sort_keys=False))
    study = studies.resolve(STUDY, work)
    studies.materialize(study)
    doc = study.document()
    env = {**G.child_env(), "PYTHONPATH": os.pathsep.join([str(work), str(G.DEPS_DIR)])}
    waves = job_commands(doc, study.params_file)
    names = ("synthesize + fit_classifier", "train", "probe + intervene", "analyze")
    out: dict = {"waves": {}, "failures": [], "jobs": sum(len(w) for w in waves)}
    deadline = time.monotonic() + timeout

    def one(cmd: str) -> tuple[str, int, str]:
        left = max(deadline - time.monotonic(), 1)
        try:
            argv = [sys.executable if a == "python" else a for a in cmd.split()]
            r = subprocess.run(
                argv, cwd=work, env=env, capture_output=True, text=True, timeout=left
            )
            return cmd, r.returncode, r.stderr[-1500:]
        except subprocess.TimeoutExpired:
            return cmd, -1, f"timed out ({timeout:.0f} s for the slice)"

    for name, wave in zip(names, waves, strict=True):
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(one, wave))
        out["waves"][name] = round(time.monotonic() - t0, 1)
        print(f"  {name}: {len(wave)} job(s), {out['waves'][name]:.1f} s", flush=True)
        bad = [(c, rc, err) for c, rc, err in results if rc != 0]
        if bad:
            out["failures"] = [f"{c.split()[2]} ({rc}): {err}" for c, rc, err in bad]
            break
    return out


def pack(work: Path, out_dir: Path, record: dict) -> Path:
    """One archive: the slice's small files (no checkpoints or datasets) and the record."""
    path = out_dir / "gpu_slice.tar.gz"
    base = work / "results" / STUDY
    with tarfile.open(path, "w:gz") as tar:
        if base.is_dir():
            for f in sorted(base.rglob("*")):
                if f.is_file() and f.suffix in KEEP_SUFFIXES:
                    tar.add(f, arcname=f"{STUDY}/{f.relative_to(base)}")
        data = json.dumps(record, indent=1, default=str).encode()
        info = tarfile.TarInfo("gpu_slice.json")
        info.size = len(data)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return path


# ---- 6. the projection ------------------------------------------------------------------------
def projection(record: dict, paper_counts: dict) -> dict:
    """Wall time of configs/paper.yaml on one device from the measured figures: training at the
    best measured rate of each mode (all runs in ensembles of the best K), checkpoint writing
    and evaluation at the slice's measured seconds per run and checkpoint."""
    runs, steps, ckpts = paper_counts["runs"], paper_counts["steps"], paper_counts["checkpoints"]
    sl = record.get("slice", {})
    per_ckpt = sl.get("eval_s_per_run_ckpt")
    write = sl.get("ckpt_s_per_run_ckpt") or 0.0
    fixed = sl.get("fixed_s", 0.0)  # synthesize + fit_classifier + analyze, once
    out: dict = {"goal_s": GOAL_S, "runs": runs, "steps": steps, "checkpoints": ckpts}
    for mode in MODES:
        rates = {
            k: v["model_steps_per_s"]
            for k, v in record["step"].items()
            if isinstance(v, dict) and v.get("mode") == mode
        }
        if not rates or per_ckpt is None:
            continue
        key = max(rates, key=rates.get)
        train_s = runs * steps / rates[key]
        eval_s = runs * ckpts * (per_ckpt + write)
        total = train_s + eval_s + fixed
        out[mode] = {
            "k": record["step"][key]["k"],
            "train_s": train_s,
            "eval_and_checkpoints_s": eval_s,
            "total_s": total,
            "meets_goal": total <= GOAL_S,
        }
    ev = record.get("eval_batched")
    best = min((out[m] for m in MODES if m in out), key=lambda q: q["total_s"], default=None)
    if isinstance(ev, dict) and best is not None:
        # Evaluation batched across checkpoints (not yet in the stages), at the speed-up
        # measured on the probe's sampling, applied to probe and intervene alike.
        eval_s = runs * ckpts * (per_ckpt / ev["speedup"] + write)
        total = best["train_s"] + eval_s + fixed
        out["batched_eval"] = {
            **best,
            "eval_and_checkpoints_s": eval_s,
            "total_s": total,
            "meets_goal": total <= GOAL_S,
        }
    return out


def _hms(s: float) -> str:
    return G._hms(s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--tiny", action="store_true", help="tiny network and params (a test)")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "build/gpu_slice")))
    p.add_argument("--budget", type=float, default=450.0, help="seconds for the whole check")
    p.add_argument("--wheels", type=Path, default=G.WHEELS_DIR)
    p.add_argument("--work", type=Path, help="scratch project copy (default: a temporary one)")
    p.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--test-seconds", type=float, default=150.0, help="at most, for the tests")
    p.add_argument(
        "--slice-seconds", type=float, default=220.0, help="kept for the slice (not --tiny)"
    )
    p.add_argument("--steps", type=int, help="the slice's steps (default: sized to fit)")
    p.add_argument("--checkpoints", type=int, help="its checkpoint count (default: sized)")
    args = p.parse_args(argv)

    budget = G.Budget(args.budget)
    installed = G.ensure_packages(args.wheels)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device is available")
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        mem = torch.cuda.get_device_properties(device).total_memory / 2**30
        where = f"{name} ({mem:.0f} GiB), CUDA {torch.version.cuda}"
    else:
        torch.set_num_threads(1)
        where = "CPU, 1 thread"
    tiny = args.tiny
    print(f"== conceptspace GPU slice{' (tiny)' if tiny else ''}: torch {torch.__version__}, "
          f"{where} ==", flush=True)  # fmt: skip
    if installed:
        print(f"installed from {args.wheels}: {', '.join(installed)}", flush=True)
    record: dict = {"device": where, "torch": torch.__version__, "tiny": tiny, "step": {}}

    # 2. tests
    if args.skip_tests:
        tests = {"ok": True, "summary": "not run (--skip-tests)", "seconds": 0.0, "tail": ""}
    else:
        tests = G.run_tests(device, min(args.test_seconds, budget.left() * 0.4))
    record["tests"] = tests
    print(f"tests/test_cuda.py: {tests['summary']} ({tests['seconds']:.0f} s)", flush=True)
    if not tests["ok"]:
        print(tests["tail"], flush=True)

    # 3. the step
    if tiny:
        tiny_params = ROOT / "tests" / "params.tiny.yaml"
        net_study = G.load_study(tiny_params, net=G.TINY_NET)
        paper_counts = G.study_counts(net_study)
    else:
        net_study = G.load_study(ROOT / "configs" / f"{STUDY}.yaml")
        paper_counts = G.study_counts(G.load_study(ROOT / "configs" / f"{PAPER}.yaml"))
    net_cfg, cfg = G.configs_of(net_study)
    n_train = G.study_counts(net_study)["n_train"]
    flops = flops_per_model_step(net_cfg, cfg, device)
    peaks = {
        "datasheet": datasheet_peaks(device),
        "measured": (
            matmul_peak(device, torch.float32, 1.0),
            matmul_peak(device, torch.bfloat16, 1.0),
        ),
    }
    record.update(flops_per_model_step=flops, peaks=peaks)
    window = 0.2 if tiny else 3.0
    ks = TINY_KS if tiny else KS
    reserve = 10.0 if tiny else args.slice_seconds
    for k in ks:  # K = 4 first: the slice is sized from it
        for mode in MODES:
            key = f"{mode}/{k}"
            if budget.left() < reserve + 15:
                record["step"][key] = "skipped (time budget)"
                continue
            try:
                r = step_rate(net_cfg, cfg, device, k, mode, n_train, window)
            except Exception as e:  # e.g. out of memory at K = 64: kept as data
                record["step"][key] = f"failed: {type(e).__name__}: {e}"[:300]
            else:
                r.update(k=k, mode=mode, tflops=r["model_steps_per_s"] * flops / 1e12)
                record["step"][key] = r
            finally:
                G.free(device)
    print_step_table(record, ks)
    if budget.left() > reserve + 20:
        try:
            ev = eval_speedup(net_study, device, 2 if tiny else 8, window)
        except Exception as e:
            ev = f"failed: {type(e).__name__}: {e}"[:300]
        finally:
            G.free(device)
        record["eval_batched"] = ev
        if isinstance(ev, dict):
            print(
                f"probe sampling, {ev['images']} images per checkpoint: "
                f"{ev['s_per_ckpt']:.3f} s checkpoint by checkpoint, "
                f"{ev['batched_s_per_ckpt']:.3f} s batched over {ev['models']} "
                f"({ev['speedup']:.2f}x)",
                flush=True,
            )
        else:
            print(f"batched evaluation: {ev}", flush=True)

    # 4. the slice, sized to the time left
    eval_ckpt_s = 0.05 if tiny else 1.5  # per run and checkpoint, from benchmarks/gpu_check
    k_slice = 4
    eager = record["step"].get(f"eager/{ks[-1] if tiny else k_slice}")
    rate = eager["model_steps_per_s"] if isinstance(eager, dict) else None
    fixed_guess = 15.0 if tiny else 90.0  # synthesize, fit_classifier, analyze, start-ups
    steps, count = size_slice(rate, eval_ckpt_s, budget.left() - fixed_guess - 15, k_slice)
    if tiny:
        steps, count = None, None  # the tiny params' own schedule
    steps, count = args.steps or steps, args.checkpoints or count
    over = slice_overlay(tiny, steps, count)
    record["slice_overlay"] = over
    work_tmp = None
    if args.work is None:
        work_tmp = tempfile.TemporaryDirectory(prefix="gpu_slice_")
        args.work = Path(work_tmp.name)
    work = copy_project(args.work)
    if tiny:
        shutil.copy2(ROOT / "tests" / "params.tiny.yaml", work / "params.yaml")
    print(f"\nthe slice: {over.get('train', {})} in {work}", flush=True)
    t0 = time.monotonic()
    sl = run_slice(work, over, args.jobs, max(budget.left() - 10, 30))
    sl["seconds"] = round(time.monotonic() - t0, 1)
    record["slice"] = sl
    slice_summary(work, sl, rate)

    # 5. the archive
    archive = pack(work, args.out, record)
    print(f"archive: {archive} ({archive.stat().st_size / 2**20:.2f} MiB)", flush=True)

    # 6. the projection
    proj = projection(record, paper_counts)
    record["projection"] = proj
    print_projection(proj, tiny)
    (args.out / "gpu_slice.json").write_text(json.dumps(record, indent=1, default=str))
    archive = pack(work, args.out, record)  # again, with the projection in its record
    if work_tmp is not None:
        work_tmp.cleanup()
    ok = tests["ok"] and not sl["failures"]
    if sl["failures"]:
        print("slice failures:\n" + "\n".join(sl["failures"]), flush=True)
    return 0 if ok else 1


def slice_summary(work: Path, sl: dict, rate: float | None) -> None:
    """Seconds per run and checkpoint of evaluation and of checkpointing (the training job's
    time beyond its steps at the measured eager ``rate``, start-up included), from the waves
    and the schedule that ran: what the projection scales."""
    from conceptspace import studies
    from conceptspace.params import validate

    doc = validate(studies.resolve(STUDY, work).document())
    runs = len(doc.run_ids) * len(doc.seeds)
    ckpts = len(doc.checkpoint_steps())
    w = sl["waves"]
    sl.update(runs=runs, checkpoints=ckpts, steps=doc.train.steps)
    if "probe + intervene" in w:
        sl["eval_s_per_run_ckpt"] = w["probe + intervene"] / (runs * ckpts)
    sl["fixed_s"] = w.get("synthesize + fit_classifier", 0.0) + w.get("analyze", 0.0)
    if rate and "train" in w:
        beyond = w["train"] - runs * doc.train.steps / rate
        sl["ckpt_s_per_run_ckpt"] = max(beyond, 0.0) / (runs * ckpts)
    logs = sorted((work / "results" / STUDY / "train").glob("*/*/log/train_log.csv"))
    sl["trained_runs"] = len(logs)


def print_step_table(record: dict, ks) -> None:
    flops, peaks = record["flops_per_model_step"], record["peaks"]
    sheet, measured = peaks["datasheet"], peaks["measured"]
    print(f"\none model-step: {flops / 1e9:.1f} GFLOP (PyTorch's FLOP counter)")
    if sheet:
        print(f"peaks, TFLOP/s: datasheet TF32 {sheet[0]:.0f}, bf16 {sheet[1]:.0f}", end="")
    if measured[0]:
        print(f"; measured matrix product TF32 {measured[0]:.0f}, bf16 {measured[1]:.0f}", end="")
    print()
    print(f"\n{'ensemble step':<44}{'K':>4}{'steps/s':>10}{'TFLOP/s':>9}{'peak':>8}{'GiB':>7}")
    notes = {
        "eager": "eager, deterministic (the train stage)",
        "graph": "CUDA graph, same bits",
        "fast": "bf16 + graph + cuDNN autotune (not bitwise)",
        "fast_cl": "the same, channels-last (not bitwise)",
    }
    for k in ks:
        for mode in MODES:
            v = record["step"].get(f"{mode}/{k}")
            if not isinstance(v, dict):
                print(f"  {notes[mode]:<42}{k:>4}  {v}")
                continue
            peak = "-"
            if sheet:
                ceiling = sheet[1] if mode.startswith("fast") else sheet[0]
                peak = f"{100 * v['tflops'] / ceiling:.1f}%"
            gib = v.get("peak_gib")
            print(
                f"  {notes[mode]:<42}{k:>4}{v['model_steps_per_s']:>10.1f}{v['tflops']:>9.2f}"
                f"{peak:>8}{'-' if gib is None else format(gib, '.1f'):>7}"
            )


def print_projection(proj: dict, tiny: bool) -> None:
    what = "tiny params" if tiny else "configs/paper.yaml"
    print(
        f"\nprojection, {what}: {proj['runs']} runs x {proj['steps']:,} steps, "
        f"{proj['checkpoints']} checkpoints probed and intervened on, one device; goal "
        f"{_hms(proj['goal_s'])}"
    )
    for mode in (*MODES, "batched_eval"):
        q = proj.get(mode)
        if not q:
            print(f"  {mode}: not measured")
            continue
        verdict = "meets the goal" if q["meets_goal"] else "misses the goal"
        print(
            f"  {mode:<12} K={q['k']:<3} training {_hms(q['train_s'])}, checkpoints and "
            f"evaluation {_hms(q['eval_and_checkpoints_s'])}, total {_hms(q['total_s'])}: "
            f"{verdict}"
        )


if __name__ == "__main__":
    sys.exit(main())
