"""Continuous-time variational diffusion model (Kingma et al. 2021): loss and sampler.

Plain functions that take the denoiser ``net`` (z_t, τ, h) → ε̂ and the noise ``schedule``
t → γ(t) as arguments (docs/method.md §3.1). Everything random is drawn from an explicit
``torch.Generator`` when one is given, so training and sampling are reproducible and resumable.
A generator lives on the device of the tensors it produces (the sampler also takes a CPU
generator for CUDA tensors).

Conventions: images x are [B, C, H, W] in [0, 1] (not rescaled); concept vectors h are [B, K];
all losses are per sample, in bits per dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from conceptspace.model.schedule import alpha_sigma

NULL_TOKEN = -1.0  # classifier-free guidance "no concept" value, in every entry of h
DATA_NOISE = 1e-3  # std of the reconstruction likelihood N(x; z_0/α_0, data_noise²)


def bpd_factor(image_shape: tuple[int, ...]) -> float:
    """1 / (D·ln 2) with D = C·H·W: converts a per-image sum of nats into bits per dimension."""
    return 1.0 / (math.prod(image_shape) * math.log(2.0))


def antithetic_times(
    batch: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Tensor:
    """Stratified times t_i = t_0 + i/B with t_0 ~ U(0, 1/B): [B] in [0, 1), evenly spaced.

    One uniform draw per batch; it lowers the variance of the Monte-Carlo loss over t.
    """
    t0 = torch.rand((), generator=generator, device=device) / batch
    return t0 + torch.arange(batch, device=device, dtype=torch.float32) / batch


def network_time(schedule: nn.Module, gamma: Tensor) -> Tensor:
    """τ = (γ − γ_min)/(γ_max − γ_min) with the schedule's *initial* bounds (pitfall 3)."""
    return (gamma - schedule.gamma_min) / (schedule.gamma_max - schedule.gamma_min)


def _gamma_and_slope(schedule: nn.Module, t: Tensor) -> tuple[Tensor, Tensor]:
    """γ(t) and dγ/dt. t: [B] → ([B], [B]).

    Uses the schedule's analytic ``dgamma_dt`` when it has one (|w| for the linear schedule),
    else autograd, for any differentiable schedule. Either way the derivative carries gradient,
    so the diffusion term also trains the schedule's slope; under ``torch.no_grad``
    (evaluation) both come back detached.
    """
    if hasattr(schedule, "dgamma_dt"):
        return schedule(t), schedule.dgamma_dt(t)
    grad_on = torch.is_grad_enabled()
    with torch.enable_grad():
        t = t.detach().requires_grad_(True)
        gamma = schedule(t)
        (slope,) = torch.autograd.grad(gamma.sum(), t, create_graph=grad_on)
    if not grad_on:
        gamma, slope = gamma.detach(), slope.detach()
    return gamma, slope


def vdm_noise(x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The random inputs of :func:`vdm_loss` for data x [B, C, H, W], drawn in its order:
    stratified times t [B] (one uniform draw), then ε and ε_0 (each shaped like x)."""
    t = antithetic_times(x.shape[0], generator, x.device)
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    eps_0 = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return t, eps, eps_0


def vdm_loss(
    net: nn.Module,
    schedule: nn.Module,
    x: Tensor,
    cond: Tensor,
    *,
    generator: torch.Generator | None = None,
    data_noise: float = DATA_NOISE,
) -> dict[str, Tensor]:
    """Per-sample variational bound of the continuous-time VDM, in bits/dim.

    x: [B, C, H, W] data, cond: [B, K] concept vectors. Returns a dict of [B] tensors:
    "diffusion", "latent", "reconstruction" and their sum "total"; the batch loss is
    ``total.mean()``. Random draws, in order: the antithetic time offset, ε for z_t, ε_0 for z_0
    (:func:`vdm_noise`).
    """
    t, eps, eps_0 = vdm_noise(x, generator)
    return vdm_loss_from_noise(net, schedule, x, cond, t, eps, eps_0, data_noise=data_noise)


def vdm_loss_from_noise(
    net: nn.Module,
    schedule: nn.Module,
    x: Tensor,
    cond: Tensor,
    t: Tensor,
    eps: Tensor,
    eps_0: Tensor,
    *,
    data_noise: float = DATA_NOISE,
) -> dict[str, Tensor]:
    """:func:`vdm_loss` with its random inputs given (times t [B], ε and ε_0 like x): a pure
    function of its arguments, so it can be vectorised over an ensemble of models
    (:mod:`conceptspace.model.ensemble`)."""
    bpd = bpd_factor(tuple(x.shape[1:]))
    dims = tuple(range(1, x.ndim))

    # Diffusion term: ½·‖ε̂ − ε‖²·dγ/dt at a stratified random time.
    gamma_t, slope = _gamma_and_slope(schedule, t)
    alpha_t, sigma_t = alpha_sigma(gamma_t[:, None, None, None])
    z_t = alpha_t * x + sigma_t * eps
    eps_hat = net(z_t, network_time(schedule, gamma_t), cond)
    diffusion = bpd * 0.5 * (eps_hat - eps).square().sum(dims) * slope

    # Latent term: KL(q(z_1|x) ‖ N(0, I)), summed over pixels.
    gamma_1 = schedule(torch.ones((), device=x.device))
    var_1 = torch.sigmoid(gamma_1)
    mean_sq = torch.sigmoid(-gamma_1) * x.square()
    log_var_1 = nn.functional.logsigmoid(gamma_1)  # stable log σ_1²
    latent = bpd * 0.5 * (var_1 + mean_sq - log_var_1 - 1.0).sum(dims)

    # Reconstruction term: −log N(x; z_0/α_0, data_noise²) with z_0 ~ q(z_0|x).
    gamma_0 = schedule(torch.zeros((), device=x.device))
    alpha_0, sigma_0 = alpha_sigma(gamma_0)
    x_hat = (alpha_0 * x + sigma_0 * eps_0) / alpha_0
    nll = (
        0.5 * ((x - x_hat) / data_noise).square()
        + math.log(data_noise)
        + 0.5 * math.log(2 * math.pi)
    )
    reconstruction = bpd * nll.sum(dims)

    total = diffusion + latent + reconstruction
    return {
        "diffusion": diffusion,
        "latent": latent,
        "reconstruction": reconstruction,
        "total": total,
    }


def uncond_dropout(cond: Tensor, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Classifier-free guidance training: replace each row of cond [B, K] by the null token
    (−1 everywhere) with probability p. Returns a new tensor; the input is never modified.

    p = 0 draws no random numbers, so a run without CFG equals one with p_uncond = 0.
    """
    if p <= 0.0:
        return cond.clone()
    drop = torch.rand(cond.shape[0], generator=generator, device=cond.device) < p
    return torch.where(drop[:, None], torch.full_like(cond, NULL_TOKEN), cond)


SAMPLERS = ("ancestral", "ddim")


@torch.no_grad()
def sample(
    net: nn.Module,
    schedule: nn.Module,
    cond: Tensor,
    *,
    steps: int = 50,
    generator: torch.Generator | None = None,
    guidance: float | None = None,
    image_shape: tuple[int, int, int],
    noise_repeat: int = 1,
    sampler: str = "ancestral",
) -> Tensor:
    """Sampling from t = 1 to t = 0 in ``steps`` uniform steps. cond: [B, K].

    ``sampler``: ``"ancestral"`` (the authors' sampler) or ``"ddim"``, the deterministic
    DDIM update (η = 0, Song et al. 2021) in the VDM's parametrisation,
    z_s = α_s x̂ + σ_s ε̂ with x̂ = (z_t − σ_t ε̂) / α_t: the same network evaluations per step,
    no noise after z_1, so 10–25 steps do the work of 50 ancestral ones (docs/method.md §4.3;
    validated by benchmarks/bench_sampler.py).

    Returns the raw z_0: [B, *image_shape], with no final denoising, rescaling or clipping, so it
    keeps residual noise of order σ_0, as in the authors' sampler (docs/method.md §3.1).
    Random draws:
    z_1 first, then (ancestral only) one standard normal per step (noise is added at every
    step, the last too).

    guidance w: ε̂ = ε̂_uncond + w·(ε̂_cond − ε̂_uncond), with the unconditional prediction taken
    from the null token (−1 everywhere) in the same batched forward pass (size 2B). ``None`` or
    w = 1 is plain conditional sampling; w = 1 takes the plain path on purpose, because the
    batched 2B forward and the arithmetic of the blend are not bit-identical to a B forward.

    noise_repeat k: the batch is k equal blocks of B/k rows (e.g. k intervention settings of the
    same prompts) that share their noise: z_1 and every step's noise are drawn for B/k rows and
    tiled k times, so differences between blocks come from the conditioning alone.

    A generator on another device than ``cond`` (e.g. a CPU generator while sampling on CUDA)
    draws the same numbers it would draw for CPU sampling, so the two devices differ only by
    floating-point rounding.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler {sampler!r}: expected one of {SAMPLERS}")
    if noise_repeat < 1 or cond.shape[0] % noise_repeat:
        raise ValueError(f"batch {cond.shape[0]} is not a multiple of noise_repeat={noise_repeat}")
    use_cfg = guidance is not None and guidance != 1.0
    device = cond.device
    b = cond.shape[0]
    was_training = net.training
    net.eval()
    try:
        if use_cfg:
            cond_in = torch.cat([cond, torch.full_like(cond, NULL_TOKEN)])
        else:
            cond_in = cond
        ts = torch.linspace(1.0, 0.0, steps + 1, device=device)
        gammas = schedule(ts)  # [steps + 1]
        noise_shape = (b // noise_repeat, *image_shape)
        n_draws = steps + 1 if sampler == "ancestral" else 1
        draws = iter(())
        if generator is not None and generator.device != device:
            # A generator on another device (a CPU generator for CUDA sampling, so that both
            # devices see the same noise): make all draws there, in the same order, and move
            # them in one copy (a copy per step would stall the device every step).
            pre = [
                torch.randn(noise_shape, generator=generator, device=generator.device)
                for _ in range(n_draws)
            ]
            draws = iter(torch.stack(pre).to(device).unbind(0))

        def draw() -> Tensor:
            noise = next(draws, None)
            if noise is None:
                noise = torch.randn(noise_shape, generator=generator, device=device)
            return noise.repeat(noise_repeat, 1, 1, 1) if noise_repeat > 1 else noise

        z = draw()
        for i in range(steps):
            gamma_t, gamma_s = gammas[i], gammas[i + 1]
            alpha_t, sigma_t = alpha_sigma(gamma_t)
            alpha_s, sigma_s = alpha_sigma(gamma_s)
            c = -torch.expm1(gamma_s - gamma_t)

            tau = network_time(schedule, gamma_t).expand(cond_in.shape[0])
            if use_cfg:
                eps_c, eps_u = net(torch.cat([z, z]), tau, cond_in).chunk(2)
                eps_hat = eps_u + guidance * (eps_c - eps_u)
            else:
                eps_hat = net(z, tau, cond_in)

            if sampler == "ddim":
                x_hat = (z - sigma_t * eps_hat) / alpha_t
                z = alpha_s * x_hat + sigma_s * eps_hat
                continue
            mean = (alpha_s / alpha_t) * (z - c * sigma_t * eps_hat)
            z = mean + sigma_s * c.sqrt() * draw()
        return z
    finally:
        net.train(was_training)
