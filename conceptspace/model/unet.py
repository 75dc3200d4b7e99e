"""Conditional U-Net denoiser ("CUNet", docs/method.md §3.2).

The network maps a noisy image z_t, a normalised noise level τ ∈ [0, 1] and a concept vector h
to a noise prediction ε̂. It knows nothing about noise schedules: the caller turns diffusion time
into τ. The concept vector enters every ResNet block through the block's own small MLP,
``cond_proj``; those modules are the named points where interventions hook in
(see :meth:`UNet.cond_projection_names`).

Layout for channels (c0, c1, c2) and two blocks per level (the paper's network):

    conv_in 3→c0
    down 0: Res(c0→c0) Res(c0→c0)          keep S0, Downsample (2×2 stride-2 conv)
    down 1: Res(c0→c1) Res(c1→c1)          keep S1, Downsample
    down 2: Res(c1→c2) Res(c2→c2)
    mid:    Res(c2→c2) [Attention(c2)] Res(c2→c2)
    up 2:   Res(c2→c2) Res(c2→c2)          Upsample c2→c1 (2×2 stride-2 transposed conv), cat S1
    up 1:   Res(2c1→c1) Res(c1→c1)         Upsample c1→c0, cat S0
    up 0:   Res(2c0→c0) Res(c0→c0)
    GroupNorm → GELU → conv_out c0→3 (zero-init), plus the global residual z_t.

Because conv_out starts at zero, ε̂ = z_t at initialisation.

Parameter count: PAPER has 10.64 M parameters. The authors' code reports 10.91 M because it also
builds a downsampling conv after the last level and an upsampling conv after up level 0 that
its forward pass never uses (0.28 M); leaving them out changes nothing the network computes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conceptspace.sections import Net, ParamsError, check_values

GN_EPS = 1e-6  # the authors' GroupNorm epsilon


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`; stored in every checkpoint (``to_dict``).

    The fields other than ``image_size``, ``in_channels`` and ``cond_dim`` are the settings of
    the ``train.net`` params section (:class:`conceptspace.sections.Net`), which states their
    ranges and relations once; a config is checked by it however it is built. The defaults
    are :data:`DEFAULT`, the library's small network; the pipeline states every setting
    (:meth:`from_section`)."""

    image_size: int = 16
    in_channels: int = 3
    channels: tuple[int, ...] = (16, 32, 32)
    blocks_per_level: int = 1
    attention: bool = False
    heads: int = 4
    groups: int = 4
    dropout: float = 0.1
    cond_dim: int = 11
    time_dim: int = 64
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON/YAML) but store a tuple so the config stays hashable.
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        net = {k: getattr(self, k) for k in Net.model_fields}
        check_values(Net, net, "train.net")  # a ParamsError, a ValueError
        problem = Net.model_construct(**net).image_size_problem(self.image_size)
        if problem:
            raise ParamsError(f"image_size = {self.image_size}: {problem}")

    @classmethod
    def from_section(cls, net: Net, image_size: int, cond_dim: int) -> UNetConfig:
        """The U-Net of a ``train.net`` params section; the image size and the conditioning
        width come from the data (11 for shapes, 2 per attribute for folder data)."""
        return cls(image_size=image_size, cond_dim=cond_dim, **net.model_dump())

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples): safe for JSON and ``torch.load(weights_only)``."""
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown UNetConfig keys: {sorted(unknown)}")
        return cls(**d)


# The authors' network at 32 px (~10.9 M parameters) and the small CPU default (~0.3 M).
PAPER = UNetConfig(
    image_size=32, channels=(64, 128, 256), blocks_per_level=2, attention=True, groups=8
)
DEFAULT = UNetConfig()


def timestep_embedding(tau: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of τ·1000. tau: [B] → [B, dim] (dim/2 sines then dim/2 cosines).

    Frequencies are log-spaced from 1 down to 1/10000, as in the authors' code.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=tau.device, dtype=torch.float32) / (half - 1)
    )
    args = (tau.float() * 1000.0)[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=1)


_BITS53 = (1 << 53) - 1  # the mantissa bits of a double drawn by torch's CPU Bernoulli kernel


def _bits_reproduce_bernoulli() -> bool:
    """Whether ``random_()`` on int64 reproduces ``bernoulli_(p)`` of the CPU generator exactly.

    torch's default CPU Bernoulli kernel draws one 64-bit word per element (two Mersenne-twister
    outputs) and keeps the element when the double ``(word & (2**53 - 1)) * 2**-53`` is below p.
    ``random_()`` on int64 draws the same word (modulo 2**63, which keeps those 53 bits), about
    twice as fast. Builds that route Bernoulli elsewhere (e.g. MKL on some CPUs) fail this check,
    and :class:`Dropout` then keeps torch's own kernel.
    """
    for p, n in ((0.9, 4099), (0.5, 1000)):
        g = torch.Generator().manual_seed(20240)
        ref = torch.empty(n).bernoulli_(p, generator=g).bool()
        ref_state = g.get_state()
        g.manual_seed(20240)
        words = torch.empty(n, dtype=torch.int64).random_(generator=g)
        ours = words.bitwise_and_(_BITS53).lt_(math.ceil(p * 2.0**53)).bool()
        if not (torch.equal(ref, ours) and torch.equal(ref_state, g.get_state())):
            return False
    return True


_EXACT_BITS: bool | None = None  # _bits_reproduce_bernoulli(), evaluated on first use


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask is drawn faster and bit-identically on CPU (same draws from the
    global torch generator, same mask, same scaling ``x * (mask / (1 - p))``, same gradient).

    Falls back to ``nn.Dropout`` wherever the shortcut is not verified: other devices and dtypes,
    torch.func transforms (their randomness modes), tracing, and builds whose Bernoulli kernel
    differs (see :func:`_bits_reproduce_bernoulli`). No parameters or buffers: state dicts are
    unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        global _EXACT_BITS
        p = self.p
        if (
            not self.training
            or not 0.0 < p < 1.0
            or self.inplace
            or x.device.type != "cpu"
            or x.dtype not in (torch.float32, torch.float64)
            or torch._C._functorch.is_functorch_wrapped_tensor(x)
            or torch.compiler.is_compiling()
        ):
            return super().forward(x)
        if _EXACT_BITS is None:
            _EXACT_BITS = _bits_reproduce_bernoulli()
        if not _EXACT_BITS:
            return super().forward(x)
        keep = 1.0 - p  # the probability ATen's dropout passes to bernoulli_
        words = torch.empty(x.shape, dtype=torch.int64).random_()
        mask = words.bitwise_and_(_BITS53).lt_(math.ceil(keep * 2.0**53))
        # ATen: noise = bernoulli(keep) as floats, then noise.div_(keep); 0/keep = 0, 1/keep below.
        scale = torch.ones((), dtype=x.dtype).div_(keep)
        return x * (scale * mask)


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    """Linear → GELU → Linear → GELU: the per-block projection of time and concept inputs."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out), nn.GELU())


class ResBlock(nn.Module):
    """GN→GELU→conv3×3 → + (time + concept projections) → GN→GELU→Dropout→conv3×3 (zero-init).

    x: [B, C_in, H, W], temb: [B, T], cond: [B, K] → [B, C_out, H, W].
    """

    def __init__(
        self, c_in: int, c_out: int, temb_dim: int, cond_dim: int, groups: int, dropout: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, eps=GN_EPS)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_proj = _mlp(temb_dim, c_out)
        # Named point for interventions: hooks replace this module's [B, C_out] output.
        self.cond_proj = _mlp(cond_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out, eps=GN_EPS)
        self.dropout = Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor, cond: Tensor) -> Tensor:
        h = self.conv1(F.gelu(self.norm1(x)))
        h = h + (self.time_proj(temb) + self.cond_proj(cond))[:, :, None, None]
        h = self.conv2(self.dropout(F.gelu(self.norm2(h))))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H·W positions with a residual. x: [B, C, H, W]."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels, eps=GN_EPS)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)  # q, k, v 1×1 projections in one conv
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each [B, heads, HW, C/heads]
        y = F.scaled_dot_product_attention(q, k, v)
        y = y.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.out(y)


class UNet(nn.Module):
    """ε-prediction U-Net. forward(z [B,C,H,W], tau [B], cond [B,cond_dim]) → ε̂ [B,C,H,W]."""

    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch, n = cfg.channels, cfg.blocks_per_level
        temb_dim = 4 * cfg.time_dim

        def block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, temb_dim, cfg.cond_dim, cfg.groups, cfg.dropout)

        self.time_mlp = _mlp(cfg.time_dim, temb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = ch[0]
        for i, c in enumerate(ch):
            self.down.append(nn.ModuleList([block(c_prev if j == 0 else c, c) for j in range(n)]))
            c_prev = c
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, c, 2, stride=2))

        # Two middle blocks whether or not attention sits between them (as in the authors' code).
        self.mid = nn.ModuleList([block(ch[-1], ch[-1]), block(ch[-1], ch[-1])])
        self.mid_attn = Attention(ch[-1], cfg.heads, cfg.groups) if cfg.attention else nn.Identity()

        # Up levels run from the deepest (up.0) to the shallowest; level i sees its own width c_i
        # (deepest) or 2·c_i after concatenating the skip S_i kept on the way down.
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(ch))):
            c_in = ch[i] if i == len(ch) - 1 else 2 * ch[i]
            self.up.append(
                nn.ModuleList([block(c_in if j == 0 else ch[i], ch[i]) for j in range(n)])
            )
            if i > 0:
                self.upsample.append(nn.ConvTranspose2d(ch[i], ch[i - 1], 2, stride=2))

        self.norm_out = nn.GroupNorm(cfg.groups, ch[0], eps=GN_EPS)
        self.conv_out = nn.Conv2d(ch[0], cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

        if cfg.init_scale != 1.0:
            with torch.no_grad():
                for p in self.parameters():
                    p.mul_(cfg.init_scale)

    def forward(self, z: Tensor, tau: Tensor, cond: Tensor) -> Tensor:
        temb = self.time_mlp(timestep_embedding(tau, self.cfg.time_dim))  # [B, 4·time_dim]
        cond = cond.to(z.dtype)

        h = self.conv_in(z)
        skips = []
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, temb, cond)
            if i < len(self.downsample):
                skips.append(h)
                h = self.downsample[i](h)

        h = self.mid[1](self.mid_attn(self.mid[0](h, temb, cond)), temb, cond)

        for i, blocks in enumerate(self.up):
            for blk in blocks:
                h = blk(h, temb, cond)
            if i < len(self.upsample):
                h = torch.cat([self.upsample[i](h), skips.pop()], dim=1)

        return self.conv_out(F.gelu(self.norm_out(h))) + z

    def cond_projection_names(self) -> list[str]:
        """Qualified names (as in ``named_modules()``) of every block's ``cond_proj``, in forward
        order: down levels, middle, up levels. Hook these to intervene on concept embeddings."""
        blocks = [b for level in self.down for b in level] + list(self.mid)
        blocks += [b for level in self.up for b in level]
        names = {m: name for name, m in self.named_modules()}
        return [names[b.cond_proj] for b in blocks]
