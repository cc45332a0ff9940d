"""DyGA's structure plans (DESIGN §4): the spread of every component, the split of the widest into free slots and
the filter of light ones. Backends: the native ops ``torch.ops.dga_fast.{mixture_spread, split_plan, filter_plan}``
(``csrc/core/dyga_core.*``; CPU tensors, and CUDA tensors in a CUDA build) compute the plans, which are applied
to the ``MixtureState`` in PyTorch; else the PyTorch reference (``reference.py``, the oracle: plans slot for slot)."""
from __future__ import annotations

import torch

from ...mixture.state import MixtureState
from ..registry import use_native
from . import reference


def mixture_spread(x: torch.Tensor, labels: torch.Tensor, means: torch.Tensor):
    """Per component hard-assigned count and mean distance to its mean."""
    if x.dtype == torch.float32 and means.dtype == torch.float32 and use_native(x):
        return torch.ops.dga_fast.mixture_spread(x, labels, means)
    return reference.mixture_spread(x, labels, means)


def split_components(state: MixtureState, spread: torch.Tensor, counts: torch.Tensor,
                     threshold: float, max_components: int, min_count: float, offsets: torch.Tensor | None = None):
    """Split the widest components (largest ``spread``: any score) into free slots (DESIGN §4): the plan
    natively when built, its application (``reference.apply_split``; ``offsets`` places the children) in
    PyTorch."""
    if use_native(spread):
        src, sign, n_split = torch.ops.dga_fast.split_plan(state.active, spread, counts, float(threshold),
                                                           int(max_components), float(min_count))
        return reference.apply_split(state, src, sign, offsets), n_split
    return reference.split_components(state, spread, counts, threshold, max_components, min_count, offsets)


def filter_components(state: MixtureState, mass: torch.Tensor, min_size: float) -> MixtureState:
    """Drop light components, compact the slots, renormalise: the plan natively when built."""
    if use_native(mass):
        keep, order = torch.ops.dga_fast.filter_plan(state.active, mass, float(min_size))
        return reference.apply_filter(state, keep, order)
    return reference.filter_components(state, mass, min_size)
