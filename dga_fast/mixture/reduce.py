"""Reductions whose result for one group and slot does not depend on the other groups of the batch or on how
many slots the batch is padded to: what keeps a unit's mixture the one it gets fitted alone (DESIGN §4).

A refit's batch is padded to its largest component count, and its size is the number of units in it. Plain
``t.sum(dim)`` is vectorised and, when the output is small, split over threads, so how it groups the terms
depends on those shapes; a GEMM over samples (``respᵀ x``) may split its long inner dimension over threads
when it runs alone but not inside a batch. Either changes a unit's numbers in the last bits, and EM can carry
that to a different structure. Here:
- ``sum_slots``: a cumulative sum along the slots is sequential (slot 0, 1, ...), so trailing zeros change
  nothing; its last element is the sum;
- ``sum_samples``: a segmented reduction (``torch.segment_reduce``, one segment per group, rows in order);
- ``segment_sums``: the same over (sample, slot) pairs sorted by slot, for the M-step's moments.
"""
from __future__ import annotations

import torch


def sum_slots(t: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """``t.sum(dim)`` accumulated sequentially along ``dim`` (invariant to trailing zeros)."""
    out = t.cumsum(dim).select(dim, t.shape[dim] - 1) if t.shape[dim] else t.sum(dim)
    return out.unsqueeze(dim) if keepdim else out


def logsumexp_slots(t: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """``torch.logsumexp`` with the sequential sum (invariant to trailing ``-inf``)."""
    top = t.amax(dim, keepdim=True)
    safe = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    out = sum_slots((t - safe).exp(), dim, keepdim=True).log() + safe
    return out if keepdim else out.squeeze(dim)


def sum_samples(t: torch.Tensor  # [G, N, ...]
                ) -> torch.Tensor:  # [G, ...]
    """``t.sum(1)``, each group's rows added in order (independent of the other groups and trailing sizes)."""
    G, N = t.shape[:2]
    if G == 0 or N == 0:
        return t.sum(1)
    flat = t.reshape(G * N, -1)
    out = torch.segment_reduce(flat, "sum", lengths=torch.full((G,), N, device=t.device), axis=0)
    return out.view(G, *t.shape[2:])


def segment_sums(rows: torch.Tensor,    # [E, ...] sorted by segment
                 counts: torch.Tensor,  # [S] int64 rows per segment
                 ) -> torch.Tensor:     # [S, ...]
    """Sum of the rows of every segment, in order (0 for an empty segment)."""
    return torch.segment_reduce(rows, "sum", lengths=counts, axis=0)
