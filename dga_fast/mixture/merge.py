"""Merge step of Dynamic Gaussian Anchoring (beyond the published method, DESIGN §4).

Split and filter only add or remove components, so a unit with fewer attribute values than initial
components stays over-segmented. A pair of components is merged when one Gaussian explains its points
better than two, by BIC: the pair under its two fitted components (hard-label classification likelihood)
against the moment-matched merged Gaussian, which saves one component's parameters.

The comparison is made along the line through the two means, the direction on which "one Gaussian or
two?" is decided: each component contributes its variance ``uᵀΣ_k u`` along that line, the merged
Gaussian ``w_k uᵀΣ_k u + w_l uᵀΣ_l u + w_k w_l (uᵀδ)²``. In the full space the answer would be dominated by
the noise dimensions: an attribute value whose tokens lie on a slightly curved segment is never one HDDC
Gaussian when its noise variance ``b`` is tiny, and a full-space BIC would keep every such value split.

Every round scores all pairs (batched over groups), lets each component pick its partner with the largest
gain (the most overlapping pair), and merges all *mutual* picks with a positive gain (disjoint by
construction); rounds repeat until no group merges. The merged slot gets the moment-matched mean and
covariance (eigendecomposed into HDDC form); EM refines it afterwards.
"""
from __future__ import annotations

import math

import torch

from .dims import cattell_dims
from .mstep import MStepConfig, subspace
from .state import MixtureState

# parameters of a 1-D Gaussian mixture: two components (2 means, 2 variances, 1 weight) vs one (2)
_EXTRA_PARAMS = 3.0


def merge_round(state: MixtureState, n_total: int, cfg: MStepConfig,
                floor: torch.Tensor) -> tuple[MixtureState, torch.Tensor]:
    """One merge round; returns ``(state, n_merged [G])``. Computed in float64 (the tensors are tiny)."""
    orig_dtype = state.dtype
    st = state.to(dtype=torch.float64)
    G, K, D = st.means.shape
    dev = st.device
    act = st.active
    pi = torch.where(act, st.log_weights.exp(), torch.zeros_like(st.noise))
    n = pi * n_total                                                               # [G,K]
    cov = st.covariances()                                                         # [G,K,D,D]
    delta = st.means.unsqueeze(2) - st.means.unsqueeze(1)                          # [G,K,K,D] μ_k − μ_l
    dist2 = delta.square().sum(-1)
    u = delta / dist2.clamp_min(1e-300).sqrt().unsqueeze(-1)
    var_k = torch.einsum("gkld,gkde,gkle->gkl", u, cov, u)                        # uᵀΣ_k u
    var_l = var_k.transpose(1, 2)                                                  # uᵀΣ_l u (u sign-free)
    n_l = n.unsqueeze(1).expand(G, K, K)
    n_k = n.unsqueeze(2).expand(G, K, K)
    n_m = (n_k + n_l).clamp_min(1e-300)
    wk, wl = n_k / n_m, n_l / n_m
    var_m = wk * var_k + wl * var_l + wk * wl * dist2
    fl = floor.to(torch.float64).reshape(G, 1, 1)
    var_k, var_l, var_m = var_k.clamp_min(fl), var_l.clamp_min(fl), var_m.clamp_min(fl)
    xlogy = lambda a, b: torch.where(a > 0, a * torch.log(b.clamp_min(1e-300)), torch.zeros_like(a))  # noqa: E731
    ll_sep = (xlogy(n_k, wk) + xlogy(n_l, wl) - 0.5 * (n_k * torch.log(var_k) + n_l * torch.log(var_l)))
    ll_m = -0.5 * n_m * torch.log(var_m)
    gain = 2.0 * (ll_m - ll_sep) + _EXTRA_PARAMS * math.log(n_total)             # > 0: merge
    pair_ok = act.unsqueeze(2) & act.unsqueeze(1) & ~torch.eye(K, dtype=torch.bool, device=dev)
    gain = torch.where(pair_ok, gain, torch.full_like(gain, float("-inf")))
    best, nb = gain.max(-1)                                                        # [G,K]
    mutual = torch.gather(nb, 1, nb) == torch.arange(K, device=dev)
    accept = act & mutual & (best > 0) & (torch.arange(K, device=dev) < nb)
    n_merged = accept.sum(1)
    if not bool(accept.any()):
        return state, n_merged
    # moment-matched merge of (k, nb[k]) written into slot k; slot nb[k] is freed
    gidx = torch.arange(G, device=dev).unsqueeze(1)
    n_b, mu_b, cov_b = n[gidx, nb], st.means[gidx, nb], cov[gidx, nb]
    n_sum = (n + n_b).clamp_min(1e-300)
    a_w, b_w = (n / n_sum).unsqueeze(-1), (n_b / n_sum).unsqueeze(-1)
    mu_m = a_w * st.means + b_w * mu_b
    dlt = st.means - mu_b
    cov_m = (a_w.unsqueeze(-1) * cov + b_w.unsqueeze(-1) * cov_b
             + (a_w * b_w).unsqueeze(-1) * dlt.unsqueeze(-1) * dlt.unsqueeze(-2))
    evals, evecs = torch.linalg.eigh(cov_m)
    fl2 = floor.to(torch.float64).reshape(G, 1, 1)
    evals = evals.flip(-1).clamp_min(fl2)
    evecs = evecs.flip(-1)
    d_m = cattell_dims(evals, cfg.threshold, cfg.d_max)
    mask, top, kept, Q = subspace(evals, evecs, d_m, st.dmax)
    b_m = ((evals.sum(-1) - kept) / (D - d_m).clamp_min(1)).clamp_min(fl2.squeeze(-1))
    out = st.clone()
    acc = accept.unsqueeze(-1)
    out.means = torch.where(acc, mu_m, st.means)
    out.components = torch.where(acc.unsqueeze(-1), Q, st.components)
    out.eigvals = torch.where(acc, torch.where(mask, top, torch.ones_like(top)), st.eigvals)
    out.noise = torch.where(accept, b_m, st.noise)
    out.dims = torch.where(accept, d_m, st.dims)
    out.log_weights = torch.where(accept, torch.log(n_sum / n_total), st.log_weights)
    freed = torch.zeros_like(nb).scatter_add_(1, torch.where(accept, nb, torch.zeros_like(nb)),
                                              accept.long()) > 0
    out.active = out.active & ~freed
    out.log_weights = torch.where(out.active, out.log_weights, torch.full_like(out.noise, float("-inf")))
    out.log_weights = out.log_weights - torch.logsumexp(out.log_weights, 1, keepdim=True)
    return out.to(dtype=orig_dtype), n_merged


def merge_components(state: MixtureState, n_total: int, cfg: MStepConfig, floor: torch.Tensor,
                     max_rounds: int | None = None) -> tuple[MixtureState, torch.Tensor]:
    """Merge rounds until no group merges (at most ``K − 1`` rounds). Returns ``(state, merged [G])``."""
    total = torch.zeros(state.G, dtype=torch.int64, device=state.device)
    for _ in range(max_rounds if max_rounds is not None else state.K - 1):
        state, n = merge_round(state, n_total, cfg, floor)
        total += n
        if not bool(n.any()):
            break
    return state, total
