"""Eliciting a held-out class beyond naive prompting (docs/method.md §6).

Each method is applied at several *doses*, in units that mean the same at every separation:

- *overprompting*: the class-mean prompt pushed along the axes of the chosen concepts,
  towards the class's own values; the dose is the fraction of the way from the class mean to
  the edge of each concept's range (:meth:`ConceptGrid.overprompt_cond`), so no two doses
  give one prompt;
- *linear latent intervention*: at every ResNet block, the output of its concept projection
  ``e_b(h)`` is replaced by ``e_b(h) + s * (e_b(v_class) - e_b(v_opposite))`` with vectors
  ``v`` holding only the chosen concepts' entries, at the class means of the class's own and
  of the opposite values (:meth:`ConceptGrid.push_vectors`); the dose is ``s``, in multiples
  of that embedded difference (one separation). This is done with forward hooks on the named
  ``cond_proj`` modules: one forward pass, no copy of it.
- *classifier-free guidance* is a sampler option (see :func:`conceptspace.model.diffusion.sample`).

Hooks take a per-row direction and scale, so all doses (and the naive baseline, scale 0)
share one batched sampler call with the same noise (:func:`design`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from conceptspace.data.concepts import ConceptGrid

METHODS = ("naive", "overprompt", "linear", "guidance")


def design(grid: ConceptGrid, cfg) -> list[dict]:
    """The batched items of one checkpoint: held-out class x (method, dose), each with its
    prompt, its linear-intervention direction ``(v_class, v_opposite)`` and scale (0: none).
    ``cfg`` is the intervene section."""
    plan = []
    for k in grid.held_out_classes:
        mean = grid.class_mean_cond(k)
        push = grid.push_vectors(k, cfg.linear.concepts)
        if "naive" in cfg.methods:
            plan.append(_item(k, "naive", 0.0, mean, push, 0.0))
        if "overprompt" in cfg.methods:
            for d in cfg.overprompt.doses:
                h = grid.overprompt_cond(k, cfg.overprompt.concepts, d)
                plan.append(_item(k, "overprompt", d, h, push, 0.0))
        if "linear" in cfg.methods:
            for d in cfg.linear.doses:
                plan.append(_item(k, "linear", d, mean, push, d))
    _refuse_duplicates(grid, plan)
    return plan


def _item(k: int, method: str, dose: float, cond: np.ndarray, push, scale: float) -> dict:
    return {
        "class": k,
        "method": method,
        "setting": float(dose),
        "cond": cond,
        "push": push,
        "scale": scale,
    }


def batch(plan: list[dict], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(cond, v_class, v_opposite, scales)`` of ``plan``'s items, each repeated ``n`` times:
    the rows of one sampler call."""

    def rows(values) -> np.ndarray:
        return np.repeat(np.stack(values), n, axis=0)

    return (
        rows([it["cond"] for it in plan]),
        rows([it["push"][0] for it in plan]),
        rows([it["push"][1] for it in plan]),
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


def single_concept_vectors(grid: ConceptGrid, concept: str) -> tuple[np.ndarray, np.ndarray]:
    """``(v_value1, v_value0)``: vectors with only ``concept`` set to each class mean."""
    return grid.mean_cond({concept: 1}), grid.mean_cond({concept: 0})


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


@contextmanager
def linear_intervention(
    net: nn.Module, v_to: np.ndarray, v_from: np.ndarray, row_scales: Tensor
) -> Iterator[None]:
    """Add ``row_scales[i] * (e_b(v_to) - e_b(v_from))`` to every block's concept embedding.

    :param v_to, v_from: one vector ``[cond_dim]`` for every row, or one per row ``[B, cond_dim]``.
    :param row_scales: ``[B]`` one scale per batch row of the forward passes inside the block
        (0 leaves a row untouched, bit for bit).
    """
    one = np.ndim(v_to) == 1
    directions = {
        name: (e_to - e_from)[0] if one else e_to - e_from
        for (name, e_to), e_from in zip(
            embed(net, v_to).items(), embed(net, v_from).values(), strict=True
        )
    }
    handles = []
    for name, module in projections(net).items():
        delta = directions[name]

        def hook(_m, _inp, out, delta=delta):
            if out.shape[0] != row_scales.shape[0]:
                raise RuntimeError(
                    f"intervention expects batch {row_scales.shape[0]}, got {out.shape[0]}"
                )
            return out + row_scales[:, None] * (delta[None, :] if delta.ndim == 1 else delta)

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
