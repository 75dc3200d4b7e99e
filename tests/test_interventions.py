"""Interventions are forward hooks on the named concept projections: scale 0 reproduces the
naive samples bit for bit, a non-zero scale changes them; overprompts move along one axis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conceptspace.data.concepts import preset
from conceptspace.measure import interventions, probing
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.unet import UNet, UNetConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, channels=(8, 8), groups=4, time_dim=16))
    # conv_out is zero-initialised (eps = z at init): perturb all weights so that the
    # concept pathway reaches the output.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval(), LogSNRSchedule()


def _rows(net, grid, concepts, n, k=3):
    """The direction of class ``k`` along ``concepts`` for each of ``n`` rows."""
    return interventions.row_directions(net, grid, [k] * n, concepts)


def _sample(model, cond, scales=None, **kw):
    net, schedule = model
    grid = preset("2x2", color=0.4, size=0.4)
    if scales is None:
        return probing.generate(net, schedule, cond, steps=4, seed=3, image_size=8, **kw)
    push = _rows(net, grid, ["color"], len(scales))
    with interventions.linear_intervention(net, push, torch.as_tensor(scales)):
        return probing.generate(net, schedule, cond, steps=4, seed=3, image_size=8, **kw)


def test_scale_zero_is_bit_identical_and_nonzero_changes(model):
    grid = preset("2x2", color=0.4, size=0.4)
    cond = np.tile(grid.class_mean_cond(3), (4, 1))
    naive = _sample(model, cond)
    zero = _sample(model, cond, scales=np.zeros(4, np.float32))
    pushed = _sample(model, cond, scales=np.full(4, 2.0, np.float32))
    assert np.array_equal(naive, zero)
    assert not np.allclose(naive, pushed)


def test_hooks_are_removed_after_use(model):
    net, _ = model
    grid = preset("2x2", color=0.4, size=0.4)
    with interventions.linear_intervention(net, _rows(net, grid, ["color"], 2), torch.ones(2)):
        pass
    assert all(not m._forward_hooks for m in interventions.projections(net).values())


def test_one_direction_per_row_or_refused(model):
    net, _ = model
    grid = preset("2x2", color=0.4, size=0.4)
    with pytest.raises(ValueError, match="3 directions for 2 row scales"):
        with interventions.linear_intervention(net, _rows(net, grid, ["color"], 3), torch.ones(2)):
            pass


def test_one_concept_pushes_along_its_embedded_difference(model):
    """With one concept the direction is the authors' single-concept intervention:
    e_b(v_class) - e_b(v_opposite), the vectors holding only that concept."""
    net, _ = model
    grid = preset("2x2", color=0.4, size=0.4)
    push = interventions.push_directions(net, grid, [3], ["color"])
    e1, e0 = (interventions.embed(net, v) for v in grid.push_vectors(3, ["color"]))
    for name, d in push.items():
        torch.testing.assert_close(d[0], (e1[name] - e0[name])[0], rtol=1e-5, atol=1e-6)


def test_several_concepts_are_weighed_equally(model):
    """The direction makes the same angle with each concept's embedded difference (neither
    dominates, docs/method.md §6.1) and is as long as the joint difference."""
    net, _ = model
    grid = preset("2x2", color=0.8, size=0.32)
    k = grid.held_out_classes[0]
    push = interventions.push_directions(net, grid, [k], ["color", "size"])
    joint = [interventions.embed(net, v) for v in grid.push_vectors(k, ["color", "size"])]
    alone = {
        c: [interventions.embed(net, v) for v in grid.push_vectors(k, [c])]
        for c in ("color", "size")
    }
    for name, d in push.items():
        d = d[0]
        cos = [
            torch.nn.functional.cosine_similarity(d, (e1[name] - e0[name])[0], dim=0)
            for e1, e0 in alone.values()
        ]
        torch.testing.assert_close(cos[0], cos[1], rtol=1e-4, atol=1e-5)
        assert cos[0] > 0
        torch.testing.assert_close(d.norm(), (joint[0][name] - joint[1][name])[0].norm())


def test_shared_noise_across_settings(model):
    """With noise_repeat, every setting of a batch sees the same sampler noise, so a batch of
    identical settings repeats the same images."""
    grid = preset("2x2", color=0.4, size=0.4)
    cond = np.tile(grid.class_mean_cond(3), (6, 1))
    out = _sample(model, cond, noise_repeat=3)
    # Same noise per block; the convolutions may round differently by batch position.
    np.testing.assert_allclose(out[0:2], out[2:4], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[0:2], out[4:6], rtol=1e-4, atol=1e-5)


def test_overprompt_moves_only_along_the_concept():
    grid = preset("2x2", color=0.2, size=0.4)
    base = grid.class_mean_cond(3)
    pushed = grid.overprompt_cond(3, ["color"], 2.0)
    np.testing.assert_allclose(
        pushed[4:7], np.clip(base[4:7] + 2 * np.array([-0.2, 0, 0.2]), 0, 1), atol=1e-6
    )
    assert pushed[7] == base[7]


def test_a_push_along_several_concepts_moves_each_towards_the_class():
    """At a strong colour separation the held-out class first imitates the class that shares
    its colour, so the push that elicits it is along size too (docs/method.md §6.1)."""
    grid = preset("2x2", color=0.8, size=0.32)
    k = grid.held_out_classes[0]
    base = grid.class_mean_cond(k)
    col, size = grid.cond_slice("color"), grid.cond_slice("size")
    both = grid.overprompt_cond(k, ["color", "size"], 0.5)
    np.testing.assert_array_equal(both[col], grid.overprompt_cond(k, ["color"], 0.5)[col])
    np.testing.assert_array_equal(both[size], grid.overprompt_cond(k, ["size"], 0.5)[size])
    assert both[size][0] < base[size][0]  # the held-out class is small: pushed smaller
    v_class, v_opposite = grid.push_vectors(k, ["color", "size"])
    np.testing.assert_array_equal(v_class, grid.mean_cond({"color": 1, "size": 1}))
    np.testing.assert_array_equal(v_opposite, grid.mean_cond({"color": 0, "size": 0}))


def test_per_row_directions_act_as_separate_interventions(model):
    """One hook with a direction per row gives each row what a hook with that row's direction
    alone gives it."""
    net, _ = model
    grid = preset("2x2", color=0.4, size=0.4)
    h = np.tile(grid.class_mean_cond(3), (2, 1))
    pushes = [_rows(net, grid, ["color"], 2), _rows(net, grid, ["color", "size"], 2)]
    mixed = {name: torch.stack([pushes[0][name][0], pushes[1][name][1]]) for name in pushes[0]}
    scales = torch.tensor([1.0, 2.0])
    with interventions.linear_intervention(net, mixed, scales):
        together = _sample(model, h)
    for i, push in enumerate(pushes):
        with interventions.linear_intervention(net, push, torch.full((2,), float(scales[i]))):
            alone = _sample(model, h)
        np.testing.assert_allclose(together[i], alone[i], rtol=1e-4, atol=1e-5)


def test_embedding_similarity_rows(model):
    net, _ = model
    grid = preset("2x2", color=0.4, size=0.4)
    vecs = {
        "blue": grid.mean_cond({"color": 1}),
        "red": grid.mean_cond({"color": 0}),
        "small": grid.mean_cond({"size": 1}),
    }
    rows = interventions.embedding_similarity(net, vecs, [("blue", "red"), ("blue", "small")])
    assert len(rows) == 2 * len(net.cond_projection_names())
    assert all(-1.0 <= r["cosine"] <= 1.0 for r in rows)


# ---- doses (docs/method.md §6.1) ----------------------------------------------------------
def _cfg(overprompt, linear, methods=("naive", "overprompt", "linear")):
    from types import SimpleNamespace

    return SimpleNamespace(
        methods=list(methods),
        overprompt=SimpleNamespace(concepts=["color"], doses=list(overprompt)),
        linear=SimpleNamespace(concepts=["color"], doses=list(linear)),
    )


@pytest.mark.parametrize("sep", [0.05, 0.2, 0.4, 0.6, 0.8, 0.95])
def test_overprompt_doses_are_distinct_and_unclipped_at_every_separation(sep):
    grid = preset("2x2", color=sep, size=0.32)
    k = grid.held_out_classes[0]
    naive = grid.class_mean_cond(k)
    prompts = [grid.overprompt_cond(k, ["color"], d) for d in (0.25, 0.5, 0.75, 1.0)]
    rows = [p.tobytes() for p in [naive, *prompts]]
    assert len(set(rows)) == 5
    assert all(p.min() >= 0 and p.max() <= 1 for p in prompts)
    assert np.isclose(prompts[-1][4:7].max(), 1.0) or np.isclose(prompts[-1][4:7].min(), 0.0)


def test_design_refuses_two_doses_that_give_one_prompt():
    """The authors' overprompt factors 2 and 3 clip to one prompt at Δcolor 0.2; two doses of
    one method that make the same prompt and hook are refused by name, as is a dose that
    repeats the naive prompt."""
    grid = preset("2x2", color=0.2, size=0.32)
    with pytest.raises(ValueError, match="overprompt at 1 and overprompt at 1"):
        interventions.design(grid, _cfg([1.0, 1.0], [0.5]))
    with pytest.raises(ValueError, match="linear at 2 and linear at 2"):
        interventions.design(grid, _cfg([0.5], [2.0, 2.0]))
    with pytest.raises(ValueError, match="naive at 0 and linear at 0"):
        interventions.design(grid, _cfg([0.5], [0.0]))
    plan = interventions.design(grid, _cfg([0.25, 0.5, 1.0], [0.25, 0.5, 1.0, 2.0]))
    assert [(p["method"], p["setting"]) for p in plan][:3] == [
        ("naive", 0.0),
        ("overprompt", 0.25),
        ("overprompt", 0.5),
    ]


def test_params_refuse_repeated_and_out_of_range_doses(params_doc):
    import copy

    from conceptspace.params import ParamsError, validate

    def check(path, value, needle):
        doc = copy.deepcopy(params_doc)
        doc["intervene"][path[0]][path[1]] = value
        with pytest.raises(ParamsError, match=needle):
            validate(doc)

    check(("linear", "doses"), [1.0, 1.0], "distinct")
    check(("overprompt", "doses"), [0.5, 0.5], "distinct")
    check(("overprompt", "doses"), [0.5, 2.0], "past 1")
    check(("linear", "doses"), [0.0, 1.0], "> 0")


def test_ddim_is_deterministic_after_its_first_draw(model):
    net, schedule = model
    grid = preset("2x2", color=0.4, size=0.4)
    cond = np.tile(grid.class_mean_cond(3), (4, 1))
    a = probing.generate(net, schedule, cond, steps=4, seed=3, image_size=8, sampler="ddim")
    b = probing.generate(net, schedule, cond, steps=4, seed=3, image_size=8, sampler="ddim")
    anc = probing.generate(net, schedule, cond, steps=4, seed=3, image_size=8)
    assert np.array_equal(a, b) and not np.allclose(a, anc)
    with pytest.raises(ValueError, match="sampler"):
        probing.generate(net, schedule, cond, steps=4, seed=3, image_size=8, sampler="euler")
