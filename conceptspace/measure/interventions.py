"""Eliciting a held-out class beyond naive prompting (docs/method.md §6).

Each method is applied at several *doses*, in units that mean the same at every separation:

- *overprompting*: the class-mean prompt pushed along the axes of the chosen concepts,
  towards the class's own values; the dose is the fraction of the way from the class mean to
  the edge of each concept's range (:meth:`ConceptGrid.overprompt_cond`), so no two doses
  give one prompt;
- *linear latent intervention*: at every ResNet block, the output of its concept projection
  ``e_b(h)`` is replaced by ``e_b(h) + s * d_b``. The direction ``d_b`` weighs the chosen
  concepts equally (:func:`push_directions`): each concept's embedded difference
  ``e_b(v_c,class) - e_b(v_c,opposite)`` (single-concept vectors, the authors' intervention)
  is scaled to unit length, the unit vectors are summed, and the sum is scaled to the length
  of the joint difference ``e_b(v_class) - e_b(v_opposite)`` (vectors holding all the chosen
  concepts, :meth:`ConceptGrid.push_vectors`). The dose is ``s``, in multiples of that joint
  difference (one separation); with one concept ``d_b`` is the authors' single-concept
  difference. This is done with forward hooks on the named ``cond_proj`` modules: one
  forward pass, no copy of it.
- *classifier-free guidance* is a sampler option (see :func:`conceptspace.model.diffusion.sample`).

Hooks take a per-row direction and scale, so all doses (and the naive baseline, scale 0)
share one batched sampler call with the same noise (:func:`design`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from conceptspace.data.concepts import ConceptGrid

METHODS = ("naive", "overprompt", "linear", "guidance")


def design(grid: ConceptGrid, cfg) -> list[dict]:
    """The batched items of one checkpoint: held-out class x (method, dose), each with its
    prompt and its linear-intervention scale (0: none; the direction is the class's own,
    :func:`push_directions`). ``cfg`` is the intervene section."""
    plan = []
    for k in grid.held_out_classes:
        mean = grid.class_mean_cond(k)
        if "naive" in cfg.methods:
            plan.append(_item(k, "naive", 0.0, mean, 0.0))
        if "overprompt" in cfg.methods:
            for d in cfg.overprompt.doses:
                h = grid.overprompt_cond(k, cfg.overprompt.concepts, d)
                plan.append(_item(k, "overprompt", d, h, 0.0))
        if "linear" in cfg.methods:
            for d in cfg.linear.doses:
                plan.append(_item(k, "linear", d, mean, d))
    _refuse_duplicates(grid, plan)
    return plan


def _item(k: int, method: str, dose: float, cond: np.ndarray, scale: float) -> dict:
    return {"class": k, "method": method, "setting": float(dose), "cond": cond, "scale": scale}


def batch(plan: list[dict], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cond, classes, scales)`` of ``plan``'s items, each repeated ``n`` times: the rows of
    one sampler call, with each row's held-out class (for its direction) and its scale."""
    return (
        np.repeat(np.stack([it["cond"] for it in plan]), n, axis=0),
        np.repeat([it["class"] for it in plan], n),
        np.repeat([it["scale"] for it in plan], n).astype(np.float32),
    )


def _refuse_duplicates(grid: ConceptGrid, plan: list[dict]) -> None:
    """Two items of one class with the same prompt and the same hook would measure one thing
    twice (and count it twice in the best-dose rule): refuse them by name."""
    seen: dict[tuple, dict] = {}
    for item in plan:
        key = (item["class"], item["cond"].tobytes(), item["scale"])
        if key in seen:
            a = seen[key]
            raise ValueError(
                f"{grid.class_name(item['class'])}: {a['method']} at {a['setting']:g} and "
                f"{item['method']} at {item['setting']:g} give the same prompt and hook"
            )
        seen[key] = item


def summarize(grid: ConceptGrid, plan: list[dict], probs: np.ndarray, n: int, **identity):
    """Rows of the intervene table, one per item of ``plan``: mean P(value 1) and per-image
    accuracy per concept, joint accuracy (the product) and count. ``probs`` holds ``n``
    classified images per item, in plan order."""
    rows = []
    for i, item in enumerate(plan):
        p = probs[i * n : (i + 1) * n]
        bits = grid.class_bits(item["class"])
        row = {
            **identity,
            "method": item["method"],
            "setting": item["setting"],
            "class": grid.class_name(item["class"]),
        }
        joint = 1.0
        for j, concept in enumerate(grid.concepts):
            acc = float(((p[:, j] > 0.5).astype(int) == bits[j]).mean())
            row[f"p_{concept}"] = float(p[:, j].mean())
            row[f"acc_{concept}"] = acc
            joint *= acc
        row["joint_acc"] = joint
        row["count"] = n
        rows.append(row)
    return rows


def readout_vectors(grid: ConceptGrid, concept: str):
    """Single-concept vectors and the pairs to compare, e.g. blue|red, blue|small, blue|large."""
    names = {}
    for c in grid.concepts:
        for v, name in enumerate(grid.value_names(c)):
            names[name] = grid.mean_cond({c: v})
    held = grid.class_bits(grid.held_out_classes[0])[grid.concepts.index(concept)]
    main = grid.value_names(concept)[held]
    pairs = [(main, grid.value_names(concept)[1 - held])]
    pairs += [(main, name) for c in grid.concepts if c != concept for name in grid.value_names(c)]
    return names, pairs


def projections(net: nn.Module) -> dict[str, nn.Module]:
    """The named concept projections (one per ResNet block), in forward order."""
    modules = dict(net.named_modules())
    return {name: modules[name] for name in net.cond_projection_names()}


@torch.no_grad()
def embed(net: nn.Module, v: np.ndarray | Tensor) -> dict[str, Tensor]:
    """Each block's concept embedding e_b(v) of conditioning vectors ``v`` [B, 11] -> [B, C_b],
    on the network's device."""
    v = torch.as_tensor(np.asarray(v, dtype=np.float32), device=next(net.parameters()).device)
    v = v.reshape(-1, net.cfg.cond_dim)
    return {name: m(v) for name, m in projections(net).items()}


@torch.no_grad()
def push_directions(
    net: nn.Module, grid: ConceptGrid, classes: Sequence[int], concepts: Sequence[str]
) -> dict[str, Tensor]:
    """The linear intervention's direction ``d_b`` of each class at every block,
    ``[len(classes), C_b]``, the concepts weighed equally (docs/method.md §6.1).

    Per class and block: each concept's embedded difference, scaled to unit length, summed
    over ``concepts``, and the sum scaled to the length of the joint difference. A push along
    several concepts at once through the nonlinear projection is dominated by one of them
    (at a strong colour separation it drives colour to 1 and size to 0); weighed equally,
    each concept moves. With one concept the direction is that concept's embedded difference.
    """
    out: dict[str, list[Tensor]] = {name: [] for name in net.cond_projection_names()}
    for k in classes:
        joint = _difference(net, *grid.push_vectors(k, concepts))
        units = [_difference(net, *grid.push_vectors(k, [c])) for c in concepts]
        for name in out:
            total = torch.stack([F.normalize(u[name], dim=0) for u in units]).sum(0)
            out[name].append(joint[name].norm() * F.normalize(total, dim=0))
    return {name: torch.stack(rows) for name, rows in out.items()}


def row_directions(
    net: nn.Module, grid: ConceptGrid, row_class: Sequence[int], concepts: Sequence[str]
) -> dict[str, Tensor]:
    """:func:`push_directions` of each batch row's class (``row_class``, as :func:`batch`
    gives it): per block ``[B, C_b]``, the ``directions`` of :func:`linear_intervention`."""
    classes = sorted({int(k) for k in row_class})
    push = push_directions(net, grid, classes, concepts)
    device = next(net.parameters()).device
    index = torch.as_tensor([classes.index(int(k)) for k in row_class], device=device)
    return {name: d[index] for name, d in push.items()}


def _difference(net: nn.Module, v_to: np.ndarray, v_from: np.ndarray) -> dict[str, Tensor]:
    """Each block's ``e_b(v_to) - e_b(v_from)`` of two conditioning vectors, ``[C_b]``."""
    to, frm = embed(net, v_to), embed(net, v_from)
    return {name: (to[name] - frm[name])[0] for name in to}


@contextmanager
def linear_intervention(
    net: nn.Module, directions: dict[str, Tensor], row_scales: Tensor
) -> Iterator[None]:
    """Add ``row_scales[i] * directions[b][i]`` to every block ``b``'s concept embedding.

    :param directions: per block (the names of :func:`projections`), one direction per batch
        row ``[B, C_b]``, e.g. :func:`push_directions` indexed by each row's class.
    :param row_scales: ``[B]`` one scale per batch row of the forward passes inside the block
        (0 leaves a row untouched, bit for bit).
    """
    handles = []
    for name, module in projections(net).items():
        delta = directions[name]
        if delta.shape[0] != row_scales.shape[0]:
            raise ValueError(
                f"{name}: {delta.shape[0]} directions for {row_scales.shape[0]} row scales"
            )

        def hook(_m, _inp, out, delta=delta):
            if out.shape[0] != row_scales.shape[0]:
                raise RuntimeError(
                    f"intervention expects batch {row_scales.shape[0]}, got {out.shape[0]}"
                )
            return out + row_scales[:, None] * delta

        handles.append(module.register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def embedding_similarity(
    net: nn.Module, vectors: dict[str, np.ndarray], pairs: list[tuple[str, str]]
) -> list[dict]:
    """Cosine similarity of two single-concept embeddings at each block (mechanistic readout).

    :param vectors: named conditioning vectors, e.g. ``{"blue": ..., "red": ...}``.
    :param pairs: names to compare, e.g. ``[("blue", "red"), ("blue", "small")]``.
    """
    emb = {k: embed(net, v) for k, v in vectors.items()}
    rows = []
    for i, block in enumerate(net.cond_projection_names()):
        for a, b in pairs:
            cos = torch.nn.functional.cosine_similarity(emb[a][block], emb[b][block]).item()
            rows.append({"block": block, "block_index": i, "pair": f"{a}|{b}", "cosine": cos})
    return rows
