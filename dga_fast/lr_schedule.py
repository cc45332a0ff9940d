"""Learning-rate schedules shared by the training loops (``train`` and ``train-autoencoder``).

``"cosine"``: a linear warm-up over the first ``warmup`` fraction of training, then a half cosine from ``lr``
to 0. ``"constant"``: ``lr`` throughout. The rate is a function of training's progress ``frac`` in
``[0, 1]`` only, so a resumed run sets exactly the rates an uninterrupted one would.
"""
from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_at(name: str, lr: float, frac: float, warmup: float = 0.02) -> float:
    """The learning rate at progress ``frac`` (0 = first step, 1 = end) of schedule ``name``."""
    if name == "constant":
        return lr
    frac = min(max(frac, 0.0), 1.0)
    warm = min(1.0, (frac + 1e-9) / warmup) if warmup > 0 else 1.0
    return lr * warm * 0.5 * (1 + math.cos(math.pi * frac))
