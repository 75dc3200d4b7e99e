"""The exponential moving average of a run's weights: the model its checkpoints are evaluated
with (docs/method.md §3.3).

At the default study's learning rate the raw iterate wanders from one checkpoint to the next:
the held-out prompt's samples flip between two training classes from checkpoint to checkpoint,
so a learning time read from them says which side of a fluctuation a checkpoint landed on.
The average over the last ~1 / (1 − decay) steps follows the same trajectory without the
fluctuation. Training itself never reads the average: the raw weights, the optimizer and every
random draw are what they are without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

WARMUP = 10  # decay after t steps: min(decay, (1 + t) / (WARMUP + t))


def decay_at(decay: float, step: int) -> float:
    """The average's decay at optimizer step ``step`` (1-based): ``decay``, less during the
    first steps, so that early checkpoints are not an average with the initialisation."""
    return min(decay, (1.0 + step) / (WARMUP + step))


class WeightAverage:
    """A running average of ``tensors`` (a model's parameters, or an ensemble's stacked ones),
    updated after each optimizer step."""

    def __init__(self, tensors: Sequence[Tensor], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the average's decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.tensors = [t.detach().clone() for t in tensors]

    @torch.no_grad()
    def update(self, live: Sequence[Tensor], step: int) -> None:
        """Move the average towards ``live`` after optimizer step ``step``."""
        weight = 1.0 - decay_at(self.decay, step)
        for avg, t in zip(self.tensors, live, strict=True):
            avg.lerp_(t.detach(), weight)

    @torch.no_grad()
    def load(self, tensors: Sequence[Tensor]) -> None:
        """Restore the average (resuming from a checkpoint)."""
        for avg, t in zip(self.tensors, tensors, strict=True):
            avg.copy_(t.to(avg.device))


def averaged_state(modules: Mapping[str, nn.Module], tensors: Sequence[Tensor]) -> dict:
    """``{name: state_dict}`` of ``modules`` with their parameters, in order, replaced by
    ``tensors`` (buffers as they are): the checkpoint's ``ema`` entry."""
    out, i = {}, 0
    for name, module in modules.items():
        sd = {k: v.detach().clone() for k, v in module.state_dict().items()}
        for key, _ in module.named_parameters():
            sd[key] = tensors[i].detach().clone()
            i += 1
        out[name] = sd
    if i != len(tensors):
        raise ValueError(f"{len(tensors)} averaged tensors for {i} parameters")
    return out


def parameters_of(state: Mapping[str, Mapping[str, Tensor]], modules: Mapping[str, nn.Module]):
    """The parameter tensors of a checkpoint's ``ema`` entry, in ``modules``' order."""
    return [state[name][key] for name, m in modules.items() for key, _ in m.named_parameters()]
