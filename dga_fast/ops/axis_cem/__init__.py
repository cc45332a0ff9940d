"""One classification-EM step of the split test along a component's principal axis (``mixture/axis_split.py``):
every point to the class of largest ``base − 0.5 (t − mean)² / var`` of its component, and the new partition's
class statistics. Backends: the native CPU op ``torch.ops.dga_fast.axis_cem_assign`` (``csrc/core/cem_core.h``:
one pass over a group's points, the groups in parallel; the same classes as the reference) for CPU tensors, else
the PyTorch reference (``mixture.axis_split.cem_assign``). The oracle of both is ``naive``."""
from __future__ import annotations

import torch

from ...mixture.axis_split import cem_assign
from ..registry import use_native_cpu


def axis_cem_assign(t: torch.Tensor,      # [G, n] float64
                    comp: torch.Tensor,   # [G, n] int64
                    prev: torch.Tensor,   # [G, n] int64
                    base: torch.Tensor,   # [G, K, m] float64
                    mean: torch.Tensor,   # [G, K, m] float64
                    var: torch.Tensor     # [G, K] float64
                    ) -> tuple[torch.Tensor, ...]:   # cls [G, n], changed [G], cnt, s1, s2 [G, K, m]
    """See ``mixture.axis_split.cem_assign``."""
    if use_native_cpu(t, (torch.float64,)):
        return torch.ops.dga_fast.axis_cem_assign(t, comp, prev, base, mean, var)
    return cem_assign(t, comp, prev, base, mean, var)
