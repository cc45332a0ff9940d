"""Synthetic latent-unit tokens with known attribute levels (benchmarks, demo, tests).

Each unit ``u`` has a scalar factor with ``L_u`` levels; the scalar (plus a jitter that is a fraction of the
level gap) is pushed through a random ReLU MLP with a linear skip, as a feature extractor's per-unit MLP
would, and a little isotropic noise is added to the token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class UnitTokens:
    tokens: torch.Tensor   # [N, U, Dc] float32
    labels: torch.Tensor   # [N, U] int64, the true level of every token
    levels: torch.Tensor   # [U] int64, the number of levels of every unit


def spread_levels(num_units: int, low: int = 3, high: int = 15) -> list[int]:
    """``num_units`` level counts covering ``low..high`` evenly (in order)."""
    if num_units == 1:
        return [low]
    return [low + round(u * (high - low) / (num_units - 1)) for u in range(num_units)]


def make_unit_tokens(num_units: int = 20, n: int = 10_000, dim: int = 32, levels=None, *,
                     jitter: float = 0.05, noise: float = 0.01, hidden: int = 64,
                     seed: int = 0) -> UnitTokens:
    """Tokens ``[n, num_units, dim]`` of ``num_units`` units with ``levels[u]`` levels each (default: 3 to
    15 levels spread over the units, in a seeded random order)."""
    g = torch.Generator().manual_seed(seed)
    if levels is None:
        lv = torch.tensor(spread_levels(num_units))[torch.randperm(num_units, generator=g)]
    else:
        lv = torch.as_tensor(levels, dtype=torch.int64)
        if lv.shape != (num_units,) or bool((lv < 1).any()):
            raise ValueError(f"levels must hold {num_units} positive ints, got {levels}")
    labels = (torch.rand(n, num_units, generator=g) * lv).long().clamp_max(lv - 1)     # [n, U]
    gap = 2.0 / (lv - 1).clamp_min(1).float()
    s = labels.float() * gap - 1.0 + jitter * gap * torch.randn(n, num_units, generator=g)
    w1 = torch.randn(num_units, 1, hidden, generator=g) * 2.0
    b1 = (torch.rand(num_units, 1, hidden, generator=g) * 2 - 1) * w1.abs()   # kinks inside [-1, 1]
    w2 = torch.randn(num_units, hidden, dim, generator=g) / hidden ** 0.5
    skip = torch.randn(num_units, 1, dim, generator=g) / dim ** 0.5
    su = s.T.unsqueeze(-1)                                                     # [U, n, 1]
    tok = torch.relu(su @ w1 + b1) @ w2 + su * skip                           # [U, n, dim]
    tok = tok + noise * tok.std(dim=(1, 2), keepdim=True) * torch.randn(tok.shape, generator=g)
    return UnitTokens(tokens=tok.transpose(0, 1).contiguous(), labels=labels, levels=lv)
