"""Evaluation batched across checkpoints (conceptspace/measure/batched.py) equals evaluating
checkpoint by checkpoint: the same images, probe readings and intervened images, to rounding.

Tolerance: images (values up to about 3) within 1e-4 absolute. The vectorised convolutions are
grouped ones and round differently from a lone network's; measured on these networks, the
largest difference is under 1e-6 after 6 and after 50 sampler steps, while another seed's noise
moves images by about 2. No checkpoint's images equal another's (each used its own parameters)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptspace.data.concepts import preset
from conceptspace.measure import batched, interventions, probing
from conceptspace.model import diffusion
from conceptspace.model.checkpoints import checkpoint_path, load_model
from conceptspace.model.training import train
from conceptspace.model.unet import UNetConfig
from tests.squares import squares, tiny_config

NET = UNetConfig(image_size=8, channels=(8, 8), groups=4, attention=True, heads=2, time_dim=16)
CFG = tiny_config(steps=30, p_uncond=0.0, ema=0.0, log_every=10)
CKPTS = [10, 20, 30]
ATOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("run")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    train(
        squares(7),
        NET,
        CFG,
        ckpt_steps=CKPTS,
        ckpt_dir=out / "ckpt",
        log_dir=out / "log",
        seed=1,
        progress=False,
    )
    torch.set_num_threads(n)
    return [checkpoint_path(out / "ckpt", s) for s in CKPTS]


def _cond(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).random((n, 11), dtype=np.float32)


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_batched_sampling_equals_generate_per_checkpoint(ckpts, chunk):
    """chunk 2 over three checkpoints: a chunk of two and one of one, each reseeded."""
    cond = _cond()
    kw = dict(steps=6, seed=3, image_size=8)
    got = batched.generate_checkpoints(ckpts, cond, chunk=chunk, **kw)
    assert got.shape == (len(ckpts), len(cond), 3, 8, 8) and got.dtype == np.float32
    for c, path in enumerate(ckpts):
        net, schedule, _ = load_model(path)
        want = probing.generate(net, schedule, cond, **kw)
        np.testing.assert_allclose(got[c], want, rtol=0, atol=ATOL)
    assert not np.allclose(got[0], got[-1], atol=1e-3)  # each checkpoint's own parameters


# The samplers diffusion.sample offers, each named as generate passes it (none: the one sampler).
SAMPLERS = [{"sampler": s} for s in getattr(diffusion, "SAMPLERS", ())] or [{}]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_batched_samplers_guidance_and_shared_noise_blocks(ckpts, sampler):
    """Sampler options pass through: the sampler, CFG guidance and noise_repeat blocks."""
    cond = np.repeat(_cond(2), 2, axis=0)
    kw = dict(steps=4, seed=5, image_size=8, guidance=2.0, noise_repeat=2, **sampler)
    got = batched.generate_checkpoints(ckpts, cond, chunk=2, **kw)
    for c, path in enumerate(ckpts):
        net, schedule, _ = load_model(path)
        np.testing.assert_allclose(got[c], probing.generate(net, schedule, cond, **kw), atol=ATOL)


def test_batched_linear_intervention_equals_per_checkpoint(ckpts):
    """An intervention's hooks inside the vectorised function use each checkpoint's own
    concept embeddings: the same images as the per-checkpoint intervention."""
    grid = preset("2x2", color=0.4, size=0.4)
    cond = np.tile(_cond(2), (2, 1))
    scales = torch.tensor([0.0, 0.0, 2.0, 2.0])
    kw = dict(steps=4, image_shape=(3, 8, 8), noise_repeat=2)

    def fn(net, schedule):
        push = interventions.row_directions(net, grid, [3] * len(cond), ["color", "size"])
        with interventions.linear_intervention(net, push, scales):
            gen = torch.Generator().manual_seed(9)
            return probing.sample(net, schedule, torch.from_numpy(cond), generator=gen, **kw)

    got = batched.map_checkpoints(fn, ckpts, chunk=2)
    for path, g in zip(ckpts, got, strict=True):
        net, schedule, _ = load_model(path)
        torch.testing.assert_close(g, fn(net, schedule), rtol=0, atol=ATOL)


def test_checkpoints_of_other_networks_are_refused(ckpts, tmp_path):
    other = UNetConfig(**{**NET.to_dict(), "channels": (8, 16)})
    train(
        squares(7),
        other,
        replace(CFG, steps=2),
        ckpt_steps=[2],
        ckpt_dir=tmp_path / "ckpt",
        log_dir=tmp_path / "log",
        seed=1,
        progress=False,
    )
    bad = checkpoint_path(tmp_path / "ckpt", 2)
    with pytest.raises(ValueError, match="must come from one run"):
        batched.generate_checkpoints([ckpts[0], bad], _cond(), steps=2, seed=0, image_size=8)
    with pytest.raises(ValueError, match="chunk"):
        batched.map_checkpoints(lambda n, s: s.b, ckpts, chunk=0)
