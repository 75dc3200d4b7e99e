"""Eliciting a held-out class beyond naive prompting (docs/method.md §6).

- *overprompting*: the class-mean prompt pushed along one concept's axis,
  ``h + k * (mean(value) - mean(other value))`` on that concept's entries, clipped to [0, 1];
- *linear latent intervention*: at every ResNet block, the output of its concept projection
  ``e_b(h)`` is replaced by ``e_b(h) + s * (e_b(v_value) - e_b(v_other))`` with single-concept
  vectors ``v`` (only that concept's entries set, at the class means). This is done with
  forward hooks on the named ``cond_proj`` modules: one forward pass, no copy of it.
- *classifier-free guidance* is a sampler option (see :func:`conceptspace.model.diffusion.sample`).

Hooks take a per-row scale, so several settings (and the naive baseline, scale 0) can share
one batched sampler call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from conceptspace.data.concepts import ConceptGrid


def overprompt(grid: ConceptGrid, cls: int, concept: str, k: float) -> np.ndarray:
    """Class-mean prompt of ``cls`` pushed ``k`` separations further along ``concept``: [11]."""
    return grid.overprompt_cond(cls, concept, k)


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

    :param row_scales: ``[B]`` one scale per batch row of the forward passes inside the block
        (0 leaves a row untouched, bit for bit).
    """
    directions = {
        name: (e_to - e_from)[0]
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
            return out + row_scales[:, None] * delta[None, :]

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
