"""SyntheticSquares: one coloured square on a black background, the plainest dataset of the kind, procedural and
download-free. Factors: position x 16, position y 16, scale 8, colour 10 (hues on the colour wheel) — 20,480
combinations. Rendered at twice the size and averaged down 2 × 2 (anti-aliased edges), on the fly from the index
and vectorised over a batch. It is where a user first saw a baseline run fall back to predicting nothing
(``benchmarks/divergence_sweep.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .factor_grid import FactorGrid, pixel_grid
from .synthetic_shapes import hsv_to_rgb

SQUARE_FACTOR_NAMES = ("pos_x", "pos_y", "scale", "colour")
SQUARE_FACTOR_SIZES = (16, 16, 8, 10)


class SyntheticSquares(FactorGrid):
    """``dataset[i] -> (image [3, size, size] float in [0, 1], factors [4] int64)``."""

    factor_names = SQUARE_FACTOR_NAMES
    factor_sizes = SQUARE_FACTOR_SIZES

    def images_from_factors(self, f) -> torch.Tensor:  # [n, 4] -> [n, 3, S, S] in [0, 1]
        f = self._check_factors(f)
        n, S2 = f.shape[0], 2 * self.size
        g = f.float()
        half = 0.12 + 0.16 * g[:, 2] / 7                                   # half-side 0.12 .. 0.28
        reach = 0.95 - half                                                # the square stays inside the image
        cx = (-1 + 2 * g[:, 0] / 15) * reach
        cy = (-1 + 2 * g[:, 1] / 15) * reach
        yy, xx = pixel_grid(S2)
        inside = (torch.maximum((xx - cx.view(n, 1, 1)).abs(), (yy - cy.view(n, 1, 1)).abs())
                  <= half.view(n, 1, 1)).float()                           # [n, 2S, 2S]
        rgb = hsv_to_rgb(g[:, 3] / 10, s=1.0, v=1.0)                      # [n, 3]
        img = inside.unsqueeze(1) * rgb.view(n, 3, 1, 1)
        return F.avg_pool2d(img, 2)
