"""Brute-force oracle of the anchor shift (the tests compare the reference and the Triton kernel with it): token by
token in float64, the most responsible component from the brute-force E-step (``hddc_estep/naive.py``: full
covariances, a linear solve), its mean taken back to token coordinates, then ``c + λ (μ − c)``."""
from __future__ import annotations

import math

import torch

from ...mixture.state import MixtureState
from ..hddc_estep.naive import brute_estep

EPS = 1e-6   # as reference.EPS: |c|₁ + ε in the adaptive λ's denominator


def anchor_shift(c: torch.Tensor, state: MixtureState, shift: torch.Tensor, scale: torch.Tensor,
                 align, align_max: float) -> torch.Tensor:   # [B, U, Dc] float64
    B, U, D = c.shape
    c = c.double()
    x = (c.transpose(0, 1) - shift.double().unsqueeze(1)) / scale.double()[:, None, None]   # [U, B, D]
    k = brute_estep(x, state)[0].argmax(-1)                                                 # [U, B]
    out = torch.empty_like(c)
    for u in range(U):
        for b in range(B):
            mu = state.means[u, k[u, b]].double() * float(scale[u]) + shift[u].double()
            tok = c[b, u]
            if align == "adaptive":
                lam = align_max * math.exp(-float((tok - mu).abs().sum()) / (float(tok.abs().sum()) + EPS))
            else:
                lam = float(align)
            out[b, u] = tok + lam * (mu - tok)
    return out
