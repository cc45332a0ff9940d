"""One Lloyd step of the k-means refinement of the initial partition (``mixture/init.py``): every row to its
nearest centre, and the counts and sums of the rows per label. Backends: the native CPU op
``torch.ops.dga_fast.kmeans_assign`` (``csrc/core/kmeans_core.h``: direct differences in double, one pass over a
group's rows, groups × fixed row chunks in parallel) for CPU tensors, else the PyTorch reference
(``mixture.init.kmeans_step``, distances by expansion). The oracle of both is ``naive``."""
from __future__ import annotations

import torch

from ...mixture.init import kmeans_step
from ..registry import use_native_cpu


def kmeans_assign(x: torch.Tensor,        # [G, n, D]
                  centers: torch.Tensor   # [G, K, D]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:   # labels [G, n], counts [G, K], sums [G, K, D]
    """See ``mixture.init.kmeans_step``."""
    if use_native_cpu(x, (torch.float32, torch.float64)) and centers.dtype == x.dtype:
        return torch.ops.dga_fast.kmeans_assign(x, centers)
    return kmeans_step(x, centers)
