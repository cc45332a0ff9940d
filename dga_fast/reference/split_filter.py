"""Reference (plain PyTorch) spread / split / filter steps of Dynamic Gaussian Anchoring (DESIGN §4).

All batched over groups ``G`` and padded component slots ``K``; deterministic (ties broken by slot index).
"""
from __future__ import annotations

import math

import torch

from ..mixture.state import MixtureState


def mixture_spread(x: torch.Tensor,       # [G, N, D]
                   labels: torch.Tensor,  # [G, N] int64 hard assignment
                   means: torch.Tensor    # [G, K, D]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per component: number of hard-assigned points ``[G, K]`` (int64) and their mean Euclidean
    distance to the component mean ``[G, K]`` (0 for an empty component)."""
    G, N, D = x.shape
    K = means.shape[1]
    mu = torch.gather(means, 1, labels.unsqueeze(-1).expand(-1, -1, D))      # [G,N,D]
    dist = (x - mu).norm(dim=-1)                                              # [G,N]
    counts = torch.zeros(G, K, dtype=torch.int64, device=x.device).scatter_add_(
        1, labels, torch.ones_like(labels))
    sums = torch.zeros(G, K, dtype=dist.dtype, device=x.device).scatter_add_(1, labels, dist)
    spread = sums / counts.clamp_min(1).to(dist.dtype)
    return counts, spread


def split_components(state: MixtureState,
                     spread: torch.Tensor,   # [G, K] relative spread of each component
                     counts: torch.Tensor,   # [G, K] hard-assigned points
                     threshold: float, max_components: int,
                     min_count: int) -> tuple[MixtureState, torch.Tensor]:
    """Split active components with ``spread > threshold`` (and at least ``min_count`` points), widest
    first, into the free slots, while the group holds fewer than ``max_components``. The parent slot
    keeps ``μ + √a₁ q₁`` and the child slot gets ``μ − √a₁ q₁`` (principal axis); both inherit the
    parent's subspace and variances and half its weight. Returns ``(state, n_split [G])``."""
    G, K = state.active.shape
    dev = state.device
    slot = torch.arange(K, device=dev).expand(G, K)
    cand = state.active & (spread > threshold) & (counts >= min_count)
    free = ~state.active & (slot < max_components)
    room = (max_components - state.active.sum(1)).clamp_min(0)
    n_split = torch.minimum(torch.minimum(cand.sum(1), free.sum(1)), room)               # [G]
    # candidates widest first (stable on slot index), free slots lowest index first
    key = torch.where(cand, -spread, torch.full_like(spread, float("inf")))
    parent_order = torch.sort(key, dim=1, stable=True).indices                            # [G,K]
    free_order = torch.sort(torch.where(free, slot, slot + K), dim=1, stable=True).indices
    rank = torch.arange(K, device=dev).expand(G, K)
    valid = rank < n_split.unsqueeze(1)                                                   # [G,K] by rank
    # every slot's source slot (children copy their parent) and its offset sign along the principal axis
    src = slot.clone().scatter_(1, free_order, torch.where(valid, parent_order, free_order))
    v = valid.to(state.dtype)
    sign = torch.zeros(G, K, dtype=state.dtype, device=dev)
    sign.scatter_add_(1, parent_order, v).scatter_add_(1, free_order, -v)
    out = state.index_slots(src)
    axis = out.components[..., 0] * out.eigvals[..., 0].clamp_min(0).sqrt().unsqueeze(-1)  # [G,K,D]
    axis = axis * (out.dims > 0).unsqueeze(-1).to(axis.dtype)
    out.means = out.means + sign.unsqueeze(-1) * axis
    touched = sign != 0
    out.log_weights = torch.where(touched, out.log_weights - math.log(2.0), out.log_weights)
    out.active = out.active | touched
    return out, n_split


def filter_components(state: MixtureState,
                      mass: torch.Tensor,   # [G, K] soft mass n_k
                      min_size: float) -> MixtureState:
    """Deactivate components whose mass is below ``min_size`` (each group keeps at least its heaviest),
    compact the active slots to the front (stable), reset the freed slots and renormalise the weights."""
    G, K = state.active.shape
    keep = state.active & (mass >= min_size)
    heaviest = torch.nn.functional.one_hot(
        torch.where(state.active, mass, torch.full_like(mass, float("-inf"))).argmax(1), K).bool()
    keep |= heaviest & ~keep.any(1, keepdim=True)
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    out = state.index_slots(order)
    keep = torch.gather(keep, 1, order)
    empty = MixtureState.empty(G, K, state.D, state.dmax, dtype=state.dtype, device=state.device)
    fields = {}
    for name, t in out.tensors().items():
        e = getattr(empty, name)
        m = keep.reshape(keep.shape + (1,) * (t.dim() - 2))
        fields[name] = torch.where(m, t, e)
    fields["active"] = keep
    lw = fields["log_weights"]
    fields["log_weights"] = lw - torch.logsumexp(lw, dim=1, keepdim=True)
    return MixtureState(**fields)
