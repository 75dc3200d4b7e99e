"""Smoke tests of the figure functions on small synthetic tables (files exist, sizes, aspect).

``python -m tests.test_figures [outdir]`` renders every figure from richer synthetic data (default
``/tmp/figcheck``) for a visual check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import conceptspace.analysis.capability as CP
from conceptspace.figures.capability import (
    capability_figure,
    dose_response_figure,
    pick_checkpoints,
)
from conceptspace.figures.diagnostics import (
    embedding_figure,
    samples_over_training_figure,
    training_curves_figure,
)
from conceptspace.figures.learning_times import learning_time_figure
from conceptspace.figures.trajectories import trajectory_animation, trajectory_figure

CLASSES = {"red_large": (0, 0), "red_small": (0, 1), "blue_large": (1, 0), "blue_small": (1, 1)}
HELD_OUT = "blue_small"
RUNS = {"c015": 0.15, "c040": 0.4, "c080": 0.8}  # run -> color separation (size: 0.4)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def synthetic(n_steps: int = 10, runs: dict = RUNS, seeds=(0, 1), rng_seed: int = 0) -> dict:
    """All input tables of the figures for a 2x2 sweep, with memorization-then-turn dynamics
    (the phenomenological model of docs/method.md §5.6), made up but shaped like the real ones."""
    rng = np.random.default_rng(rng_seed)
    steps = np.unique(np.round(np.geomspace(200, 20_000, n_steps)).astype(int))
    t = np.log(steps / steps[0]) / np.log(steps[-1] / steps[0]) * 25.0  # model time 0..25
    traj, info, turns, lt, cap, train_acc, em, emb, logs = [], [], {}, [], [], [], [], [], []
    for r_i, (run, sep_c) in enumerate(runs.items()):
        a = max(sep_c / 0.4, 0.3) * 2.0  # signal ratio color/size
        info.append(
            {
                "run": run,
                "sep_color": sep_c,
                "sep_size": 0.4,
                "signal_color": 0.05 * sep_c**2 * 10,
                "signal_size": 0.02 + 0.001 * r_i,
            }
        )
        # held-out: c1 (color) and c2 (size) per the ODE, Euler integrated on a fine grid
        tt = np.linspace(0, 25, 500)
        c = np.array([0.5, 0.5])
        path = []
        for k in range(len(tt)):
            path.append(c.copy())
            al = _sigmoid(0.6 * (tt[k] - 11 + 2 * a))
            d1 = a / 2 * (1 - c[0]) + 1 / (2 * a) * (al - c[0])
            d2 = 1 / (2 * a) * (1 - c[1]) + a / 2 * (al - c[1])
            c = np.clip(c + 0.3 * (tt[1] - tt[0]) * np.array([d1, d2]), 0, 1)
        path = np.array(path)
        held = np.stack([np.interp(t, tt, path[:, 0]), np.interp(t, tt, path[:, 1])], 1)
        for cls, (tx, ty) in CLASSES.items():
            if cls == HELD_OUT:
                xy = held
            else:
                w = 1 - np.exp(-t / 3.0)
                xy = np.stack([0.5 + (tx - 0.5) * w, 0.5 + (ty - 0.5) * w], 1)
            for s, (x, y) in zip(steps, xy, strict=True):
                traj.append(
                    {
                        "run": run,
                        "class": cls,
                        "held_out": cls == HELD_OUT,
                        "step": int(s),
                        "color": x,
                        "size": y,
                        "target_color": tx,
                        "target_size": ty,
                    }
                )
        turns[run] = {
            "saturation_step": float(steps[n_steps // 2]),
            "heading_step": float(steps[min(n_steps // 2 + 1, n_steps - 1)]),
            "speed_peak_step": None,
            "nearest_class": "blue_large" if sep_c > 0.4 else "red_small",
        }
        # learning times
        budget = float(steps[-1])
        for concept in ("color", "size"):
            for thr in (0.8, 0.9):
                for group in ("held_out", "train"):
                    base = 3000 / (sep_c if concept == "color" else 0.4) * (1 + (thr - 0.8) * 3)
                    base *= 1.0 if group == "held_out" else 0.3
                    censored = group == "held_out" and concept == "color" and sep_c < 0.2
                    mean = budget if censored else min(base, budget)
                    lt.append(
                        {
                            "run": run,
                            "group": group,
                            "class": HELD_OUT if group == "held_out" else "train",
                            "held_out": group == "held_out",
                            "concept": concept,
                            "threshold": thr,
                            "learning_time_mean": mean,
                            "learning_time_std": 0.0 if censored else 0.1 * mean,
                            "n_seeds": len(seeds),
                            "n_censored": len(seeds) if censored else 0,
                            "mean_is_lower_bound": censored,
                            "budget": budget,
                        }
                    )
        # capability curves: elicitation emerges before naive prompting
        mids = {"naive": 0.75, "overprompt": 0.45, "linear": 0.5, "guidance": 0.6}
        for seed in seeds:
            jitter = rng.normal(0, 0.02)
            x = np.arange(len(steps)) / (len(steps) - 1)
            train_curve = _sigmoid((x - 0.25 + jitter) * 14)
            for s, acc in zip(steps, train_curve, strict=True):
                train_acc.append({"run": run, "seed": seed, "step": int(s), "acc": acc})
            for method, mid in mids.items():
                curve = 0.97 * _sigmoid((x - mid - 0.1 * (0.4 - sep_c) + jitter) * 16)
                for s, v in zip(steps, curve, strict=True):
                    cap.append(
                        {
                            "run": run,
                            "seed": seed,
                            "step": int(s),
                            "method": method,
                            "class": HELD_OUT,
                            "capability": v,
                            "best_setting": 0.0,
                            "n_settings": 1 if method == "naive" else 4,
                        }
                    )
            for b in range(6):
                for pair, c0 in (("blue|red", -0.5), ("blue|small", 0.1), ("blue|large", 0.3)):
                    cos = c0 * _sigmoid((x - 0.4) * 10) + 0.9 * (1 - _sigmoid((x - 0.4) * 10))
                    for s, v in zip(steps, cos + rng.normal(0, 0.05, len(steps)), strict=True):
                        emb.append(
                            {
                                "run": run,
                                "seed": seed,
                                "step": int(s),
                                "block": f"b{b}",
                                "block_index": b,
                                "pair": pair,
                                "cosine": float(np.clip(v, -1, 1)),
                            }
                        )
            for s in steps:
                loss = 0.6 + 4.0 * (s / 200.0) ** -0.6
                logs.append(
                    {
                        "run": run,
                        "seed": seed,
                        "step": int(s),
                        "train_loss": loss * (1 + rng.normal(0, 0.03)),
                        "val_loss": loss,
                        "held_out_loss": loss * 1.15,
                    }
                )
        for method, mid in mids.items():
            for thr in (0.8, 0.9):
                i = int(np.clip(round((mid + 0.1 * (0.4 - sep_c)) * (len(steps) - 1) + 2), 0, 99))
                cens = i >= len(steps)
                step = float(steps[min(i, len(steps) - 1)])
                em.append(
                    {
                        "run": run,
                        "n_seeds": len(seeds),
                        "class": HELD_OUT,
                        "method": method,
                        "threshold": thr,
                        "emergence_step": step,
                        "censored": cens,
                        "budget": budget,
                        "_i": i,
                    }
                )
    em = pd.DataFrame(em)
    naive = em[em["method"] == "naive"].set_index(["run", "threshold"])
    em["naive_step"] = [
        naive.at[(r, t), "emergence_step"] for r, t in zip(em.run, em.threshold, strict=True)
    ]
    em["naive_censored"] = [
        naive.at[(r, t), "censored"] for r, t in zip(em.run, em.threshold, strict=True)
    ]
    em["lead_steps"] = np.where(em["censored"], np.nan, em["naive_step"] - em["emergence_step"])
    em["lead_checkpoints"] = em["lead_steps"]
    em["lead_is_lower_bound"] = em["naive_censored"] & ~em["censored"]
    em = em.drop(columns="_i")

    n_img = 3
    images = np.zeros((len(steps), 4 * n_img, 3, 16, 16), np.float16)
    yy, xx = np.meshgrid(np.linspace(-1, 1, 16), np.linspace(-1, 1, 16), indexing="ij")
    class_id = np.repeat(np.arange(4), n_img)
    for k in range(len(steps)):
        for m, cid in enumerate(class_id):
            tx, ty = list(CLASSES.values())[cid]
            frac = min(1.0, (k + 1) / (len(steps) / 2))
            rad = 0.8 - 0.4 * ty * frac
            rgb = np.array([0.9 - 0.8 * tx * frac, 0.2, 0.1 + 0.8 * tx * frac])
            mask = (xx - 0.1 * m % 3) ** 2 + yy**2 < rad**2
            images[k, m] = np.where(mask[None], rgb[:, None, None], 0.9)

    tables = {
        "traj": pd.DataFrame(traj),
        "run_info": pd.DataFrame(info),
        "turns": turns,
        "lt_summary": pd.DataFrame(lt),
        "fits": {
            "color": {"slope": 0.0015, "intercept": 0.00005, "r2": 0.93, "n": 2},
            "size": {"slope": float("nan"), "intercept": float("nan"), "r2": float("nan")},
        },
        "cap": pd.DataFrame(cap),
        "train_acc": pd.DataFrame(train_acc),
        "emergence": em,
        "emb": pd.DataFrame(emb),
        "logs": pd.DataFrame(logs),
        "images": images,
        "steps": steps,
        "class_names": list(CLASSES),
        "class_id": class_id,
    }
    return tables


def render_all(d: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{k}.png" for k in ("traj", "lt", "cap", "samples", "emb", "loss")}
    trajectory_figure(d["traj"], d["run_info"], d["turns"], paths["traj"])
    learning_time_figure(d["lt_summary"], d["run_info"], d["fits"], paths["lt"])
    capability_figure(d["cap"], d["train_acc"], d["emergence"], paths["cap"])
    n = len(d["steps"])
    samples_over_training_figure(
        d["images"],
        d["steps"],
        d["class_names"],
        d["class_id"],
        paths["samples"],
        picks=[0, n // 3, 2 * n // 3, n - 1],
        held_out=[HELD_OUT],
        title="synthetic samples",
    )
    embedding_figure(d["emb"], paths["emb"])
    training_curves_figure(d["logs"], paths["loss"], run_info=d["run_info"])
    paths["gif"] = out / "traj.gif"
    trajectory_animation(d["traj"], d["run_info"], paths["gif"], turns=d["turns"])
    return paths


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    return render_all(synthetic(n_steps=10), tmp_path_factory.mktemp("figs"))


# expected width / height of each PNG (loose bounds: bbox_inches="tight" trims margins)
ASPECT = {
    "traj": (1.5, 2.6),  # square concept panel + colourbar + distance panel
    "lt": (0.9, 1.7),  # 2 rows x 2 concepts
    "cap": (1.5, 4.5),  # up to three panels a row (3 runs: one row)
    "samples": (1.5, 5.0),  # 4 rows of classes x 4 checkpoints with 3 images each
    "emb": (2.0, 4.5),
    "loss": (1.1, 3.0),  # one panel per run (3 runs: one row of three)
}


@pytest.mark.parametrize("name", sorted(ASPECT))
def test_png_and_pdf(rendered, name):
    png = rendered[name]
    pdf = png.with_suffix(".pdf")
    assert png.exists() and pdf.exists()
    assert png.stat().st_size > 10_000
    assert pdf.stat().st_size > 5_000
    with Image.open(png) as im:
        w, h = im.size
    lo, hi = ASPECT[name]
    assert lo <= w / h <= hi, f"{name}: aspect {w / h:.2f} outside [{lo}, {hi}]"
    assert not list(png.parent.glob(f".{png.name}.*")), "temporary file left behind"


def test_animation(rendered):
    gif = rendered["gif"]
    assert gif.exists() and 10_000 < gif.stat().st_size < 2_000_000
    with Image.open(gif) as im:
        assert im.n_frames == 10  # one per checkpoint (fewer than max_frames)
        assert 0.9 < im.size[0] / im.size[1] < 1.4


def test_animation_caps_frames(tmp_path):
    d = synthetic(n_steps=30, runs={"c040": 0.4}, seeds=(0,))
    trajectory_animation(d["traj"], d["run_info"], tmp_path / "a.gif", max_frames=12)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 12


def test_degenerate_inputs(tmp_path):
    """One run (flat colour scale), missing turn steps, per-seed emergence, censored methods."""
    d = synthetic(n_steps=8, runs={"c040": 0.4}, seeds=(0,))
    turns = {"c040": {"saturation_step": None, "heading_step": float("nan")}}
    trajectory_figure(d["traj"], d["run_info"], turns, tmp_path / "t.png")
    em = d["emergence"].rename(columns={"n_seeds": "seed"}).assign(seed=0)
    em.loc[em["method"] == "linear", "censored"] = True
    em.loc[em["method"] == "linear", "lead_steps"] = np.nan
    capability_figure(d["cap"], d["train_acc"].iloc[:0], em, tmp_path / "c.png", logx=False)
    learning_time_figure(d["lt_summary"], d["run_info"], {}, tmp_path / "l.png")
    for name in ("t", "c", "l"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
        assert (tmp_path / f"{name}.pdf").exists()


def test_trajectory_from_analysis(tmp_path):
    """The figure accepts the real analysis outputs (trajectories + turn_summary)."""
    import conceptspace.analysis.curves as CV
    import conceptspace.analysis.trajectories as TJ

    d = synthetic(n_steps=12, runs={"c015": 0.15, "c080": 0.8}, seeds=(0,))
    t = d["traj"]
    rows = []
    for _, r in t.iterrows():
        for concept in ("color", "size"):
            rows.append(
                {
                    "run": r["run"],
                    "seed": 0,
                    "step": r["step"],
                    "class": r["class"],
                    "held_out": r["held_out"],
                    "concept": concept,
                    "target": r[f"target_{concept}"],
                    "p1": r[concept],
                    "acc": 1 - abs(r[concept] - r[f"target_{concept}"]),
                    "count": 8,
                }
            )
    probe = pd.DataFrame(rows)
    traj = TJ.trajectories(probe, sigma=1.0)
    turns = {run: TJ.turn_summary(g) for run, g in traj.groupby("run")}
    trajectory_figure(traj, d["run_info"], turns, tmp_path / "t.png")
    lt = CV.summarize_over_seeds(CV.learning_times(probe))
    learning_time_figure(lt, d["run_info"], d["fits"], tmp_path / "l.png")
    assert (tmp_path / "t.png").exists() and (tmp_path / "l.png").exists()


if __name__ == "__main__":
    outdir = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/figcheck")
    for name, p in render_all(synthetic(n_steps=40), outdir).items():
        print(name, p, p.stat().st_size)


def test_pdf_bytes_do_not_depend_on_the_time(tmp_path):
    import time

    import matplotlib.pyplot as plt

    from conceptspace.figures.style import save_figure

    digests = []
    for i in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        save_figure(fig, tmp_path / f"f{i}.png", pdf=True)
        digests.append((tmp_path / f"f{i}.pdf").read_bytes())
        time.sleep(1.1)
    assert digests[0] == digests[1]


def test_runs_are_coloured_by_the_swept_concept():
    """A size sweep's trajectory figures colour the runs by Δsize (not by a constant Δcolor);
    a colour sweep, and a grid where several separations vary, by Δcolor."""
    import pandas as pd

    from conceptspace.figures.drawing import drawn_concepts

    traj = pd.DataFrame({"run": ["a"], "target_color": [1.0], "target_size": [1.0]})
    size_sweep = pd.DataFrame({"run": ["a", "b"], "sep_color": [0.4, 0.4], "sep_size": [0.15, 0.6]})
    color_sweep = pd.DataFrame({"run": ["a", "b"], "sep_color": [0.1, 0.8], "sep_size": [0.3, 0.3]})
    both = pd.DataFrame({"run": ["a", "b"], "sep_color": [0.1, 0.8], "sep_size": [0.2, 0.3]})
    assert drawn_concepts(traj, size_sweep) == (("color", "size"), "size")
    assert drawn_concepts(traj, color_sweep) == (("color", "size"), "color")
    assert drawn_concepts(traj, both) == (("color", "size"), "color")


def _dose_table(doses=(0.25, 0.5, 1.0, 2.0), steps=(100, 200, 400, 800, 1600), seeds=(0, 1)):
    """An intervene table of one method whose strongest doses break the other concept."""
    rows = []
    for seed in seeds:
        for i, step in enumerate(steps):
            for d in doses:
                color = min(1.0, 0.3 + 0.4 * d + 0.05 * i)
                size = 1.0 if d <= 0.5 else 0.1
                rows.append(
                    {"run": "c040", "seed": seed, "step": step, "method": "linear",
                     "setting": d, "class": "blue_small", "acc_color": round(color * 64) / 64,
                     "acc_size": size, "joint_acc": round(color * size * 64) / 64, "count": 64}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_pick_checkpoints_early_turn_late():
    steps = [100, 200, 400, 800, 1600, 3200, 6400, 12800]
    assert pick_checkpoints(steps, 900.0) == {"early": 400, "at the turn": 800, "late": 12800}
    assert pick_checkpoints(steps, None) == {"early": 400, "middle": 1600, "late": 12800}


def test_dose_response_figure(tmp_path):
    dose = CP.dose_response(_dose_table())
    path = tmp_path / "dose.png"
    assert dose_response_figure(dose, {"c040": 400.0}, path, method="linear")
    with Image.open(path) as im:
        assert 1000 <= im.width <= 1600  # README width (10 in at 150 dpi)
    one = CP.dose_response(_dose_table(doses=(1.0,)))
    assert not dose_response_figure(one, {}, tmp_path / "one.png", method="linear")
    assert not (tmp_path / "one.png").exists()


def test_capability_figure_fits_readme_width(tmp_path):
    """Four runs in a 2 x 2 grid at README width, with the Bonferroni bands of the analysis."""
    d = synthetic(n_steps=10, runs={"c020": 0.2, "c040": 0.4, "c060": 0.6, "c080": 0.8})
    interv = _dose_table()
    cap = CP.capability_curves(interv)
    em = CP.emergence(interv, (0.8,), sigma=0, k=1)
    capability_figure(cap, d["train_acc"], em, tmp_path / "cap.png")
    capability_figure(d["cap"], d["train_acc"], d["emergence"], tmp_path / "wide.png")
    for name in ("cap", "wide"):
        with Image.open(tmp_path / f"{name}.png") as im:
            assert 1000 <= im.width <= 1700, (name, im.width)  # ~10 in at 150 dpi


@pytest.mark.parametrize("study", ["default", "unseen_seeds"])
def test_learning_time_counts_and_spreads_stay_inside_their_panels(study, monkeypatch, tmp_path):
    """On a committed study's own tables: every k/n count of censored seeds lies inside its
    panel, and every error bar of the learning-time panels inside the y range shown (the counts
    once sat on the y axis and past the right edge, a spread ran below the panel)."""
    import json

    import conceptspace.figures.learning_times as LT

    root = Path(__file__).resolve().parent.parent / "results" / study / "analyze"
    lt = pd.read_csv(root / "learning_times.csv")
    runs = json.loads((root / "details.json").read_text())["runs"]
    info = pd.DataFrame(
        [{"run": r, **{f"signal_{c}": v for c, v in m["signal"].items()}} for r, m in runs.items()]
    )
    drawn = {}
    monkeypatch.setattr(LT, "save_figure", lambda fig, path, pdf=False: drawn.update(fig=fig))
    learning_time_figure(lt, info, {}, tmp_path / "lt.png")
    fig = drawn["fig"]
    renderer = fig.canvas.get_renderer()
    counts = 0
    for ax in fig.axes[:2]:  # the learning-time panels, one per concept
        box = ax.get_window_extent(renderer)
        for text in ax.texts:
            if "/" in text.get_text():
                counts += 1
                t = text.get_window_extent(renderer)
                assert box.x0 <= t.x0 and t.x1 <= box.x1 and t.y1 <= box.y1, text.get_text()
        y_lo, y_hi = ax.get_ylim()
        for coll in ax.collections:  # error bars: vertical segments in data units
            for seg in coll.get_segments():
                assert y_lo <= seg[:, 1].min() and seg[:, 1].max() <= y_hi
    assert study != "default" or counts > 0  # the default study has censored seeds to count
    import matplotlib.pyplot as plt

    plt.close(fig)
