"""Datasets written for disentanglement_lib, used by the metrics unchanged.

disentanglement_lib's ``GroundTruthData`` has ``factors_num_values``, ``sample_factors(num, random_state)`` and
``sample_observations_from_factors(factors, random_state)`` returning ``[n, H, W, C]`` arrays in [0, 1]. The metrics
here read ``factor_sizes`` and ``images_from_factors(f)`` (``[n, C, H, W]`` tensors, what ``dga_fast`` models take).
``as_factor_dataset`` wraps the first kind in the second and leaves every other dataset as it is.
"""
from __future__ import annotations

import numpy as np
import torch

from ..np_random import as_random_state


class DisentanglementLibData:
    """``dataset`` (disentanglement_lib's interface) seen through the metrics' interface. ``random_state`` is passed
    to both of its sampling methods, as disentanglement_lib's metrics pass theirs. Observations of shape
    ``[n, H, W, C]`` become float tensors ``[n, C, H, W]``; any other shape is passed through as a tensor."""

    def __init__(self, dataset, random_state=0):
        self.dataset = dataset
        self.random_state = as_random_state(random_state, "random_state")
        self.factor_sizes = tuple(int(s) for s in dataset.factors_num_values)
        names = getattr(dataset, "factor_names", None)
        self.factor_names = tuple(names) if names is not None else tuple(f"factor{i}" for i in
                                                                          range(len(self.factor_sizes)))

    def sample_factors(self, n: int, rng=None) -> np.ndarray:  # [n, F]
        return np.asarray(self.dataset.sample_factors(n, self.random_state if rng is None else rng))

    def images_from_factors(self, f) -> torch.Tensor:  # [n, F] -> [n, C, H, W]
        obs = torch.as_tensor(np.asarray(self.dataset.sample_observations_from_factors(np.asarray(f),
                                                                                       self.random_state)))
        obs = obs.float() if not obs.is_floating_point() else obs
        return obs.permute(0, 3, 1, 2).contiguous() if obs.dim() == 4 else obs


def is_disentanglement_lib_data(dataset) -> bool:
    """Whether ``dataset`` has disentanglement_lib's interface and not the metrics' own."""
    return (hasattr(dataset, "sample_observations_from_factors") and hasattr(dataset, "factors_num_values")
            and not hasattr(dataset, "images_from_factors"))


def as_factor_dataset(dataset, random_state=0):
    """``dataset`` wrapped by ``DisentanglementLibData`` when it has disentanglement_lib's interface; else itself."""
    return DisentanglementLibData(dataset, random_state) if is_disentanglement_lib_data(dataset) else dataset
