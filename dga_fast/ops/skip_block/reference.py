"""Reference of the fused decoder-input op: skip dropout, concatenation, GroupNorm, SiLU."""
from __future__ import annotations

import torch
import torch.nn.functional as F

GN_EPS = 1e-5


def skip_dropout_concat_norm_silu(h: torch.Tensor,          # [B, Ch, H, W]
                                  skip: torch.Tensor,       # [B, Cs, H, W]
                                  keep_mask: torch.Tensor,  # [B, Cs] bool/float, 1 = keep
                                  p: float,
                                  gn_weight: torch.Tensor,  # [Ch + Cs]
                                  gn_bias: torch.Tensor,    # [Ch + Cs]
                                  groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_cat = cat(h, skip · keep_mask / (1 − p))`` and ``y = SiLU(GroupNorm(x_cat))`` (eps 1e-5).

    The mask is an explicit tensor (drawn by the caller with torch's generator) so that every backend
    computes the same thing. Normalisation in float32 (float64 for float64 input); outputs in the input dtype."""
    scale = 1.0 / (1.0 - p) if p > 0 else 1.0
    dropped = skip * (keep_mask.to(skip.dtype) * scale)[:, :, None, None]
    x_cat = torch.cat([h, dropped], dim=1)
    dt = torch.promote_types(x_cat.dtype, torch.float32)
    y = F.silu(F.group_norm(x_cat.to(dt), groups, gn_weight.to(dt), gn_bias.to(dt), GN_EPS))
    return x_cat, y.to(x_cat.dtype)
