"""Batched k-means++ seeding and Lloyd refinement: the initial partition of every group at once."""
from __future__ import annotations

import math

import torch


def sq_dist(x: torch.Tensor,  # [G, N, D]
            c: torch.Tensor   # [G, M, D]
            ) -> torch.Tensor:  # [G, N, M]
    """Squared Euclidean distances by expansion, clamped at 0 (callers pass centred data)."""
    d = x.square().sum(-1, keepdim=True) - 2.0 * (x @ c.transpose(1, 2)) + c.square().sum(-1).unsqueeze(1)
    return d.clamp_min_(0.0)


def _gather_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x [G, N, D]``, ``idx [G, M]`` -> ``[G, M, D]``."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def kmeans_plusplus(x: torch.Tensor,  # [G, N, D]
                    K: int, generator: torch.Generator,
                    n_local_trials: int | None = None) -> torch.Tensor:  # [G, K, D]
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with ``2 + ⌊ln K⌋`` local trials per
    centre as in scikit-learn), batched over groups; deterministic under ``generator``. The loop runs over
    the K seeds only (each step is batched over groups and candidates)."""
    G, N, D = x.shape
    L = n_local_trials or 2 + int(math.log(K))
    first = torch.randint(N, (G, 1), generator=generator, device=generator.device).to(x.device)
    centers = [_gather_rows(x, first)]
    closest = sq_dist(x, centers[0]).squeeze(-1)                            # [G, N]
    for _ in range(1, K):
        total = closest.sum(1, keepdim=True)
        probs = torch.where(total > 0, closest, torch.ones_like(closest))  # all points covered: uniform
        cand = torch.multinomial(probs.to(torch.float64).cpu(), L, replacement=True, generator=generator)
        cand_x = _gather_rows(x, cand.to(x.device))                         # [G, L, D]
        new_closest = torch.minimum(closest.unsqueeze(-1), sq_dist(x, cand_x))   # [G, N, L]
        best = new_closest.sum(1).argmin(1)                                 # [G]
        centers.append(cand_x[torch.arange(G, device=x.device), best].unsqueeze(1))
        closest = new_closest[torch.arange(G, device=x.device), :, best]
    return torch.cat(centers, dim=1)


def lloyd(x: torch.Tensor,        # [G, N, D]
          centers: torch.Tensor,  # [G, K, D]
          max_iter: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched Lloyd iterations; an emptied cluster keeps its previous centre. Returns
    ``(labels [G, N], centers [G, K, D])``."""
    G, N, D = x.shape
    K = centers.shape[1]
    labels = sq_dist(x, centers).argmin(-1)
    for _ in range(max_iter):
        counts = torch.zeros(G, K, dtype=x.dtype, device=x.device).scatter_add_(
            1, labels, torch.ones_like(labels, dtype=x.dtype))
        sums = torch.zeros_like(centers).scatter_add_(1, labels.unsqueeze(-1).expand(-1, -1, D), x)
        centers = torch.where(counts.unsqueeze(-1) > 0, sums / counts.clamp_min(1).unsqueeze(-1), centers)
        new = sq_dist(x, centers).argmin(-1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels, centers


def initial_partition(x: torch.Tensor, K: int, method: str, generator: torch.Generator,
                      lloyd_iters: int = 10) -> torch.Tensor:
    """Hard labels ``[G, N]`` to start EM from: ``"kmeans++"`` (seeding + Lloyd) or ``"random"``
    (K random points as centres + Lloyd)."""
    G, N, _ = x.shape
    if method == "kmeans++":
        centers = kmeans_plusplus(x, K, generator)
    elif method == "random":
        idx = torch.rand(G, N, generator=generator).argsort(1)[:, :K].to(x.device)
        centers = _gather_rows(x, idx)
    else:
        raise ValueError(f"init must be 'kmeans++' or 'random', got {method!r}")
    labels, _ = lloyd(x, centers, lloyd_iters)
    return labels
