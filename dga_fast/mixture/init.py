"""Batched k-means++ seeding and Lloyd refinement: the initial partition of every group at once."""
from __future__ import annotations

import math
from typing import Callable

import torch

from .._rng import as_streams
from ..distributed import LOCAL, Reducer, global_rows
from .reduce import sum_samples


def sq_dist(x: torch.Tensor,  # [G, N, D]
            c: torch.Tensor,  # [G, M, D]
            x_sq: torch.Tensor | None = None  # [G, N, 1] ‖x‖² when the caller has it
            ) -> torch.Tensor:  # [G, N, M]
    """Squared Euclidean distances by expansion, clamped at 0 (callers pass centred data)."""
    x_sq = x.square().sum(-1, keepdim=True) if x_sq is None else x_sq
    d = x_sq - 2.0 * (x @ c.transpose(1, 2)) + c.square().sum(-1).unsqueeze(1)
    return d.clamp_min_(0.0)


def _sample_proportional(w: torch.Tensor,   # [G, n] float64 weights of this rank's rows
                         L: int, streams, reducer: Reducer, offset: int) -> torch.Tensor:
    """``L`` global row indices per group drawn with replacement with probability proportional to ``w`` over the
    rows of all ranks in rank order (uniform for a group whose weights are all 0), by inverse CDF: one uniform
    draw per sample, and the rank holding that stretch of the cumulative sum names the row."""
    G, n = w.shape
    zero = w.sum(1) <= 0
    if reducer.world > 1:
        zero = reducer.sum(zero.to(torch.int64)) == reducer.world      # all ranks' weights are 0
    w = torch.where(zero.unsqueeze(1), torch.ones_like(w), w)
    local_tot = w.sum(1)                                                # [G]
    if reducer.world == 1:
        prefix, total = torch.zeros_like(local_tot), local_tot
    else:
        tots = torch.zeros(reducer.world, G, dtype=w.dtype, device=w.device)
        tots[reducer.rank] = local_tot
        tots = reducer.sum(tots)                                        # [W, G]
        prefix, total = tots[:reducer.rank].sum(0), tots.sum(0)
    u = streams.rand(G, L, dtype=torch.float64).to(w.device)
    u = torch.minimum(u * total.unsqueeze(1), torch.nextafter(total, torch.zeros_like(total)).unsqueeze(1))
    if n == 0:
        return reducer.sum(torch.zeros(G, L, dtype=torch.int64, device=w.device))
    cdf = w.cumsum(1) + prefix.unsqueeze(1)                             # [G, n]
    pos = torch.searchsorted(cdf, u.contiguous(), right=True).clamp_max(n - 1)
    if reducer.world == 1:
        return pos
    mine = (u >= prefix.unsqueeze(1)) & (u < (prefix + local_tot).unsqueeze(1))
    return reducer.sum(torch.where(mine, pos + offset, torch.zeros_like(pos)))


def kmeans_plusplus(x: torch.Tensor,  # [G, n, D]
                    K: int, generator: torch.Generator,
                    n_local_trials: int | None = None, *, reducer: Reducer = LOCAL,
                    offset: int = 0) -> torch.Tensor:  # [G, K, D]
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with ``2 + ⌊ln K⌋`` local trials per
    centre as in scikit-learn), batched over groups; deterministic under ``generator`` (a
    ``torch.Generator`` shared by the groups, or ``UnitStreams``: one stream per group, so that a group's seeds
    do not depend on the others). The loop runs over
    the K seeds only (each step is batched over groups and candidates). With a ``reducer`` of several ranks,
    ``x`` is this rank's share of the rows (starting at global row ``offset``) and the seeds are those the same
    call would pick on all ranks' rows concatenated in rank order."""
    G, n, D = x.shape
    N = reducer.sum_int(n)
    L = n_local_trials or 2 + int(math.log(K))
    streams = as_streams(generator)
    first = streams.randint(N, G, 1).to(x.device)
    centers = [global_rows(x, first, offset, reducer)]
    x_sq = x.square().sum(-1, keepdim=True)                                 # [G, n, 1]
    closest = sq_dist(x, centers[0], x_sq).squeeze(-1)                      # [G, n]
    for _ in range(1, K):
        cand = _sample_proportional(closest.to(torch.float64), L, streams, reducer, offset)
        cand_x = global_rows(x, cand, offset, reducer)                      # [G, L, D]
        new_closest = torch.minimum(closest.unsqueeze(-1), sq_dist(x, cand_x, x_sq))   # [G, n, L]
        best = reducer.sum(sum_samples(new_closest.to(torch.float64))).argmin(1)   # [G]
        centers.append(cand_x[torch.arange(G, device=x.device), best].unsqueeze(1))
        closest = new_closest[torch.arange(G, device=x.device), :, best]
    return torch.cat(centers, dim=1)


def kmeans_step(x: torch.Tensor,        # [G, n, D]
                centers: torch.Tensor   # [G, K, D]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:   # labels [G, n], counts [G, K], sums [G, K, D]
    """One Lloyd assignment: every row to its nearest centre (``sq_dist``, the first on ties), with the counts
    and sums of the rows per label. The reference of ``dga_fast.ops.kmeans_assign``."""
    G, _, D = x.shape
    K = centers.shape[1]
    labels = sq_dist(x, centers).argmin(-1)
    counts = torch.zeros(G, K, dtype=x.dtype, device=x.device).scatter_add_(
        1, labels, torch.ones_like(labels, dtype=x.dtype))
    sums = torch.zeros_like(centers).scatter_add_(1, labels.unsqueeze(-1).expand(-1, -1, D), x)
    return labels, counts, sums


# (x [G, n, D], centers [G, K, D]) -> (labels [G, n], counts [G, K], sums [G, K, D]): the caller's Lloyd step
# (normally dga_fast.ops.kmeans_assign; mixture/ never imports ops/)
KMeansStep = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor, torch.Tensor]"]


def lloyd(x: torch.Tensor,        # [G, n, D]
          centers: torch.Tensor,  # [G, K, D]
          max_iter: int = 10, *, reducer: Reducer = LOCAL,
          step: KMeansStep = kmeans_step) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Lloyd iterations; an emptied cluster keeps its previous centre. Returns
    ``(labels [G, n], centers [G, K, D])``. With a ``reducer``, counts and sums are summed over the ranks and
    the iterations stop when no rank's labels changed. ``step``: the assignment and its sums (``kmeans_step``)."""
    labels, counts, sums = step(x, centers)
    for _ in range(max_iter):
        counts, sums = reducer.sum(counts), reducer.sum(sums)
        centers = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), centers)
        new, counts, sums = step(x, centers)
        if reducer.sum_int(not torch.equal(new, labels)) == 0:
            break
        labels = new
    return labels, centers


def initial_partition(x: torch.Tensor, K: int, method: str, generator: torch.Generator,
                      lloyd_iters: int = 10, *, reducer: Reducer = LOCAL, offset: int = 0,
                      step: KMeansStep = kmeans_step, loop=None) -> torch.Tensor:
    """Hard labels ``[G, n]`` to start EM from: ``"kmeans++"`` (seeding + Lloyd) or ``"random"``
    (K random points as centres + Lloyd). ``reducer`` / ``offset``: see ``kmeans_plusplus``; ``step``: see
    ``lloyd``; ``loop``: the whole Lloyd loop of one process (``dga_fast.ops.kmeans_lloyd``), used when given and
    there is one rank."""
    G = x.shape[0]
    if method == "kmeans++":
        centers = kmeans_plusplus(x, K, generator, reducer=reducer, offset=offset)
    elif method == "random":
        N = reducer.sum_int(x.shape[1])
        idx = as_streams(generator).rand(G, N).argsort(1)[:, :K].to(x.device)
        centers = global_rows(x, idx, offset, reducer)
    else:
        raise ValueError(f"init must be 'kmeans++' or 'random', got {method!r}")
    if loop is not None and reducer.world == 1:
        return loop(x, centers, lloyd_iters)[0]
    return lloyd(x, centers, lloyd_iters, reducer=reducer, step=step)[0]
