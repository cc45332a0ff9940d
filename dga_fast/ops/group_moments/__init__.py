"""The normaliser's per-group sums (``mixture.normalise``): the refined mean, ``Σ‖x − μ‖²`` and ``Σ‖x‖²``.

Backends: the native CPU op ``torch.ops.dga_fast.group_moments`` (``csrc/core/moments_core.h``: one pass per
statistic, no float64 copy of ``x``), else the PyTorch reference ``mixture.normalise.group_sums`` (the oracle)."""
from __future__ import annotations

import torch

from ..._validation import check_float_tensor
from ...mixture.normalise import group_sums
from ..registry import use_native_cpu


def group_moments(x: torch.Tensor  # [G, N, D]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:   # [G, D], [G], [G] float64
    """The normaliser's sums of every group (``mixture.normalise.group_sums`` for one process)."""
    check_float_tensor("x", x, 3, finite=False)
    if use_native_cpu(x, (torch.float32, torch.float64)):
        return torch.ops.dga_fast.group_moments(x)   # checks x's values as it reads them
    check_float_tensor("x", x)
    return group_sums(x)
