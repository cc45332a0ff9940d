"""A dataset whose 'images' are its factor vectors: disentanglement_lib's identity observations, for testing
and timing the metrics without a model in the way."""
from __future__ import annotations

import numpy as np
import torch

from ..np_random import uniform_factors


class FactorsAsImages:
    """``images_from_factors(f)`` returns the factors themselves as a float64 tensor ``[n, F]``;
    ``sample_factors(n, rng)`` draws every factor uniformly from ``range(size)``."""

    def __init__(self, factor_sizes=(4, 5, 6)):
        sizes = tuple(int(s) for s in factor_sizes)
        if not sizes or min(sizes) < 1:
            raise ValueError(f"factor_sizes must be a non-empty sequence of positive ints, got {factor_sizes!r}")
        self.factor_sizes = sizes

    def sample_factors(self, n: int, rng=None) -> np.ndarray:  # [n, F]
        return uniform_factors(rng, self.factor_sizes, n)

    def images_from_factors(self, f) -> torch.Tensor:  # [n, F] -> [n, F]
        return torch.as_tensor(np.asarray(f), dtype=torch.float64)
