"""Choice of the intrinsic dimension d_k of each component (Cattell's scree test or BIC)."""
from __future__ import annotations

import torch

from .state import LOG_2PI


def cattell_dims(eigvals: torch.Tensor,  # [..., D] sorted in decreasing order
                 threshold: float, d_max: int) -> torch.Tensor:
    """Cattell's scree test as in HDclassif: gaps ``λ_j − λ_{j+1}`` normalised by the largest gap;
    ``d`` = the largest ``j`` whose normalised gap is at least ``threshold``, clamped to ``[1, d_max]``
    (``d = 0`` when ``d_max = 0``, i.e. one-dimensional data)."""
    D = eigvals.shape[-1]
    if d_max <= 0 or D < 2:
        return torch.zeros(eigvals.shape[:-1], dtype=torch.int64, device=eigvals.device)
    gaps = (eigvals[..., :-1] - eigvals[..., 1:]).clamp_min(0.0)          # [..., D-1]
    top = gaps.amax(-1, keepdim=True)
    rel = gaps / torch.where(top > 0, top, torch.ones_like(top))
    j = torch.arange(1, D, device=eigvals.device)
    d = torch.where(rel >= threshold, j, torch.zeros_like(j)).amax(-1)
    return d.clamp(1, d_max)


def bic_dims(eigvals: torch.Tensor,  # [G, K, D] sorted in decreasing order, floored
             n_k: torch.Tensor,       # [G, K]
             n_total: torch.Tensor,   # [G]
             d_max: int, floor: torch.Tensor) -> torch.Tensor:
    """Per-component BIC choice of ``d`` in ``1..d_max`` for the ``AkjBk`` component model: the
    component's ML log-likelihood ``-n_k/2 (Σ_j log a_j + (D-d) log b + D log 2π + D)`` penalised by its
    ``d (D − (d+1)/2) + d + 1`` subspace parameters, ``log N`` each."""
    D = eigvals.shape[-1]
    if d_max <= 0 or D < 2:
        return torch.zeros(eigvals.shape[:-1], dtype=torch.int64, device=eigvals.device)
    d = torch.arange(1, d_max + 1, device=eigvals.device, dtype=eigvals.dtype)     # [d]
    log_l = torch.log(eigvals)
    csum_log = torch.cumsum(log_l, -1)[..., :d_max]                                # Σ_{j<=d} log λ_j
    total = eigvals.sum(-1, keepdim=True)
    csum = torch.cumsum(eigvals, -1)[..., :d_max]
    b = ((total - csum) / (D - d)).clamp_min(floor.reshape(-1, 1, 1))
    ll = -0.5 * n_k.unsqueeze(-1) * (csum_log + (D - d) * torch.log(b) + D * LOG_2PI + D)
    m = d * (D - (d + 1) / 2.0) + d + 1.0
    crit = 2.0 * ll - m * torch.log(n_total.to(eigvals.dtype)).reshape(-1, 1, 1)
    return crit.argmax(-1) + 1


def default_d_max(D: int, d_max: int | None) -> int:
    """``min(D − 1, 8)`` unless given; never above ``D − 1``."""
    cap = D - 1
    return max(min(cap, 8 if d_max is None else int(d_max)), 0)

