import math
import statistics

import pytest
import torch

from conceptspace.model.diffusion import (
    antithetic_times,
    bpd_factor,
    sample,
    uncond_dropout,
    vdm_loss,
)
from conceptspace.model.schedule import LogSNRSchedule
from conceptspace.model.unet import UNet, UNetConfig
from tests.test_unet import TINY, perturbed

SHAPE = (3, 8, 8)


pytestmark = pytest.mark.usefixtures("one_thread")


def batch(n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=g), torch.rand(n, 11, generator=g)


def test_bpd_factor():
    assert bpd_factor((3, 32, 32)) == pytest.approx(1 / (3072 * math.log(2)))


def test_loss_terms_finite_and_sum():
    x, cond = batch()
    terms = vdm_loss(UNet(TINY), LogSNRSchedule(), x, cond, generator=torch.Generator())
    assert set(terms) == {"diffusion", "latent", "reconstruction", "total"}
    for v in terms.values():
        assert v.shape == (16,) and torch.isfinite(v).all()
    torch.testing.assert_close(
        terms["total"], terms["diffusion"] + terms["latent"] + terms["reconstruction"]
    )


def test_latent_term_known_value():
    # x = 0: KL(N(0, σ1²) ‖ N(0, 1)) = ½(σ1² − log σ1² − 1) per pixel, σ1² = sigmoid(10).
    var = torch.sigmoid(torch.tensor(10.0, dtype=torch.float64)).item()
    expected = 0.5 * (var - math.log(var) - 1) / math.log(2)
    terms = vdm_loss(UNet(TINY), LogSNRSchedule(), torch.zeros(2, *SHAPE), torch.zeros(2, 11))
    torch.testing.assert_close(terms["latent"], torch.full((2,), expected), rtol=1e-3, atol=1e-9)


def test_loss_is_reproducible_and_trains_the_schedule():
    x, cond = batch()
    net, schedule = UNet(TINY).eval(), LogSNRSchedule()
    a = vdm_loss(net, schedule, x, cond, generator=torch.Generator().manual_seed(3))
    b = vdm_loss(net, schedule, x, cond, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a["total"], b["total"], rtol=0, atol=0)
    a["diffusion"].mean().backward()  # dγ/dt = |w| must carry a gradient into w
    assert schedule.w.grad is not None and schedule.w.grad.abs() > 0
    with torch.no_grad():  # evaluation path: no graph, same numbers
        c = vdm_loss(net, schedule, x, cond, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(c["total"], a["total"].detach())


class ForwardOnly(torch.nn.Module):
    """A schedule without ``dgamma_dt``: the loss must fall back to autograd for dγ/dt."""

    def __init__(self, inner: LogSNRSchedule) -> None:
        super().__init__()
        self.inner = inner
        self.gamma_min, self.gamma_max = inner.gamma_min, inner.gamma_max

    def forward(self, t):
        return self.inner(t)


def test_autograd_slope_fallback_matches_analytic():
    x, cond = batch()
    net, schedule = perturbed(), LogSNRSchedule()
    results = []
    for s in (schedule, ForwardOnly(schedule)):
        schedule.zero_grad()
        terms = vdm_loss(net, s, x, cond, generator=torch.Generator().manual_seed(5))
        terms["total"].mean().backward()
        results.append((terms["total"].detach(), schedule.w.grad.clone(), schedule.b.grad.clone()))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


def test_antithetic_times():
    t = antithetic_times(64, torch.Generator().manual_seed(0), "cpu")
    assert t.shape == (64,)
    assert (t >= 0).all() and (t < 1).all() and t[0] < 1 / 64
    torch.testing.assert_close(t.diff(), torch.full((63,), 1 / 64))


def test_uncond_dropout():
    cond = torch.rand(20000, 11)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    same = uncond_dropout(cond, 0.0, g)
    assert same is not cond and torch.equal(same, cond)
    assert torch.equal(g.get_state(), state)  # p = 0 consumes no random numbers
    assert (uncond_dropout(cond, 1.0, g) == -1).all()
    before = cond.clone()
    out = uncond_dropout(cond, 0.3, g)
    assert torch.equal(cond, before)  # input untouched
    dropped = (out == -1).all(dim=1)
    assert abs(dropped.float().mean().item() - 0.3) < 0.02
    assert torch.equal(out[~dropped], cond[~dropped])


def test_sampler_shape_determinism_and_mode():
    net, schedule = perturbed(), LogSNRSchedule()
    net.train()
    cond = torch.rand(4, 11)

    def run(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return sample(net, schedule, cond, steps=10, generator=g, image_shape=SHAPE, **kw)

    a = run(0)
    assert a.shape == (4, *SHAPE) and torch.isfinite(a).all()
    assert net.training  # mode restored
    torch.testing.assert_close(run(0), a, rtol=0, atol=0)
    assert not torch.allclose(run(1), a)
    net.eval()
    run(0)
    assert not net.training


def test_sampler_noise_repeat():
    net, schedule = perturbed(), LogSNRSchedule()
    cond = torch.rand(2, 11).repeat(3, 1)  # three blocks of the same two prompts
    g = torch.Generator().manual_seed(0)
    out = sample(net, schedule, cond, steps=4, generator=g, image_shape=SHAPE, noise_repeat=3)
    # Same noise per block; the convolutions may round differently by batch position.
    torch.testing.assert_close(out[0:2], out[2:4], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[0:2], out[4:6], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="noise_repeat"):
        sample(net, schedule, cond, steps=1, image_shape=SHAPE, noise_repeat=4)


def test_guidance():
    net, schedule = perturbed(), LogSNRSchedule()
    cond = torch.rand(4, 11)

    def run(c, **kw):
        g = torch.Generator().manual_seed(0)
        return sample(net, schedule, c, steps=5, generator=g, image_shape=SHAPE, **kw)

    plain = run(cond)
    torch.testing.assert_close(run(cond, guidance=1.0), plain, rtol=0, atol=0)
    # The batched 2B path: w = 0 is the unconditional (null-token) sampler.
    torch.testing.assert_close(run(cond, guidance=0.0), run(torch.full_like(cond, -1.0)))
    torch.testing.assert_close(run(cond, guidance=1.0 + 1e-6), plain, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(run(cond, guidance=3.0), plain)


def test_loss_falls_on_tiny_dataset():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    colour = 0.2 + 0.6 * torch.rand(64, 3, generator=g)
    x = torch.full((64, *SHAPE), 0.9)
    x[:, :, 2:6, 2:6] = colour[:, :, None, None]  # a coloured square on a light background
    cond = torch.zeros(64, 11)
    cond[:, 4:7] = colour
    net = UNet(UNetConfig(image_size=8, channels=(8, 8), groups=4, dropout=0.0))
    schedule = LogSNRSchedule()
    opt = torch.optim.AdamW([*net.parameters(), *schedule.parameters()], lr=1e-2)
    total, diffusion = [], []
    for _ in range(200):
        terms = vdm_loss(net, schedule, x, cond, generator=g)
        loss = terms["total"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        total.append(loss.item())
        diffusion.append(terms["diffusion"].mean().item())
    first, last = statistics.mean(total[:20]), statistics.mean(total[-50:])
    assert last < 0.7 * first
    assert statistics.mean(diffusion[-50:]) < 0.7 * statistics.mean(diffusion[:20])
