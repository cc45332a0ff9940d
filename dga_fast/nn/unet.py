"""Denoising U-Net conditioned on latent-unit tokens by cross-attention, with Skip Dropout on the
decoder's skip connections (EncDiff-style; DESIGN §6)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .skip_dropout import DecoderInput


def norm_groups(channels: int, max_groups: int = 32) -> int:
    """The largest group count ``<= max_groups`` that divides ``channels``."""
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:  # [B] -> [B, dim]
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float().unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


class ResBlock(nn.Module):
    """GroupNorm–SiLU–conv, the timestep embedding (scale-shift of the second GroupNorm when
    ``scale_shift_norm``, else added before it), GroupNorm–SiLU–dropout–conv, residual.
    A decoder block (``skip_channels > 0``) takes ``(h, skip)`` and starts with the fused
    skip-dropout/concat/GroupNorm/SiLU op. ``updown="down"`` / ``"up"`` resamples by 2 inside the block
    (average pool / nearest, after the first norm and on the residual path), as the official U-Net's
    ``resblock_updown``."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, skip_channels: int = 0, skip_p: float = 0.0,
                 fused: bool = True, dropout: float = 0.0, scale_shift_norm: bool = True,
                 updown: str | None = None):
        super().__init__()
        if updown not in (None, "up", "down"):
            raise ValueError(f"updown must be None, 'up' or 'down', got {updown!r}")
        if updown and skip_channels:
            raise ValueError("a resampling ResBlock takes no skip connection")
        total = in_ch + skip_channels
        if skip_channels:
            self.inp = DecoderInput(in_ch, skip_channels, norm_groups(total), skip_p, fused)
        else:
            self.norm1 = nn.GroupNorm(norm_groups(total), total, eps=1e-5)
        self.skip_channels, self.scale_shift_norm = skip_channels, scale_shift_norm
        self.resample = {"up": nn.Upsample(scale_factor=2, mode="nearest"), "down": nn.AvgPool2d(2),
                         None: nn.Identity()}[updown]
        self.conv1 = nn.Conv2d(total, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch if scale_shift_norm else out_ch)
        self.norm2 = nn.GroupNorm(norm_groups(out_ch), out_ch, eps=1e-5)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.shortcut = nn.Conv2d(total, out_ch, 1) if total != out_ch else nn.Identity()

    def forward(self, h: torch.Tensor, emb: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_channels:
            x, y = self.inp(h, skip)
        else:
            x, y = h, F.silu(self.norm1(h))
        x, y = self.resample(x), self.resample(y)
        y = self.conv1(y)
        e = self.emb(F.silu(emb)).unsqueeze(-1).unsqueeze(-1)
        if self.scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            y = self.norm2(y) * (1 + scale) + shift
        else:
            y = self.norm2(y + e)
        y = self.conv2(self.drop(F.silu(y)))
        return self.shortcut(x) + y


class AttentionBlock(nn.Module):
    """Self-attention over positions, then cross-attention from positions to the condition tokens.

    ``qk_norm``: queries and keys are LayerNorm-ed per head before their dot product (Dehghani et al. 2023), so the
    softmax's logits are bounded by ``√d_head`` times the norms' gains instead of growing with the weights: the
    cure for attention-logit growth, a known cause of loss divergence at large learning rates."""

    def __init__(self, channels: int, cond_dim: int, num_heads: int, qk_norm: bool = False):
        super().__init__()
        heads = max(1, min(num_heads, channels))
        while channels % heads:
            heads -= 1
        self.heads = heads
        self.norm = nn.GroupNorm(norm_groups(channels), channels, eps=1e-5)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm_x = nn.LayerNorm(channels)
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(cond_dim, 2 * channels)
        self.proj_x = nn.Linear(channels, channels)
        d = channels // heads
        # self-attention's and cross-attention's query and key norms (identities without qk_norm)
        self.qk_norms = nn.ModuleList([nn.LayerNorm(d) if qk_norm else nn.Identity() for _ in range(4)])
        for lin in (self.proj, self.proj_x):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.record = False
        self.last_cross_attention = None   # [B, heads, HW, U] when ``record``

    def _split(self, t: torch.Tensor) -> torch.Tensor:   # [B, L, C] -> [B, heads, L, C/heads]
        B, L, C = t.shape
        return t.view(B, L, self.heads, C // self.heads).transpose(1, 2)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:  # [B,C,H,W], [B,U,Dc]
        B, C, H, W = h.shape
        hs = h.flatten(2).transpose(1, 2)                                       # [B, HW, C]
        x = self.norm(h).flatten(2).transpose(1, 2)
        q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))
        q, k = self.qk_norms[0](q), self.qk_norms[1](k)
        a = F.scaled_dot_product_attention(q, k, v)
        hs = hs + self.proj(a.transpose(1, 2).reshape(B, H * W, C))
        q = self._split(self.q(self.norm_x(hs)))
        k, v = (self._split(t) for t in self.kv(cond).chunk(2, dim=-1))
        q, k = self.qk_norms[2](q), self.qk_norms[3](k)
        if self.record:
            w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
            self.last_cross_attention = w.detach()
            a = w @ v
        else:
            a = F.scaled_dot_product_attention(q, k, v)
        hs = hs + self.proj_x(a.transpose(1, 2).reshape(B, H * W, C))
        return hs.transpose(1, 2).reshape(B, C, H, W)


class UNet(nn.Module):
    """ε-prediction U-Net. ``attention_resolutions`` and ``skip_dropout_resolutions`` are downsample
    factors (1 = full resolution). Decoder ResBlocks take ``cat(h, skip)``; skips at the
    ``skip_dropout_resolutions`` are dropped channel-wise with rate ``skip_dropout`` in training.
    ``dropout``, ``scale_shift_norm`` and ``resblock_updown`` are the official U-Net's options (see ``ResBlock``;
    without ``resblock_updown`` the resolution changes by a stride-2 conv / nearest upsampling + conv);
    ``qk_norm`` normalises every attention block's queries and keys (``AttentionBlock``)."""

    def __init__(self, image_size: int = 64, in_channels: int = 3, base_channels: int = 64,
                 channel_mult=(1, 2, 4, 4), num_res_blocks: int = 2, attention_resolutions=(1, 2, 4),
                 num_heads: int = 8, cond_dim: int = 32, skip_dropout: float = 0.2,
                 skip_dropout_resolutions=(1, 2), fused: bool = True, dropout: float = 0.0,
                 scale_shift_norm: bool = True, resblock_updown: bool = False, qk_norm: bool = False):
        super().__init__()
        emb_dim = base_channels * 4
        attn = lambda c: AttentionBlock(c, cond_dim, num_heads, qk_norm)   # noqa: E731
        res = lambda i, o, **kw: ResBlock(i, o, emb_dim, fused=fused, dropout=dropout,  # noqa: E731
                                          scale_shift_norm=scale_shift_norm, **kw)
        self.base_channels = base_channels
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        attn_ds, sd_ds = set(attention_resolutions), set(skip_dropout_resolutions)
        self.down = nn.ModuleList()
        skip_chs, ch, ds = [(base_channels, 1)], base_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                out = base_channels * mult
                blocks = nn.ModuleList([res(ch, out)])
                if ds in attn_ds:
                    blocks.append(attn(out))
                self.down.append(blocks)
                ch = out
                skip_chs.append((ch, ds))
            if level != len(channel_mult) - 1:
                self.down.append(nn.ModuleList([res(ch, ch, updown="down") if resblock_updown else
                                                nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                ds *= 2
                skip_chs.append((ch, ds))
        self.mid = nn.ModuleList([res(ch, ch), attn(ch), res(ch, ch)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                sc, sds = skip_chs.pop()
                out = base_channels * mult
                blocks = nn.ModuleList([res(ch, out, skip_channels=sc, skip_p=skip_dropout if sds in sd_ds else 0.0)])
                if ds in attn_ds:
                    blocks.append(attn(out))
                ch = out
                if level and i == num_res_blocks:
                    if resblock_updown:
                        blocks.append(res(ch, ch, updown="up"))
                    else:
                        blocks.append(nn.Upsample(scale_factor=2, mode="nearest"))
                        blocks.append(nn.Conv2d(ch, ch, 3, padding=1))
                    ds //= 2
                self.up.append(blocks)
        self.out = nn.Sequential(nn.GroupNorm(norm_groups(ch), ch, eps=1e-5), nn.SiLU(),
                                 nn.Conv2d(ch, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def attention_blocks(self):
        return [m for m in self.modules() if isinstance(m, AttentionBlock)]

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_channels))
        h = self.inp(x)
        skips = [h]
        for blocks in self.down:
            for m in blocks:
                if isinstance(m, ResBlock):
                    h = m(h, emb)
                elif isinstance(m, AttentionBlock):
                    h = m(h, cond)
                else:
                    h = m(h)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb), cond), emb)
        for blocks in self.up:
            for m in blocks:
                if isinstance(m, ResBlock):
                    h = m(h, emb, skips.pop()) if m.skip_channels else m(h, emb)
                elif isinstance(m, AttentionBlock):
                    h = m(h, cond)
                else:
                    h = m(h)
        return self.out(h)
