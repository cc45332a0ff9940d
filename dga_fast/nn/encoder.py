"""FeatureExtractor: image → U scalar latent units → one small MLP per unit → tokens [B, U, Dc]."""
from __future__ import annotations

import math

import torch
from torch import nn

from .unit_whitening import UnitWhitening

NORMS = ("group", "batch", "none")
UNIT_NORMS = (None, "batch", "whiten")


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

    ``unit_norm="batch"`` standardises the ``U`` scalars themselves (BatchNorm1d without affine: zero mean and
    unit variance per unit over the training batch, running statistics in eval mode), so no unit can shrink
    to a constant while another carries a factor alone (issue 14's folded hues); ``unit_norm="whiten"`` also
    decorrelates them over the batch (``UnitWhitening``); ``None`` (default) leaves them as the head makes them.
    """

    def __init__(self, image_size: int = 64, in_channels: int = 3, num_units: int = 20, unit_dim: int = 32,
                 channels: int = 64, hidden: int = 64, norm: str = "group", unit_norm: str | None = None):
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
        if norm not in NORMS:
            raise ValueError(f"encoder norm must be one of {NORMS}, got {norm!r}")
        if unit_norm not in UNIT_NORMS:
            raise ValueError(f"unit_norm must be one of {UNIT_NORMS}, got {unit_norm!r}")
        layers, c_in, size, i = [], in_channels, image_size, 0
        while size > 4:   # stride-2 convs down to 4x4, doubling channels up to 4x
            c = channels * min(2 ** i, 4)
            layers += [nn.Conv2d(c_in, c, 4, 2, 1), _conv_norm(norm, c), nn.SiLU()]
            c_in, size, i = c, size // 2, i + 1
        self.conv = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])
        head = [nn.Flatten(), nn.Linear(c_in * 4 * 4, 256), _hidden_norm(norm, 256), nn.SiLU(),
                nn.Linear(256, num_units)]
        self.head = nn.Sequential(*[m for m in head if not isinstance(m, nn.Identity)])
        if unit_norm == "batch":
            self.unit_norm = nn.BatchNorm1d(num_units, affine=False)
        elif unit_norm == "whiten":
            self.unit_norm = UnitWhitening(num_units)
        self.mlp = UnitMLP(num_units, (1, hidden, unit_dim), final_act=False)
        self.num_units, self.unit_dim = num_units, unit_dim

    def head_hidden(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, 256]
        """The head's hidden pre-activations (after their normalisation, before the SiLU)."""
        return self.head[:-2](self.conv(x))

    def latent_units(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, U]
        s = self.head(self.conv(x))
        return self.unit_norm(s) if hasattr(self, "unit_norm") else s

    def tokens_from_units(self, s: torch.Tensor) -> torch.Tensor:  # [B, U] -> [B, U, Dc]
        return self.mlp(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens_from_units(self.latent_units(x))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for k in ("w1", "b1", "w2", "b2"):   # checkpoints from before UnitMLP kept the MLP's weights here
            if prefix + k in state_dict:
                state_dict[prefix + "mlp." + k] = state_dict.pop(prefix + k)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class PaperFeatureExtractor(nn.Module):
    """The published feature extractor (DESIGN §6a): 7×7 conv (``channels``, stride 1), four stride-2 4×4
    convs (2, 4, 4, 4 × ``channels``), each conv followed by BatchNorm + ReLU; fully connected
    ``4·channels·(S/16)² → 256 → U``; each unit's scalar through its own MLP ``1 → 256 → 512 → Dc`` with a ReLU
    after every layer (tokens are non-negative). Same interface as ``FeatureExtractor``."""

    def __init__(self, image_size: int = 64, in_channels: int = 3, num_units: int = 20, unit_dim: int = 32,
                 channels: int = 64):
        super().__init__()
        if image_size < 16 or image_size % 16:
            raise ValueError(f"the paper's feature extractor needs image_size a multiple of 16, got {image_size}")
        layers, c_in = [nn.Conv2d(in_channels, channels, 7, 1, 3), nn.BatchNorm2d(channels), nn.ReLU()], channels
        for m in (2, 4, 4, 4):
            layers += [nn.Conv2d(c_in, channels * m, 4, 2, 1), nn.BatchNorm2d(channels * m), nn.ReLU()]
            c_in = channels * m
        self.conv = nn.Sequential(*layers)
        side = image_size // 16
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, 256), nn.ReLU(),
                                  nn.Linear(256, num_units))
        self.mlp = UnitMLP(num_units, (1, 256, 512, unit_dim), act=torch.relu, final_act=True)
        self.num_units, self.unit_dim = num_units, unit_dim

    head_hidden = FeatureExtractor.head_hidden
    latent_units = FeatureExtractor.latent_units
    tokens_from_units = FeatureExtractor.tokens_from_units
    forward = FeatureExtractor.forward


class UnitMLP(nn.Module):
    """One small MLP per latent unit, batched as grouped matmuls over ``[U, ...]`` weights (no loop over
    units): ``s [B, U] → [B, U, widths[-1]]``. Layer ``i`` has ``w{i} [U, in, out]`` (N(0, 1/in)) and
    ``b{i} [U, 1, out]`` (zeros); ``act`` after every layer but the last, and after the last too when
    ``final_act``."""

    def __init__(self, num_units: int, widths, act=torch.nn.functional.silu, final_act: bool = False):
        super().__init__()
        self.n_layers, self.act, self.final_act = len(widths) - 1, act, final_act
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]), start=1):
            setattr(self, f"w{i}", nn.Parameter(torch.randn(num_units, a, b) / math.sqrt(a)))
            setattr(self, f"b{i}", nn.Parameter(torch.zeros(num_units, 1, b)))

    def forward(self, s: torch.Tensor) -> torch.Tensor:  # [B, U] -> [B, U, out]
        h = s.transpose(0, 1).unsqueeze(-1)                                   # [U, B, 1]
        for i in range(1, self.n_layers + 1):
            h = torch.baddbmm(getattr(self, f"b{i}"), h, getattr(self, f"w{i}"))
            if i < self.n_layers or self.final_act:
                h = self.act(h)
        return h.transpose(0, 1)                                              # [B, U, out]
