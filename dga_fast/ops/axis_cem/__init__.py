"""One classification-EM step of the split test along a component's principal axis (``mixture/axis_split.py``):
every point to the class of largest ``base − 0.5 (t − mean)² / var`` of its component, and the new partition's
class statistics; the loop of such steps (``axis_cem_iterate``); the points' coordinates along their component's
axis (``axis_project``); all three as ``AXIS`` (an ``AxisKernels`` the split test receives). Backends: the native
CPU ops ``torch.ops.dga_fast.{axis_cem_assign, axis_cem_iterate, axis_project}`` (``csrc/core/cem_core.h``: one
pass over a group's points per step, the groups in parallel; the same classes as the reference) for CPU
tensors, else the PyTorch reference (``mixture.axis_split``). The oracle of the step and the projection is
``naive``."""
from __future__ import annotations

import torch

from ...mixture.axis_split import AxisKernels, cem_assign, cem_iterate, project_on_axis
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


def axis_project(x: torch.Tensor,       # [G, n, D]
                 labels: torch.Tensor,  # [G, n] int64
                 means: torch.Tensor,   # [G, K, D]
                 q: torch.Tensor        # [G, K, D]
                 ) -> torch.Tensor:     # [G, n] float64
    """See ``mixture.axis_split.project_on_axis``."""
    if use_native_cpu(x, (torch.float32, torch.float64)) and means.dtype == q.dtype == x.dtype:
        return torch.ops.dga_fast.axis_project(x, labels, means, q)
    return project_on_axis(x, labels, means, q)


AXIS = AxisKernels(project=axis_project, assign=axis_cem_assign, iterate=axis_cem_iterate)
