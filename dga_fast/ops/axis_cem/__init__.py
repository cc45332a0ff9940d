"""One classification-EM step of the split test along a component's principal axis (``mixture/axis_split.py``):
every point to the class of largest ``base − 0.5 (t − mean)² / var`` of its component, and the new partition's
class statistics; and the loop of such steps (``axis_cem_iterate``). Backends: the native CPU ops
``torch.ops.dga_fast.{axis_cem_assign, axis_cem_iterate}`` (``csrc/core/cem_core.h``: one pass over a group's
points per step, the groups in parallel; the same classes as the reference) for CPU tensors, else the PyTorch
reference (``mixture.axis_split.{cem_assign, cem_iterate}``). The oracle of the step is ``naive``."""
from __future__ import annotations

import torch

from ...mixture.axis_split import cem_assign, cem_iterate
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


def axis_cem_iterate(t: torch.Tensor,        # [G, n] float64
                     comp: torch.Tensor,     # [G, n] int64
                     cls: torch.Tensor,      # [G, n] int64
                     cnt: torch.Tensor,      # [G, K, m] float64
                     s1: torch.Tensor,       # [G, K, m] float64
                     s2: torch.Tensor,       # [G, K, m] float64
                     v_floor: torch.Tensor,  # [G, K] float64
                     iters: int) -> tuple[torch.Tensor, ...]:   # cls [G, n], cnt, s1, s2 [G, K, m]
    """See ``mixture.axis_split.cem_iterate`` (one process)."""
    if use_native_cpu(t, (torch.float64,)):
        return torch.ops.dga_fast.axis_cem_iterate(t, comp, cls, cnt, s1, s2, v_floor, int(iters))
    return cem_iterate(t, comp, cls, cnt, s1, s2, v_floor, iters, assign=cem_assign)
