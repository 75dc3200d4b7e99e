import json

import pytest
import torch

from conceptspace.model.unet import DEFAULT, PAPER, UNet, UNetConfig
from conceptspace.params import ParamsError, load_params, validate

TINY = UNetConfig(image_size=8, channels=(8, 8), groups=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def perturbed(cfg: UNetConfig = TINY, seed: int = 0) -> UNet:
    """A net whose zero-initialised layers have been made non-zero, in eval mode.

    At init conv_out and every block's second conv are zero, so ε̂ = z and nothing downstream
    of the conditioning is visible; a few random weights stand in for some training.
    """
    torch.manual_seed(seed)
    net = UNet(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.normal_(0.0, 0.1)
    return net


def inputs(cfg: UNetConfig = TINY, batch: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    return z, torch.rand(batch, generator=g), torch.rand(batch, cfg.cond_dim, generator=g)


def test_output_shape_and_identity_at_init():
    net = UNet(DEFAULT).eval()
    z, tau, cond = inputs(DEFAULT, batch=3)
    out = net(z, tau, cond)
    assert out.shape == (3, 3, 16, 16)
    torch.testing.assert_close(out, z)  # zero-init conv_out + global residual


def test_param_counts():
    n_paper = sum(p.numel() for p in UNet(PAPER).parameters())
    assert 10.5e6 <= n_paper <= 11.3e6
    n_default = sum(p.numel() for p in UNet(DEFAULT).parameters())
    assert 0.25e6 <= n_default <= 0.35e6


def test_conditioning_changes_output():
    net = perturbed()
    z, tau, cond = inputs()
    out = net(z, tau, cond)
    assert not torch.allclose(out, net(z, tau, cond + 0.5))
    assert not torch.allclose(out, net(z, tau.flip(0), cond))


def test_cond_projection_hooks():
    net = perturbed()
    names = net.cond_projection_names()
    modules = dict(net.named_modules())
    n_blocks = 2 * len(TINY.channels) * TINY.blocks_per_level + 2
    assert len(names) == n_blocks
    assert all(name.endswith("cond_proj") and name in modules for name in names)

    z, tau, cond = inputs()
    base = net(z, tau, cond)
    handle = modules[names[0]].register_forward_hook(lambda m, args, out: out)
    torch.testing.assert_close(net(z, tau, cond), base)
    handle.remove()
    handle = modules[names[-1]].register_forward_hook(lambda m, args, out: out + 1.0)
    changed = net(z, tau, cond)
    handle.remove()
    assert not torch.allclose(changed, base)
    torch.testing.assert_close(net(z, tau, cond), base)


def test_cond_projection_names_forward_order():
    net = UNet(PAPER)
    names = net.cond_projection_names()
    assert len(names) == 14  # 6 down, 2 middle, 6 up, as in the paper's network
    called = []
    for name in names:
        dict(net.named_modules())[name].register_forward_hook(
            lambda m, a, o, name=name: called.append(name)
        )
    net.eval()(*inputs(UNetConfig(image_size=8, channels=(64, 128, 256), groups=8), batch=1))
    assert called == names


def test_config_round_trip():
    for cfg in (DEFAULT, PAPER, TINY):
        d = cfg.to_dict()
        assert isinstance(d["channels"], list)
        assert UNetConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert UNetConfig(channels=[16, 32, 32]) == DEFAULT


def test_config_validation():
    with pytest.raises(ValueError, match="groups"):
        UNetConfig(channels=(6, 12), groups=4)
    with pytest.raises(ValueError, match="unknown"):
        UNetConfig.from_dict({"colour": 1})


def test_config_is_checked_by_the_net_section(params_doc):
    """UNetConfig states no check of its own: the train.net section's ranges and relations,
    and its image-size rule, give the messages params.yaml gets (conceptspace/sections.py)."""
    with pytest.raises(ParamsError, match=r"train\.net\.heads = 3: must divide channels\[-1\]"):
        UNetConfig(attention=True, heads=3)
    with pytest.raises(ParamsError, match=r"train\.net\.dropout = 1\.0: Input should be less"):
        UNetConfig(dropout=1.0)
    rule = r"must be divisible by 2\*\*2 for train\.net\.channels = \[16, 32, 32\]"
    with pytest.raises(ParamsError, match=rf"image_size = 10: {rule}"):
        UNetConfig(image_size=10, channels=(16, 32, 32))
    params_doc["train"]["net"]["channels"] = [16, 32, 32]
    params_doc["synthesize"]["image_size"] = 10
    with pytest.raises(ParamsError, match=rf"synthesize\.image_size = 10: {rule}"):
        validate(params_doc)


def test_config_of_the_net_section(root):
    net = load_params(root / "params.yaml").train.net
    cfg = UNetConfig.from_section(net, image_size=8, cond_dim=4)
    assert (cfg.image_size, cfg.cond_dim, cfg.in_channels) == (8, 4, 3)
    assert {k: v for k, v in cfg.to_dict().items() if k in type(net).model_fields} == (
        net.model_dump()
    )


def test_init_scale_multiplies_parameters():
    torch.manual_seed(0)
    ref = UNet(TINY)
    torch.manual_seed(0)
    scaled = UNet(UNetConfig(image_size=8, channels=(8, 8), groups=4, init_scale=0.1))
    for (name, p), q in zip(ref.named_parameters(), scaled.parameters(), strict=True):
        torch.testing.assert_close(q, 0.1 * p, msg=name)


def test_dropout_is_bit_identical_to_torch_dropout():
    """Same global-RNG draws, same mask and scaling, same gradient as nn.Dropout in training."""
    from conceptspace.model.unet import Dropout

    fast = Dropout(0.1).train()
    ref = torch.nn.Dropout(0.1).train()
    x = torch.randn(4, 8, 16, 16, requires_grad=True)
    g_out = torch.randn_like(x)
    for seed in range(3):
        torch.manual_seed(seed)
        y_ref = ref(x)
        (gx_ref,) = torch.autograd.grad(y_ref, x, g_out)
        state_ref = torch.get_rng_state()
        torch.manual_seed(seed)
        y = fast(x)
        (gx,) = torch.autograd.grad(y, x, g_out)
        assert torch.equal(y, y_ref) and torch.equal(gx, gx_ref)
        assert torch.equal(torch.get_rng_state(), state_ref)  # the stream moves on identically
        dropped = (y == 0) & (x != 0)
        assert 0.03 < dropped.float().mean() < 0.2  # p = 0.1: the mask is not all ones
    torch.manual_seed(0)
    assert torch.equal(fast.eval()(x), x)  # eval: identity, no draws
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(0).get_state())


def test_dropout_under_vmap_keeps_torch_semantics():
    """torch.func transforms get nn.Dropout itself (randomness modes), so members differ."""
    from conceptspace.model.unet import Dropout

    drop = Dropout(0.5).train()
    x = torch.ones(3, 64)
    y = torch.func.vmap(drop, randomness="different")(x)
    assert not torch.equal(y[0], y[1])
    with pytest.raises(RuntimeError, match="randomness"):
        torch.func.vmap(drop)(x)
