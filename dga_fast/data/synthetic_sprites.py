"""SyntheticSprites: a procedural, download-free dataset in the manner of dSprites, with other factors than
SyntheticShapes and not derived from it (issue 15's second dataset).

Factors (dSprites'): shape 3 (square, ellipse, heart), scale 6, orientation 40 (a full turn: circular),
position x 32, position y 32 — 737,280 combinations. One white sprite on a black background, soft edges,
rendered on the fly from its index and vectorised over a batch; ``channels=3`` (default, what the presets
expect) repeats the grey image, ``channels=1`` is dSprites' single channel.
"""
from __future__ import annotations

import math

import torch

from .factor_grid import FactorGrid, pixel_grid

SPRITE_FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
SPRITE_FACTOR_SIZES = (3, 6, 40, 32, 32)


def _sprite_inside(shape: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed inside-ness of each pixel (> 0 inside), in the sprite's frame ``u, v [n, S, S]`` scaled so the
    sprite spans about [-1, 1]; roughly a distance in those units, so one soft edge fits all three."""
    square = 0.8 - torch.maximum(u.abs(), v.abs())
    ellipse = 1 - torch.sqrt(u * u + (v / 0.5) ** 2)
    hu, hv = u * 1.15, -v * 1.15 + 0.15                                     # heart, point down
    h = (hu * hu + hv * hv - 1) ** 3 - hu * hu * hv ** 3                    # < 0 inside (the heart curve)
    heart = -h.sign() * h.abs().pow(1 / 3) * 0.5                            # cube root: about a distance
    return torch.stack([square, ellipse, heart], 1)[torch.arange(shape.shape[0]), shape]


class SyntheticSprites(FactorGrid):
    """``dataset[i] -> (image [channels, size, size] float in [0, 1], factors [5] int64)``."""

    factor_names = SPRITE_FACTOR_NAMES
    factor_sizes = SPRITE_FACTOR_SIZES

    def __init__(self, size: int = 64, seed: int = 0, channels: int = 3):
        super().__init__(size, seed)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.channels = channels

    def images_from_factors(self, f) -> torch.Tensor:  # [n, 5] -> [n, channels, S, S] in [0, 1]
        f = self._check_factors(f)
        n, S = f.shape[0], self.size
        g = f.float()
        r = 0.16 + 0.16 * g[:, 1] / 5                                       # half-size 0.16 .. 0.32
        angle = g[:, 2] / 40 * 2 * math.pi                                  # a full turn
        cx = -0.62 + 1.24 * g[:, 3] / 31                                    # centre in [-0.62, 0.62]
        cy = -0.62 + 1.24 * g[:, 4] / 31
        yy, xx = pixel_grid(S)
        dx, dy = xx - cx.view(n, 1, 1), yy - cy.view(n, 1, 1)
        ca, sa = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
        rr = r.view(n, 1, 1)
        u, v = (dx * ca + dy * sa) / rr, (-dx * sa + dy * ca) / rr
        inside = _sprite_inside(f[:, 0], u, v)
        img = torch.sigmoid(inside * rr * S).unsqueeze(1)                   # about one pixel of soft edge
        return img.expand(n, self.channels, S, S).contiguous()
