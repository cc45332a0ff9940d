"""One Lloyd step of the k-means refinement of the initial partition (``mixture/init.py``): every row to its
nearest centre, and the counts and sums of the rows per label; and the whole Lloyd loop (``kmeans_lloyd``).
Backends: the native CPU ops ``torch.ops.dga_fast.{kmeans_assign, kmeans_lloyd}`` (``csrc/core/kmeans_core.*``:
direct differences in double, one pass over a group's rows per step; the step in parallel over groups × fixed
row chunks, the loop over groups, each group stopping at its own fixed point) for CPU tensors, else the PyTorch
reference (``mixture.init.{kmeans_step, lloyd}``, distances by expansion). The oracle of the step is ``naive``."""
from __future__ import annotations

import torch

from ...mixture.init import kmeans_step, lloyd
from ..registry import use_native_cpu


def _native(x: torch.Tensor, centers: torch.Tensor) -> bool:
    return use_native_cpu(x, (torch.float32, torch.float64)) and centers.dtype == x.dtype


def kmeans_assign(x: torch.Tensor,        # [G, n, D]
                  centers: torch.Tensor   # [G, K, D]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:   # labels [G, n], counts [G, K], sums [G, K, D]
    """See ``mixture.init.kmeans_step``."""
    if _native(x, centers):
        return torch.ops.dga_fast.kmeans_assign(x, centers)
    return kmeans_step(x, centers)


def kmeans_lloyd(x: torch.Tensor,        # [G, n, D]
                 centers: torch.Tensor,  # [G, K, D]
                 max_iter: int = 10) -> tuple[torch.Tensor, torch.Tensor]:   # labels [G, n], centers [G, K, D]
    """``mixture.init.lloyd`` on one process. The native loop runs the groups in parallel, so it is taken when
    there are at least as many groups as threads; else the loop of native steps (each step parallel over row
    chunks too). Both give the same numbers."""
    if _native(x, centers) and x.shape[0] >= torch.get_num_threads():
        return torch.ops.dga_fast.kmeans_lloyd(x, centers, int(max_iter))
    return lloyd(x, centers, max_iter, step=kmeans_assign)
