"""Evaluation batched across checkpoints: a run's checkpoints sampled as one vmapped ensemble of
parameter sets (docs/scaling.md).

Probing and intervening evaluate every checkpoint of a run with the same prompts and the same
sampler noise (docs/method.md §4.2), one checkpoint at a time: a small batch that leaves a GPU
mostly idle. Here the checkpoints of a chunk share the network, so their parameters are stacked
along a new leading dimension (``torch.func.stack_module_state``) and the sampler runs once for
the whole chunk, vectorised over the stack (``torch.func.vmap`` of ``functional_call``): the
network *and* the learned noise schedule are each checkpoint's own.

The noise. The function given runs once per chunk under ``vmap(randomness="same")``: a random
draw inside it is made once and shared by every checkpoint of the chunk, and a generator it
seeds afresh gives every chunk the same numbers. :func:`generate_checkpoints` seeds a CPU
generator as :func:`conceptspace.measure.probing.generate` does, so each checkpoint sees the
noise a per-checkpoint ``generate`` call draws, and its images equal that call's up to
floating-point rounding (a vectorised convolution is a grouped one and rounds differently; the
test states the tolerance). Checkpoints are loaded ``chunk`` at a time, so memory is bounded.

Not wired into the probe and intervene stages yet: they evaluate checkpoint by checkpoint.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from conceptspace.model.checkpoints import load_model
from conceptspace.model.diffusion import sample

DEFAULT_CHUNK = 8


class _Model(nn.Module):
    """A checkpoint's network and noise schedule as one module, so that one parameter set
    (``net.*`` and ``schedule.*``) replaces both under ``functional_call``."""

    def __init__(self, net: nn.Module, schedule: nn.Module) -> None:
        super().__init__()
        self.net, self.schedule = net, schedule

    def forward(self, fn: Callable[[nn.Module, nn.Module], Tensor]) -> Tensor:
        return fn(self.net, self.schedule)


def load_models(paths: Sequence[Path | str], device: str | torch.device = "cpu") -> list[_Model]:
    """Each checkpoint's (network, schedule) on ``device`` in eval mode; all must share the
    network config (one run's checkpoints), or ``ValueError`` names the file that differs."""
    models, first = [], None
    for path in paths:
        net, schedule, _ = load_model(Path(path))
        if first is None:
            first = (path, net.cfg)
        elif net.cfg != first[1]:
            raise ValueError(
                f"{path}: network {net.cfg} differs from {first[0]}'s {first[1]}; checkpoints "
                "evaluated together must come from one run"
            )
        models.append(_Model(net, schedule).to(device).eval())
    return models


@torch.no_grad()
def map_models(fn: Callable[[nn.Module, nn.Module], Tensor], models: Sequence[_Model]) -> Tensor:
    """``fn(net, schedule)`` of every model at once, vectorised over their stacked parameters:
    ``[len(models), ...]``. The models must share the network config and device."""
    params, buffers = stack_module_state(list(models))
    template = copy.deepcopy(models[0]).to("meta")

    def one(p, b):
        return functional_call(template, (p, b), (fn,))

    return vmap(one, randomness="same")(params, buffers)


def map_checkpoints(
    fn: Callable[[nn.Module, nn.Module], Tensor],
    paths: Sequence[Path | str],
    *,
    chunk: int = DEFAULT_CHUNK,
    device: str | torch.device = "cpu",
) -> list[Tensor]:
    """``fn(net, schedule)`` for every checkpoint in ``paths``, ``chunk`` checkpoints per
    vectorised call (:func:`map_models`); returns one tensor per checkpoint, in order, on
    ``device``.

    ``fn`` must treat ``net`` and ``schedule`` as pure functions (no in-place change to them;
    forward hooks, e.g. :func:`conceptspace.measure.interventions.linear_intervention`, are
    fine) and return one tensor. Its random draws are shared by all checkpoints (see the module
    docstring).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    out: list[Tensor] = []
    for i in range(0, len(paths), chunk):
        out.extend(map_models(fn, load_models(paths[i : i + chunk], device)).unbind(0))
    return out


def sampler_fn(
    cond: np.ndarray,
    *,
    steps: int,
    seed: int,
    image_size: int,
    sample_fn: Callable[..., Tensor] = sample,
    device: str | torch.device = "cpu",
    **sample_kwargs,
) -> Callable[[nn.Module, nn.Module], Tensor]:
    """``fn(net, schedule)`` that samples as :func:`conceptspace.measure.probing.generate`
    does (a CPU generator seeded with ``seed``, made afresh at each call), as a tensor."""
    cond_t = torch.from_numpy(np.ascontiguousarray(cond, dtype=np.float32)).to(device)

    def fn(net: nn.Module, schedule: nn.Module) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return sample_fn(
            net,
            schedule,
            cond_t,
            steps=steps,
            generator=gen,
            image_shape=(3, image_size, image_size),
            **sample_kwargs,
        )

    return fn


def generate_checkpoints(
    paths: Sequence[Path | str],
    cond: np.ndarray,
    *,
    steps: int,
    seed: int,
    image_size: int,
    chunk: int = DEFAULT_CHUNK,
    device: str | torch.device = "cpu",
    sample_fn: Callable[..., Tensor] = sample,
    **sample_kwargs,
) -> np.ndarray:
    """:func:`conceptspace.measure.probing.generate` for every checkpoint in ``paths`` at once:
    ``[C, P, 3, S, S]`` float32 raw z_0, checkpoint ``c``'s images for ``cond`` ``[P, K]`` with
    the noise ``generate(..., seed=seed)`` draws. ``sample_fn`` is the sampler function that
    ``generate`` calls (:func:`conceptspace.model.diffusion.sample`); its keyword arguments
    (``sampler``, ``guidance``, ``noise_repeat``, ...) go in ``sample_kwargs``, as for
    ``generate``."""
    fn = sampler_fn(
        cond,
        steps=steps,
        seed=seed,
        image_size=image_size,
        sample_fn=sample_fn,
        device=device,
        **sample_kwargs,
    )
    images = map_checkpoints(fn, paths, chunk=chunk, device=device)
    return torch.stack(images).cpu().numpy()
