"""Does a component hold one Gaussian or several? A batched test on its own points, along its principal axis.

For every active component k of every group, the points hard-assigned to k are projected on k's first
principal direction ``q_k1``: ``t = q_k1ᵀ(x − μ_k)``. A 1-D classification EM with one variance shared by
the classes (CEM: every point to the class of largest ``log π_s − (t − m_s)²/(2 v)``, started from ``m``
equal-width classes over ``mean ± √3·sd``) partitions them into ``m`` classes, and the classification BIC
compares that with one Gaussian:

    gain_m = 2 [Σ_s n_s log(n_s/n) − ½ n log v_pooled] + n log v − 2 (m − 1) log N     (> 0: more than one)

(ML Gaussians on the points; the 2π and n/2 terms cancel; 2 parameters, a mean and a weight, per extra
class). The shared variance makes it a test of *location*: a heavy-tailed value (a narrow core in a wide
skirt, which separate variances would call two Gaussians) is not split. The test takes the
best of ``m`` in ``classes`` (default 2 and 8): two classes find two separated groups, eight find a comb of
many tight values that two halves would not tell from a uniform segment. The classification likelihood is
what keeps it conservative: cutting one Gaussian into classes lowers it (halves: −0.19 n), cutting a uniform
segment into equal classes leaves it unchanged before the penalty, so neither is split. The children of a
split start at the two-class means. The merge step (``merge.py``) applies the two-class criterion to a pair
along the line through its means, so split and merge agree on what two Gaussians are.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..distributed import LOCAL, Reducer
from .state import MixtureState

# extra parameters per extra class of a 1-D Gaussian mixture with a shared variance (a mean, a weight)
EXTRA_PARAMS = 2.0
# a class's variance is floored at this fraction of its component's variance along the axis (a class of a
# few nearly equal points must not win by a vanishing variance)
REL_VAR_FLOOR = 1e-4


@dataclass
class AxisTest:
    gain: torch.Tensor      # [G, K] best classification-BIC gain over one Gaussian (-inf: not testable)
    smaller: torch.Tensor   # [G, K] points in the smaller class of the two-class partition
    offsets: torch.Tensor   # [G, K, 2] the two-class means along q_k1 relative to μ_k


def _class_stats(t, key, G, C, reducer):
    """Counts, sums and sums of squares of ``t [G, n]`` (float64) per class ``key [G, n]`` in ``0..C−1``."""
    def acc(v):
        return reducer.sum(torch.zeros(G, C, dtype=torch.float64, device=t.device).scatter_add_(1, key, v))
    return acc(torch.ones_like(t)), acc(t), acc(t * t)


def _moments(n, s1, s2, floor):
    m = s1 / n.clamp_min(1.0)
    v = torch.maximum(s2 / n.clamp_min(1.0) - m * m, floor)
    return m, v


def _pooled(cnt, s1, s2, floor):
    """Class means ``[G, K, m]`` and the variance ``[G, K]`` they share (within-class, pooled)."""
    mean = s1 / cnt.clamp_min(1.0)
    within = (s2 - cnt * mean * mean).clamp_min(0.0).sum(-1)
    return mean, torch.maximum(within / cnt.sum(-1).clamp_min(1.0), floor)


def cem_assign(t: torch.Tensor,      # [G, n] float64 projections
               comp: torch.Tensor,   # [G, n] int64 component of every point
               prev: torch.Tensor,   # [G, n] int64 current classes
               base: torch.Tensor,   # [G, K, m] log class weights (−inf: empty class)
               mean: torch.Tensor,   # [G, K, m] class means
               var: torch.Tensor     # [G, K] pooled variance
               ) -> tuple[torch.Tensor, ...]:
    """One CEM step (the reference of ``torch.ops.dga_fast.axis_cem_assign``): every point to the class of largest
    ``base − 0.5 (t − mean)² / var`` of its component; returns the classes ``[G, n]``, the points that changed
    class ``[G]`` and the new partition's counts, sums and sums of squares ``[G, K, m]`` (this process's)."""
    G, K, m = base.shape
    at = lambda a: torch.gather(a, 1, comp.unsqueeze(-1).expand(-1, -1, a.shape[-1]))   # noqa: E731  [G,n,·]
    score = at(base) - 0.5 * (t.unsqueeze(-1) - at(mean)) ** 2 / torch.gather(var, 1, comp).unsqueeze(-1)
    cls = score.argmax(-1)
    cnt, s1, s2 = (a.view(G, K, m) for a in _class_stats(t, comp * m + cls, G, K * m, LOCAL))
    return cls, (cls != prev).sum(1), cnt, s1, s2


def cem_iterate(t: torch.Tensor,        # [G, n] float64 projections
                comp: torch.Tensor,     # [G, n] int64 component of every point
                cls: torch.Tensor,      # [G, n] int64 starting classes
                cnt: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor,   # [G, K, m] their statistics (all ranks')
                v_floor: torch.Tensor,  # [G, K] floor of the pooled variances
                iters: int, *, reducer: Reducer = LOCAL,
                assign=cem_assign) -> tuple[torch.Tensor, ...]:   # cls [G, n], cnt, s1, s2 [G, K, m]
    """Up to ``iters`` CEM steps (``assign``) from the partition ``cls``, the class parameters recomputed from the
    statistics before each; stops after a step that moved no point on any rank (the reference of
    ``torch.ops.dga_fast.axis_cem_iterate``, which stops per group: a group that moved nothing is at a fixed point,
    so both give the same result)."""
    for _ in range(iters):
        mean, var = _pooled(cnt, s1, s2, v_floor)
        base = torch.log(cnt.clamp_min(1.0) / cnt.sum(-1, keepdim=True).clamp_min(1.0))
        base = torch.where(cnt > 0, base, torch.full_like(base, float("-inf")))
        cls, changed, cnt, s1, s2 = assign(t, comp, cls, base, mean, var)
        cnt, s1, s2 = reducer.sum(cnt), reducer.sum(s1), reducer.sum(s2)
        if reducer.sum_int(int(changed.sum())) == 0:
            break
    return cls, cnt, s1, s2


def _cem(t, comp, K, m, mu, sd, v_floor, iters, reducer, iterate):
    """``m``-class CEM (shared variance) of ``t [G, n]`` within every component ``comp [G, n]``; returns per
    component and class the counts and means ``[G, K, m]`` and the pooled variance ``[G, K]``. ``iterate``: the
    CEM iterations (``cem_iterate`` with this ``reducer``, or a single-process native loop)."""
    G = t.shape[0]
    half = math.sqrt(3.0) * sd                                                            # [G, K]
    width = (2.0 * half / m).clamp_min(1e-300)
    cls = ((t - torch.gather(mu - half, 1, comp)) / torch.gather(width, 1, comp)).floor().clamp(0, m - 1).long()
    cnt, s1, s2 = (a.view(G, K, m) for a in _class_stats(t, comp * m + cls, G, K * m, reducer))
    _, cnt, s1, s2 = iterate(t, comp, cls, cnt, s1, s2, v_floor.expand(G, K).contiguous(), iters)
    mean, var = _pooled(cnt, s1, s2, v_floor)
    return cnt, mean, var


def _class_loglik(cnt, var):   # cnt [G, K, m], var [G, K] -> [G, K], up to the constants that cancel
    n = cnt.sum(-1)
    xlogx = torch.where(cnt > 0, cnt * torch.log(cnt / n.clamp_min(1.0).unsqueeze(-1)), torch.zeros_like(cnt))
    return xlogx.sum(-1) - 0.5 * n * torch.log(var)


def project_on_axis(x: torch.Tensor,       # [G, n, D]
                    labels: torch.Tensor,  # [G, n] int64 component of every point
                    means: torch.Tensor,   # [G, K, D]
                    q: torch.Tensor        # [G, K, D] unit axis of every component
                    ) -> torch.Tensor:     # [G, n] float64
    """``t = q_kᵀ(x − μ_k)`` of every point, ``k`` its component (the reference of
    ``torch.ops.dga_fast.axis_project``, which sums in double)."""
    G, n, D = x.shape
    K = means.shape[1]
    flat = (labels + torch.arange(G, device=x.device).unsqueeze(1) * K).reshape(-1)       # row of each point's k
    at = lambda a: a.reshape(G * K, D).index_select(0, flat).view(G, n, D)   # noqa: E731  (a gather, 2× faster)
    return ((x - at(means)) * at(q)).sum(-1).to(torch.float64)


@dataclass(frozen=True)
class AxisKernels:
    """The split test's heavy parts, passed in by the caller (``mixture/`` never imports ``ops/``;
    ``dga_fast.ops.AXIS`` is the dispatching set): ``project(x, labels, means, q)`` the points' coordinates along
    their component's axis, ``assign(...)`` one CEM step (``cem_assign``) and ``iterate(...)`` the CEM loop of one
    process (``None``: ``cem_iterate`` over ``assign``, which is also what several ranks always run). The default
    is plain PyTorch."""
    project: Callable = project_on_axis
    assign: Callable = cem_assign
    iterate: Callable | None = None


AXIS_REFERENCE = AxisKernels()


def principal_axis_test(x: torch.Tensor,       # [G, n, D] the points (this rank's)
                        labels: torch.Tensor,  # [G, n] hard assignment
                        state: MixtureState,
                        n_total: int,          # samples of every group (all ranks), for the BIC penalty
                        floor: torch.Tensor,   # [G] variance floor
                        *, classes=(2, 8), iters: int = 10, reducer: Reducer = LOCAL,
                        kernels: AxisKernels = AXIS_REFERENCE) -> AxisTest:
    """The test of every active component (module docstring); ``kernels``: the projection and the CEM steps
    (``AxisKernels``; ``dga_fast.ops.AXIS`` for the native ones)."""
    iterate = kernels.iterate
    if iterate is None or reducer.world > 1:
        iterate = functools.partial(cem_iterate, reducer=reducer, assign=kernels.assign)
    G, n, D = x.shape
    K = state.K
    q = state.components[..., 0] if D > 1 else torch.ones_like(state.means)              # [G, K, D]
    t = kernels.project(x, labels, state.means, q)
    n_k, s1, s2 = _class_stats(t, labels, G, K, reducer)                                  # [G, K]
    mu, v_all = _moments(n_k, s1, s2, floor.to(torch.float64).unsqueeze(-1))
    v_floor = torch.maximum(REL_VAR_FLOOR * v_all, floor.to(torch.float64).unsqueeze(-1))
    ll_one = -0.5 * n_k * torch.log(v_all)
    log_n = math.log(max(n_total, 2))
    gain = torch.full_like(ll_one, float("-inf"))
    smaller = offsets = None
    for m in sorted(set(int(c) for c in classes) | {2}):
        cnt, mean, var = _cem(t, labels, K, m, mu, v_all.sqrt(), v_floor, iters, reducer, iterate)
        g_m = 2.0 * (_class_loglik(cnt, var) - ll_one) - EXTRA_PARAMS * (m - 1) * log_n
        gain = torch.maximum(gain, torch.where((cnt > 0).sum(-1) >= 2, g_m, torch.full_like(g_m, float("-inf"))))
        if m == 2:
            smaller, offsets = cnt.amin(-1), mean - mu.unsqueeze(-1)
    gain = torch.where(state.active, gain, torch.full_like(gain, float("-inf")))
    return AxisTest(gain=gain, smaller=smaller, offsets=offsets)
