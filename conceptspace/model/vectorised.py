"""The pieces of the ensemble's vectorised training step (:mod:`.ensemble`).

``MemberLoss`` is the batch loss of one member as a pure function of its random inputs, for
``torch.func.vmap`` over the members; ``MaskDropout`` replaces each ``nn.Dropout`` inside it by a
multiplication with a mask drawn beforehand from the member's own generator; ``dropout_sites``
lists the network's dropouts in the order a forward pass calls them, so that the masks are drawn
in the order a lone run draws them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from conceptspace.model.diffusion import vdm_loss_from_noise
from conceptspace.model.unet import UNet


class MaskDropout(nn.Module):
    """Stands in for an ``nn.Dropout`` in the vectorised forward pass: multiplies by ``mask``, a
    buffer that each call replaces (``functional_call``) by the member's own mask."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.empty(0), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x if self.p == 0 else x * self.mask  # F.dropout draws nothing for p = 0


class MemberLoss(nn.Module):
    """The batch loss of one member given its random inputs (a pure function for ``vmap``)."""

    def __init__(self, net: nn.Module, schedule: nn.Module, data_noise: float) -> None:
        super().__init__()
        self.net, self.schedule, self.data_noise = net, schedule, data_noise

    def forward(self, x: Tensor, cond: Tensor, t: Tensor, eps: Tensor, eps_0: Tensor) -> Tensor:
        terms = vdm_loss_from_noise(
            self.net, self.schedule, x, cond, t, eps, eps_0, data_noise=self.data_noise
        )
        return terms["total"].mean()


def dropout_sites(net: UNet) -> list[tuple[str, float, tuple[int, ...]]]:
    """``(module name, p, per-image input shape)`` of every dropout of ``net``, in the order a
    forward pass calls them (found by running one, in eval mode, on one blank image)."""
    calls: list[tuple[str, float, tuple[int, ...]]] = []
    handles = []
    for name, m in net.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            if not isinstance(m, nn.Dropout):  # unet.Dropout draws the same masks
                raise NotImplementedError(f"{name}: ensembles support nn.Dropout only, not {m}")

            def record(mod, args, name=name):
                calls.append((name, float(mod.p), tuple(args[0].shape[1:])))

            handles.append(m.register_forward_pre_hook(record))
    cfg, was_training = net.cfg, net.training
    dev = next(net.parameters()).device
    try:
        net.eval()
        with torch.no_grad():
            net(
                torch.zeros(1, cfg.in_channels, cfg.image_size, cfg.image_size, device=dev),
                torch.zeros(1, device=dev),
                torch.zeros(1, cfg.cond_dim, device=dev),
            )
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    names = [c[0] for c in calls]
    if len(set(names)) != len(names):
        raise NotImplementedError("a dropout module is called more than once per forward pass")
    return calls
