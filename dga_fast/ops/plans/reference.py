"""Reference (plain PyTorch) spread / split / filter steps of Dynamic Gaussian Anchoring (DESIGN §4).

All batched over groups ``G`` and padded component slots ``K``; deterministic (ties broken by slot index).
"""
from __future__ import annotations

import math

import torch

from ...mixture.reduce import logsumexp_slots
from ...mixture.state import MixtureState


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


def split_plan(active: torch.Tensor,   # [G, K] bool
               spread: torch.Tensor,   # [G, K] relative spread of each component
               counts: torch.Tensor,   # [G, K] hard-assigned points
               threshold: float, max_components: int,
               min_count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which slots split into which: candidates are active slots with ``spread > threshold`` and at least
    ``min_count`` points; free slots are inactive with index ``< max_components``; ``min(#candidates,
    #free, max_components − #active)`` candidates split, widest first (stable on slot index), into the
    lowest free slots. Returns ``src [G, K]`` (the slot each slot copies: itself unless a child), ``sign
    [G, K]`` int8 (+1 parent, −1 child, 0 untouched) and ``n_split [G]``."""
    G, K = active.shape
    dev = active.device
    slot = torch.arange(K, device=dev).expand(G, K)
    cand = active & (spread > threshold) & (counts >= min_count)
    free = ~active & (slot < max_components)
    room = (max_components - active.sum(1)).clamp_min(0)
    n_split = torch.minimum(torch.minimum(cand.sum(1), free.sum(1)), room)               # [G]
    # candidates widest first (stable on slot index), free slots lowest index first
    key = torch.where(cand, -spread, torch.full_like(spread, float("inf")))
    parent_order = torch.sort(key, dim=1, stable=True).indices                            # [G,K]
    free_order = torch.sort(torch.where(free, slot, slot + K), dim=1, stable=True).indices
    rank = torch.arange(K, device=dev).expand(G, K)
    valid = rank < n_split.unsqueeze(1)                                                   # [G,K] by rank
    src = slot.clone().scatter_(1, free_order, torch.where(valid, parent_order, free_order))
    v = valid.to(torch.int8)
    sign = torch.zeros(G, K, dtype=torch.int8, device=dev)
    sign.scatter_add_(1, parent_order, v).scatter_add_(1, free_order, -v)
    return src, sign, n_split


def apply_split(state: MixtureState, src: torch.Tensor, sign: torch.Tensor,
                offsets: torch.Tensor | None = None) -> MixtureState:
    """Carry out a split plan: every slot copies ``src``; parents move to ``μ + √a₁ q₁``, children to
    ``μ − √a₁ q₁`` (principal axis; no move for d = 0), both inherit the parent's subspace and variances and
    half its weight. ``offsets [G, K, 2]`` (per parent slot): the children's positions along ``q₁`` instead,
    ``μ + offsets[..., 0] q₁`` for the child and ``μ + offsets[..., 1] q₁`` for the parent."""
    out = state.index_slots(src)
    if offsets is None:
        step = out.eigvals[..., 0].clamp_min(0).sqrt() * sign.to(state.dtype)                # [G,K]
    else:
        off = torch.gather(offsets.to(state.dtype), 1, src.unsqueeze(-1).expand(-1, -1, 2))   # [G,K,2]
        step = torch.where(sign > 0, off[..., 1], torch.where(sign < 0, off[..., 0], torch.zeros_like(off[..., 0])))
    axis = out.components[..., 0] * (out.dims > 0).unsqueeze(-1).to(state.dtype)            # [G,K,D]
    out.means = out.means + step.unsqueeze(-1) * axis
    touched = sign != 0
    out.log_weights = torch.where(touched, out.log_weights - math.log(2.0), out.log_weights)
    out.active = out.active | touched
    return out


def split_components(state: MixtureState,
                     spread: torch.Tensor,   # [G, K] relative spread of each component
                     counts: torch.Tensor,   # [G, K] hard-assigned points
                     threshold: float, max_components: int,
                     min_count: int, offsets: torch.Tensor | None = None) -> tuple[MixtureState, torch.Tensor]:
    """Split active components with ``spread > threshold`` (and at least ``min_count`` points), widest
    first, into the free slots, while the group holds fewer than ``max_components`` (see ``split_plan`` and
    ``apply_split``). Returns ``(state, n_split [G])``."""
    src, sign, n_split = split_plan(state.active, spread, counts, threshold, max_components, min_count)
    return apply_split(state, src, sign, offsets), n_split


def filter_plan(active: torch.Tensor,   # [G, K] bool
                mass: torch.Tensor,     # [G, K] soft mass n_k
                min_size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``keep = active & mass >= min_size`` (each group keeps at least its heaviest active slot) and the
    stable order that puts kept slots first. Returns ``keep [G, K]`` in the new order and ``order [G, K]``."""
    K = active.shape[1]
    keep = active & (mass >= min_size)
    heaviest = torch.nn.functional.one_hot(
        torch.where(active, mass, torch.full_like(mass, float("-inf"))).argmax(1), K).bool()
    keep |= heaviest & ~keep.any(1, keepdim=True)
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    return torch.gather(keep, 1, order), order


def apply_filter(state: MixtureState, keep: torch.Tensor, order: torch.Tensor) -> MixtureState:
    """Carry out a filter plan: reorder the slots, reset the dropped ones, renormalise the weights."""
    G, K = state.active.shape
    out = state.index_slots(order)
    empty = MixtureState.empty(G, K, state.D, state.dmax, dtype=state.dtype, device=state.device)
    fields = {}
    for name, t in out.tensors().items():
        e = getattr(empty, name)
        m = keep.reshape(keep.shape + (1,) * (t.dim() - 2))
        fields[name] = torch.where(m, t, e)
    fields["active"] = keep
    lw = fields["log_weights"]
    fields["log_weights"] = lw - logsumexp_slots(lw, 1, keepdim=True)
    return MixtureState(**fields)


def filter_components(state: MixtureState,
                      mass: torch.Tensor,   # [G, K] soft mass n_k
                      min_size: float) -> MixtureState:
    """Deactivate components whose mass is below ``min_size`` (each group keeps at least its heaviest),
    compact the active slots to the front (stable), reset the freed slots and renormalise the weights."""
    return apply_filter(state, *filter_plan(state.active, mass, min_size))
