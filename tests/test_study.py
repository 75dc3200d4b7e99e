"""The study's verdicts on synthetic sweeps whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conceptspace.analysis.tables import analyze_study
from conceptspace.params import load_params

STEPS = np.floor(np.linspace(np.sqrt(400), np.sqrt(6000), 24) ** 2).astype(int)
CLASSES = {  # name: (color target, size target, held out)
    "red_large": (0, 0, False),
    "red_small": (0, 1, False),
    "blue_large": (1, 0, False),
    "blue_small": (1, 1, True),
}


def _sigmoid(step, at, width=150.0):
    return 1.0 / (1.0 + np.exp(-(step - at) / width))


def synthetic_sweep(
    held_times: dict[str, tuple[float, float]], lead: float = 1500.0, swept: str = "color"
):
    """Probe and intervention tables of runs whose held-out class learns color and size at
    the given steps (np.inf = never); training classes learn both at step 1200, and an
    overprompt reaches the held-out class ``lead`` steps before naive prompting does. The
    run id gives the separation of the ``swept`` concept (c040: 0.4); the other is fixed."""
    probe, interv, info = [], [], []
    for run, (t_color, t_size) in held_times.items():
        for name, (tc, ts, held) in CLASSES.items():
            for concept, target, t in (("color", tc, t_color), ("size", ts, t_size)):
                learned = _sigmoid(STEPS, t if held else 1200.0)
                p1 = target * learned if held else np.where(target, learned, 1 - learned)
                acc = p1 if target == 1 else 1 - p1
                for s, a, b in zip(STEPS, p1, acc, strict=True):
                    probe.append(
                        dict(
                            run=run,
                            seed=0,
                            step=int(s),
                            **{"class": name},
                            held_out=held,
                            concept=concept,
                            target=target,
                            p1=a,
                            acc=b,
                            count=32,
                        )
                    )
        naive = _sigmoid(STEPS, t_color) * _sigmoid(STEPS, t_size)
        pushed = _sigmoid(STEPS, t_color - lead) * _sigmoid(STEPS, t_size)
        for method, curve in (("naive", naive), ("overprompt", pushed)):
            for s, v in zip(STEPS, curve, strict=True):
                interv.append(
                    dict(
                        run=run,
                        seed=0,
                        step=int(s),
                        method=method,
                        setting=0.0 if method == "naive" else 2.0,
                        **{"class": "blue_small"},
                        p_color=v,
                        p_size=1.0,
                        acc_color=v,
                        acc_size=1.0,
                        joint_acc=v,
                        count=32,
                    )
                )
        sep = float(run[1:]) / 100
        seps = {"color": 0.4, "size": 0.32} | {swept: sep}
        info.append(
            dict(run=run, **{f"sep_{c}": v for c, v in seps.items()})
            | {f"signal_{c}": v**2 / 12 for c, v in seps.items()}
        )
    return pd.DataFrame(probe), pd.DataFrame(interv), pd.DataFrame(info)


@pytest.fixture(scope="module")
def cfg(root=None):
    from pathlib import Path

    return load_params(Path(__file__).resolve().parent.parent / "params.yaml").analyze


def test_the_three_phenomena_are_found(cfg):
    probe, interv, info = synthetic_sweep(
        {
            "c015": (np.inf, 1000.0),  # size first, color never: small red
            "c040": (3500.0, 2000.0),
            "c080": (1000.0, 3000.0),  # color first, then size: large blue, then a turn
        }
    )
    _, metrics = analyze_study(probe, interv, info, cfg)
    assert metrics["phenomena"] == {
        "signal_order": True,
        "memorization": True,
        "hidden_capability": True,
    }
    runs = metrics["runs"]
    assert runs["c015"]["trajectory"]["nearest_class"] == "red_small"
    assert runs["c080"]["trajectory"]["nearest_class"] == "blue_large"
    assert runs["c080"]["trajectory"]["turned"] and not runs["c015"]["trajectory"]["turned"]


def test_a_size_sweep_is_judged_on_size(cfg):
    """When the sweep varies size at a fixed color separation, signal order is read on the
    held-out class's size learning time, and the corners swap: at the weakest size separation
    the prompt imitates the class sharing its color (large blue), at the strongest the one
    sharing its size (small red)."""
    probe, interv, info = synthetic_sweep(
        {
            "s015": (1000.0, np.inf),  # color first, size never: large blue
            "s040": (2000.0, 3500.0),
            "s080": (3000.0, 1000.0),  # size first, then color: small red, then a turn
        },
        swept="size",
    )
    _, metrics = analyze_study(probe, interv, info, cfg)
    assert metrics["phenomena"] == {
        "signal_order": True,
        "memorization": True,
        "hidden_capability": True,
    }
    detail = metrics["phenomena_detail"]
    assert "size separation" in detail["signal_order"]["statement"]
    evidence = detail["memorization"]["evidence"]
    assert evidence["s015"]["expected"] == "blue_large" == evidence["s015"]["observed"]
    assert evidence["s080"]["expected"] == "red_small" == evidence["s080"]["observed"]
    # the same tables judged as a color sweep would be wrong: every color separation is 0.4
    slow_size = {"s015": (1000.0, 1000.0), "s040": (1000.0, 3500.0), "s080": (1000.0, np.inf)}
    probe, interv, info = synthetic_sweep(slow_size, swept="size")
    _, metrics = analyze_study(probe, interv, info, cfg)
    assert metrics["phenomena"]["signal_order"] is False


def test_each_phenomenon_can_fail(cfg):
    probe, interv, info = synthetic_sweep(
        {
            "c015": (1000.0, 3000.0),  # color first although its signal is weakest
            "c040": (3500.0, 2000.0),
            "c080": (np.inf, 1000.0),  # color never at the strongest signal
        },
        lead=0.0,
    )
    _, metrics = analyze_study(probe, interv, info, cfg)
    assert metrics["phenomena"] == {
        "signal_order": False,
        "memorization": False,
        "hidden_capability": False,
    }


def test_every_memorization_number_comes_from_the_one_window(cfg):
    """nearest_class, frac_nearest, mean/min distance and min_distance_step are read in the
    same window (the c080 run of the committed study once reported a closest approach at step
    1315, before its own window opened at 1562)."""
    probe, interv, info = synthetic_sweep(
        {"c015": (np.inf, 1000.0), "c040": (3500.0, 2000.0), "c080": (1000.0, 3000.0)}
    )
    _, metrics = analyze_study(probe, interv, info, cfg)
    for run, r in metrics["runs"].items():
        t = r["trajectory"]
        since, until = t["window"]
        assert since <= t["min_distance_step"] <= until, (run, t)
        d = t["mean_distances_in_window"]
        assert t["nearest_class"] == min(d, key=d.get)
        assert t["mean_distance"] == pytest.approx(d[t["nearest_class"]])
        assert t["min_distance"] <= t["mean_distance"]


def test_memorization_without_recognisable_training_classes_is_not_applicable(cfg):
    probe, interv, info = synthetic_sweep(
        {"c015": (np.inf, 1000.0), "c040": (3500.0, 2000.0), "c080": (1000.0, 3000.0)}
    )
    train = ~probe["held_out"]
    probe.loc[train, "acc"] = 0.5  # the probe never recognises the training classes
    _, metrics = analyze_study(probe, interv, info, cfg)
    t = metrics["runs"]["c015"]["trajectory"]
    assert t["window"] is None and t["nearest_class"] is None and t["turned"] is None
    assert "never reach smoothed accuracy 0.75" in t["window_reason"]
    verdict = metrics["phenomena_detail"]["memorization"]
    assert verdict["holds"] is None and verdict["applicable"] is False
    assert "c015" in verdict["reason"] and "never reach" in verdict["reason"]


def test_two_runs_at_one_separation_leave_signal_order_untested(cfg):
    """The signal-order rule needs one point per separation (docs/method.md §5.3): where two
    runs share the swept separation the verdict is None with a reason, as it is per seed
    across seeds, never a forced no."""
    probe, interv, info = synthetic_sweep(
        {"c015": (np.inf, 1000.0), "c040": (3500.0, 2000.0), "c080": (1000.0, 3000.0)}
    )
    info.loc[info["run"] == "c080", "sep_color"] = 0.4
    _, metrics = analyze_study(probe, interv, info, cfg)
    order = metrics["phenomena_detail"]["signal_order"]
    assert metrics["phenomena"]["signal_order"] is None
    assert order["applicable"] is False and "repeated separations" in order["reason"]
