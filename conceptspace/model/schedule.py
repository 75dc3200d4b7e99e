"""Learned linear log-SNR noise schedule of the variational diffusion model (docs/method.md §3.1).

The schedule maps diffusion time t ∈ [0, 1] to the log signal-to-noise ratio

    γ(t) = b + |w|·t,        α_t² = sigmoid(−γ_t),   σ_t² = sigmoid(γ_t),

so that z_t = α_t·x + σ_t·ε is variance preserving (α² + σ² = 1). The sign convention follows
Kingma et al. (2021): γ is the log of the *noise*-to-signal ratio, so it increases with t
(t = 0 is almost clean data, t = 1 almost pure noise). Both b and w are trained with the rest of
the model, and AdamW weight decay applies to them, as in the authors' code.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# The initial log-SNR range, as in the authors' code (docs/method.md §3.1).
GAMMA_MIN, GAMMA_MAX = -5.0, 10.0


class LogSNRSchedule(nn.Module):
    """γ(t) = b + |w|·t with b initialised to ``gamma_min`` and w to ``gamma_max − gamma_min``.

    ``gamma_min`` and ``gamma_max`` stay plain floats: the network's time input is normalised
    with these *initial* constants, not with the learned endpoints (docs/method.md §3.1).
    """

    def __init__(self, gamma_min: float = GAMMA_MIN, gamma_max: float = GAMMA_MAX) -> None:
        super().__init__()
        if not gamma_max > gamma_min:
            raise ValueError(f"gamma_max ({gamma_max}) must exceed gamma_min ({gamma_min})")
        self.gamma_min = float(gamma_min)
        self.gamma_max = float(gamma_max)
        self.b = nn.Parameter(torch.tensor(self.gamma_min))
        self.w = nn.Parameter(torch.tensor(self.gamma_max - self.gamma_min))

    def forward(self, t: Tensor) -> Tensor:
        """t: [B] in [0, 1] → γ(t): [B]. |w| keeps the schedule monotone whatever w learns."""
        return self.b + self.w.abs() * t

    def dgamma_dt(self, t: Tensor) -> Tensor:
        """dγ/dt = |w| for each time. t: [B] → [B]; differentiable with respect to w."""
        return self.w.abs().expand_as(t)

    def extra_repr(self) -> str:
        return f"gamma_min={self.gamma_min}, gamma_max={self.gamma_max}"


def alpha_sigma(gamma: Tensor) -> tuple[Tensor, Tensor]:
    """Signal and noise scales for ``gamma`` (any shape): α = √sigmoid(−γ), σ = √sigmoid(γ)."""
    return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()
