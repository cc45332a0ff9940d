"""Skip Dropout: channel-wise dropout of the U-Net decoder's skip connections (training only)."""
from __future__ import annotations

import torch
from torch import nn

from .. import ops


class SkipDropout(nn.Module):
    """Draws the keep mask ``[B, C]`` (per sample, per channel, keep probability ``1 − p``) in training
    and all ones in eval, with torch's generator; the scaling by ``1/(1 − p)`` happens in the op."""

    def __init__(self, p: float = 0.2):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"skip dropout rate p must be in [0, 1), got {p}")
        self.p = float(p)

    def keep_mask(self, skip: torch.Tensor) -> torch.Tensor:  # [B, C] float
        B, C = skip.shape[:2]
        if not self.training or self.p == 0.0:
            return torch.ones(B, C, device=skip.device, dtype=skip.dtype)
        return (torch.rand(B, C, device=skip.device) >= self.p).to(skip.dtype)

    def forward(self, skip: torch.Tensor) -> torch.Tensor:
        """Plain (unfused) skip dropout of ``skip [B, C, H, W]``."""
        if not self.training or self.p == 0.0:
            return skip
        return skip * (self.keep_mask(skip) / (1.0 - self.p))[:, :, None, None]

    def extra_repr(self) -> str:
        return f"p={self.p}"


class DecoderInput(nn.Module):
    """``(x_cat, y) = skip_dropout_concat_norm_silu(h, skip)``: the input of a decoder ResBlock, through
    ``dga_fast.ops`` (fused kernel on CUDA when ``fused``, reference otherwise)."""

    def __init__(self, h_channels: int, skip_channels: int, groups: int, p: float, fused: bool = True):
        super().__init__()
        self.dropout = SkipDropout(p)
        self.norm = nn.GroupNorm(groups, h_channels + skip_channels, eps=1e-5)
        self.fused = fused

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.fused:   # in eval the mask is all ones and nothing is rescaled (p = 0)
            p = self.dropout.p if self.training else 0.0
            return ops.skip_dropout_concat_norm_silu(h, skip, self.dropout.keep_mask(skip), p,
                                                     self.norm.weight, self.norm.bias, self.norm.num_groups)
        x_cat = torch.cat([h, self.dropout(skip)], dim=1)
        return x_cat, torch.nn.functional.silu(self.norm(x_cat))
