"""FactorGrid: the base of the procedural datasets. Every combination of the factors' values is one index
(mixed radix, the last factor fastest); an image is rendered on the fly from its factors by the subclass's
``images_from_factors``."""
from __future__ import annotations

import numpy as np
import torch

from ..np_random import uniform_factors


def pixel_grid(S: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``yy, xx [S, S]``: the pixel centres of an ``S``×``S`` image in [-1, 1] (y down, x right)."""
    coords = (torch.arange(S, dtype=torch.float32) + 0.5) / S * 2 - 1
    return torch.meshgrid(coords, coords, indexing="ij")


class FactorGrid(torch.utils.data.Dataset):
    """``dataset[i] -> (image [C, size, size] float in [0, 1], factors [F] int64)``; subclasses set
    ``factor_names``, ``factor_sizes`` and ``images_from_factors(f [n, F]) -> [n, C, S, S]``."""

    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()

    def __init__(self, size: int = 64, seed: int = 0):
        if not isinstance(size, int) or isinstance(size, bool) or size < 8:
            raise ValueError(f"size must be an int >= 8, got {size!r}")
        self.size = size
        self.seed = seed
        F = len(self.factor_sizes)
        self._sizes = torch.tensor(self.factor_sizes)
        self._radix = torch.tensor([int(np.prod(self.factor_sizes[i + 1:])) for i in range(F)])

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def index_to_factors(self, idx) -> torch.Tensor:  # [n] -> [n, F]
        idx = torch.as_tensor(idx, dtype=torch.int64).reshape(-1)
        if bool(((idx < 0) | (idx >= len(self))).any()):
            raise IndexError(f"index out of range for {type(self).__name__} of length {len(self)}")
        return (idx.unsqueeze(1) // self._radix) % self._sizes

    def factors_to_index(self, f) -> torch.Tensor:  # [n, F] -> [n]
        f = self._check_factors(f)
        return (f * self._radix).sum(1)

    @property
    def factors(self) -> torch.Tensor:  # [len, F], all combinations in index order
        return self.index_to_factors(torch.arange(len(self)))

    def sample_factors(self, n: int, rng=None) -> np.ndarray:
        """``n`` factor vectors drawn uniformly (what the disentanglement metrics need); ``rng``: a NumPy
        ``Generator`` or ``RandomState`` (disentanglement_lib's), an int seed or ``None``."""
        return uniform_factors(rng, self.factor_sizes, n)

    def _check_factors(self, f) -> torch.Tensor:
        f = torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f).to(torch.int64)
        F = len(self.factor_sizes)
        if f.dim() != 2 or f.shape[1] != F:
            raise ValueError(f"factors must have shape [n, {F}], got {tuple(f.shape)}")
        if bool(((f < 0) | (f >= self._sizes)).any()):
            raise ValueError(f"factor values out of range; sizes are {self.factor_sizes}")
        return f

    def images_from_factors(self, f) -> torch.Tensor:
        raise NotImplementedError

    def get_batch(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[n, C, S, S]`` and factors ``[n, F]`` of indices ``idx`` (rendered as one batch)."""
        f = self.index_to_factors(idx)
        return self.images_from_factors(f), f

    def __getitem__(self, i):
        f = self.index_to_factors(i)
        return self.images_from_factors(f)[0], f[0]
