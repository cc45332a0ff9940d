"""Brute-force oracle of the M-step's weighted sums (the tests compare the native ops and the reference with
it): dense over every (sample, component) pair, in float64, the pairs with ``r_ik ≤ eps`` left out."""
from __future__ import annotations

import torch


def mstep_moments(x: torch.Tensor, resp: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.where(resp > eps, resp, torch.zeros_like(resp)).double()   # [G, N, K]
    return r.sum(1), torch.einsum("gnk,gnd->gkd", r, x.double())


def mstep_scatter(x: torch.Tensor, resp: torch.Tensor, means: torch.Tensor, eps: float) -> torch.Tensor:
    r = torch.where(resp > eps, resp, torch.zeros_like(resp)).double()
    z = x.double().unsqueeze(2) - means.double().unsqueeze(1)             # [G, N, K, D]
    return torch.einsum("gnk,gnka,gnkb->gkab", r, z, z)
