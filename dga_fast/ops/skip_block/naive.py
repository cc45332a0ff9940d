"""Brute-force oracle of the skip block (the tests compare the reference and the Triton kernel with it): float64,
channel by channel and group by group, GroupNorm from its definition (biased variance, eps 1e-5), SiLU as
``v / (1 + e^−v)``."""
from __future__ import annotations

import math

import torch

GN_EPS = 1e-5


def skip_dropout_concat_norm_silu(h, skip, keep_mask, p, gn_weight, gn_bias, groups):
    B, Ch = h.shape[:2]
    Cs = skip.shape[1]
    C = Ch + Cs
    scale = 1.0 / (1.0 - p) if p > 0 else 1.0
    x = torch.empty((B, C) + tuple(h.shape[2:]), dtype=torch.float64)
    for b in range(B):
        for ch in range(C):
            if ch < Ch:
                x[b, ch] = h[b, ch].double()
            else:
                x[b, ch] = skip[b, ch - Ch].double() * float(keep_mask[b, ch - Ch]) * scale
    y = torch.empty_like(x)
    per = C // groups
    for b in range(B):
        for g in range(groups):
            block = x[b, g * per:(g + 1) * per]
            mean = float(block.mean())
            var = float(((block - mean) ** 2).mean())
            for ch in range(g * per, (g + 1) * per):
                v = (x[b, ch] - mean) / math.sqrt(var + GN_EPS) * float(gn_weight[ch]) + float(gn_bias[ch])
                y[b, ch] = v / (1 + torch.exp(-v))
    return x, y
