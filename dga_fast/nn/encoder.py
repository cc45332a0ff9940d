"""FeatureExtractor: image → U scalar latent units → one small MLP per unit → tokens [B, U, Dc]."""
from __future__ import annotations

import math

import torch
from torch import nn

NORMS = ("group", "batch", "none")


def _conv_norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(math.gcd(channels, 8), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def _hidden_norm(kind: str, features: int) -> nn.Module:
    if kind == "group":
        return nn.LayerNorm(features)
    if kind == "batch":
        return nn.BatchNorm1d(features)
    return nn.Identity()


class FeatureExtractor(nn.Module):
    """A strided conv encoder produces ``num_units`` scalars; unit ``u``'s MLP
    (``1 → hidden → unit_dim``, SiLU) turns its scalar into a token. The per-unit MLPs are batched as
    grouped matmuls over a ``[U, ...]`` weight tensor (no Python loop over units).

    ``norm`` normalises every conv's output and the head's hidden pre-activations before their SiLU:
    ``"group"`` (default: GroupNorm after the convs, LayerNorm in the head; per image, so training, the refit's
    token collection in eval mode and every DDP rank see the same function), ``"batch"`` (BatchNorm, as the
    published extractor; train and eval modes differ) or ``"none"`` (checkpoints made before issue 13). Without
    normalisation the head's hidden layer dies (issue 13, README "Why the encoder has normalisation").
    """

    def __init__(self, image_size: int = 64, in_channels: int = 3, num_units: int = 20, unit_dim: int = 32,
                 channels: int = 64, hidden: int = 64, norm: str = "group"):
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
        if norm not in NORMS:
            raise ValueError(f"encoder norm must be one of {NORMS}, got {norm!r}")
        layers, c_in, size, i = [], in_channels, image_size, 0
        while size > 4:   # stride-2 convs down to 4x4, doubling channels up to 4x
            c = channels * min(2 ** i, 4)
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), _conv_norm(norm, c), nn.SiLU()]
            c_in, size, i = c, size // 2, i + 1
        self.conv = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])
        head = [nn.Flatten(), nn.Linear(c_in * 4 * 4, 256), _hidden_norm(norm, 256), nn.SiLU(),
                nn.Linear(256, num_units)]
        self.head = nn.Sequential(*[m for m in head if not isinstance(m, nn.Identity)])
        self.w1 = nn.Parameter(torch.randn(num_units, 1, hidden))
        self.b1 = nn.Parameter(torch.zeros(num_units, 1, hidden))
        self.w2 = nn.Parameter(torch.randn(num_units, hidden, unit_dim) / math.sqrt(hidden))
        self.b2 = nn.Parameter(torch.zeros(num_units, 1, unit_dim))
        self.num_units, self.unit_dim = num_units, unit_dim

    def head_hidden(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, 256]
        """The head's hidden pre-activations (after their normalisation, before the SiLU)."""
        return self.head[:-2](self.conv(x))

    def latent_units(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, U]
        return self.head(self.conv(x))

    def tokens_from_units(self, s: torch.Tensor) -> torch.Tensor:  # [B, U] -> [B, U, Dc]
        su = s.transpose(0, 1).unsqueeze(-1)                                  # [U, B, 1]
        h = torch.nn.functional.silu(torch.baddbmm(self.b1, su, self.w1))     # [U, B, hidden]
        return torch.baddbmm(self.b2, h, self.w2).transpose(0, 1)             # [B, U, Dc]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens_from_units(self.latent_units(x))
