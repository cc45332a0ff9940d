"""SyntheticShapes: a procedural, download-free stand-in for Shapes3D with ground-truth factors.

Factors (Shapes3D's): floor hue 10, wall hue 10, object hue 10, scale 8, shape 4, orientation 15 —
480,000 combinations, each image rendered on the fly from its index. The scene: a wall (top) and a floor
(bottom) split by a horizon whose tilt follows the orientation, and one object (square, cylinder seen from
the side, sphere, or capsule) standing on the floor, whose size follows the scale and which turns with the
orientation. Rendering is vectorised over a batch, with soft edges.
"""
from __future__ import annotations

import math

import torch

from .factor_grid import FactorGrid, pixel_grid

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)


def hsv_to_rgb(h: torch.Tensor, s: float = 0.85, v: float = 0.9) -> torch.Tensor:  # [...] -> [..., 3]
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=-1)
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


class SyntheticShapes(FactorGrid):
    """``dataset[i] -> (image [3, size, size] float in [0, 1], factors [6] int64)``."""

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES

    # ------------------------------------------------------------------ rendering
    def images_from_factors(self, f) -> torch.Tensor:  # [n, 6] -> [n, 3, S, S] in [0, 1]
        f = self._check_factors(f).float()
        n, S = f.shape[0], self.size
        floor_c = hsv_to_rgb(f[:, 0] / 10)
        wall_c = hsv_to_rgb(f[:, 1] / 10)
        obj_c = hsv_to_rgb(f[:, 2] / 10, s=0.9, v=0.95)
        scale = 0.75 + 0.5 * f[:, 3] / 7                                   # 0.75 .. 1.25
        shape = f[:, 4].long()
        angle = (f[:, 5] / 14 - 0.5) * (math.pi / 3)                        # -30° .. 30°
        yy, xx = pixel_grid(S)
        yy, xx = yy.expand(n, S, S), xx.expand(n, S, S)
        soft = lambda d: torch.sigmoid(d * S / 2)                          # noqa: E731  soft edge
        # horizon tilted by the orientation
        horizon = 0.2 + torch.tan(angle).view(n, 1, 1) * xx * 0.5
        floor_m = soft(yy - horizon)
        img = wall_c.view(n, 3, 1, 1) * (1 - floor_m.unsqueeze(1)) + floor_c.view(n, 3, 1, 1) * floor_m.unsqueeze(1)
        # floor shading (depth cue)
        img = img * (1 - 0.25 * floor_m.unsqueeze(1) * (1 - (yy.unsqueeze(1) + 1) / 2))
        # object in its own rotated frame, centred above the floor line
        r = 0.35 * scale.view(n, 1, 1)
        cy = 0.45 - r
        ca, sa = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
        u = (xx * ca + (yy - cy) * sa) / r
        v = (-xx * sa + (yy - cy) * ca) / r
        d_square = 1 - torch.maximum(u.abs(), v.abs())
        d_cyl = torch.minimum(0.7 - u.abs(), 1 - v.abs())
        d_sphere = 1 - torch.sqrt(u * u + v * v)
        vv = (v.abs() - 0.45).clamp_min(0)
        d_caps = 0.55 - torch.sqrt(u * u + vv * vv)
        dist = torch.stack([d_square, d_cyl, d_sphere, d_caps], 1)[torch.arange(n), shape]   # [n, S, S]
        obj_m = soft(dist * r).unsqueeze(1)
        shade = (1 - 0.2 * (u + 1) / 2).clamp(0.6, 1).unsqueeze(1)          # side lighting, turns with it
        img = img * (1 - obj_m) + obj_c.view(n, 3, 1, 1) * shade * obj_m
        return img.clamp(0, 1)
