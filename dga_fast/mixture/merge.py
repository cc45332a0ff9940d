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

The statistics of a component (mass, mean, covariance) come either from the fitted parameters (``π_k N``,
``μ_k``, ``Σ_k``) or from the component's own hard-assigned points (``PointStats``). A ``verify`` callable
has the last word on every candidate pair: DynamicGaussianAnchoring passes the split test of
``axis_split.py`` on the union of the pair's points, so that a merge never makes a component the split test
would split again (merge and split cannot undo each other).

Every round scores all pairs (batched over groups), lets each component pick its partner with the largest
gain (the most overlapping pair), and merges all *mutual* picks with a positive gain (disjoint by
construction); rounds repeat until no group merges. The merged slot gets the moment-matched mean and
covariance (eigendecomposed into HDDC form); EM refines it afterwards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..distributed import LOCAL, Reducer
from .dims import cattell_dims
from .mstep import REFERENCE, MStepConfig, MStepKernels, robust_eigh, subspace, top_vectors
from .reduce import logsumexp_slots
from .state import MixtureState

# parameters of a 1-D Gaussian mixture: two components (2 means, 2 variances, 1 weight) vs one (2)
_EXTRA_PARAMS = 3.0


@dataclass
class PointStats:
    """Per component: mass ``n [G, K]``, mean ``[G, K, D]`` and covariance ``[G, K, D, D]`` (float64)."""
    n: torch.Tensor
    means: torch.Tensor
    cov: torch.Tensor

    @classmethod
    def of_state(cls, state: MixtureState, n_total: int) -> "PointStats":
        st = state.to(dtype=torch.float64)
        n = torch.where(st.active, st.log_weights.exp(), torch.zeros_like(st.noise)) * n_total
        return cls(n=n, means=st.means, cov=st.covariances())

    @classmethod
    def of_points(cls, x: torch.Tensor,       # [G, n, D]
                  labels: torch.Tensor,       # [G, n] hard assignment
                  K: int, *, reducer: Reducer = LOCAL, kernels: MStepKernels = REFERENCE) -> "PointStats":
        """Counts, means and (ML) covariances of the hard-assigned points of every slot (the M-step's sums,
        ``kernels``, in float64)."""
        one_hot = torch.nn.functional.one_hot(labels, K).to(torch.float64)
        x64 = x.to(torch.float64)
        pairs = kernels.pairs(one_hot)
        n, first = kernels.moments(x64, one_hot, pairs)
        n = reducer.sum(n)
        means = reducer.sum(first) / n.clamp_min(1.0).unsqueeze(-1)
        cov = reducer.sum(kernels.scatter(x64, one_hot, means, pairs)) / n.clamp_min(1.0)[..., None, None]
        return cls(n=n, means=means, cov=cov)


def merge_round(state: MixtureState, n_total: int, cfg: MStepConfig, floor: torch.Tensor,
                stats: PointStats, verify=None, done: torch.Tensor | None = None,
                kernels: MStepKernels = REFERENCE, refused: torch.Tensor | None = None
                ) -> tuple[MixtureState, PointStats, torch.Tensor, torch.Tensor]:
    """One merge round; returns ``(state, stats, n_merged [G], n_candidates [G])`` with the merged slots'
    statistics updated. ``verify(merged_state, accept [G, K], nb [G, K]) -> accept``: a last word on the
    candidate pairs (the merged state holds every candidate merged). ``refused [G, K, K]`` (bool, updated in
    place): pairs ``verify`` turned down, left out of the pairing until one of the two slots merges with another
    (its statistics are new then), so that each component goes on to its next-best partner. ``done [G]``:
    groups left as they are. Computed in float64 (the tensors are tiny); ``kernels.eigh`` solves the merged
    covariances."""
    orig_dtype = state.dtype
    st = state.to(dtype=torch.float64)
    G, K, D = st.means.shape
    dev = st.device
    act = st.active
    n, mus, cov = stats.n, stats.means, stats.cov                                  # [G,K], [G,K,D], [G,K,D,D]
    delta = mus.unsqueeze(2) - mus.unsqueeze(1)                                    # [G,K,K,D] μ_k − μ_l
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
    if refused is not None:
        pair_ok &= ~refused
    gain = torch.where(pair_ok, gain, torch.full_like(gain, float("-inf")))
    best, nb = gain.max(-1)                                                        # [G,K]
    mutual = torch.gather(nb, 1, nb) == torch.arange(K, device=dev)
    accept = act & mutual & (best > 0) & (torch.arange(K, device=dev) < nb)
    if done is not None:
        accept &= ~done.unsqueeze(1)
    n_candidates = accept.sum(1)
    if bool(accept.any()) and verify is not None:
        ok = verify(_apply(st, stats, accept, nb, cfg, floor, n_total, kernels.eigh)[0], accept, nb)
        if refused is not None:
            no = torch.nn.functional.one_hot(nb, K).bool() & (accept & ~ok).unsqueeze(-1)      # [G, K, K]
            refused |= no | no.transpose(1, 2)
        accept = ok
    n_merged = accept.sum(1)
    if not bool(accept.any()):
        return state, stats, n_merged, n_candidates
    if refused is not None:   # the merged slots' pairs are new pairs
        refused &= ~(accept.unsqueeze(2) | accept.unsqueeze(1))
    out, new_stats = _apply(st, stats, accept, nb, cfg, floor, n_total, kernels.eigh)
    return out.to(dtype=orig_dtype), new_stats, n_merged, n_candidates


def _apply(st: MixtureState, stats: PointStats, accept: torch.Tensor, nb: torch.Tensor, cfg: MStepConfig,
           floor: torch.Tensor, n_total: int, eigh=robust_eigh) -> tuple[MixtureState, PointStats]:
    """The moment-matched merge of every accepted pair ``(k, nb[k])`` written into slot k; slot nb[k] freed."""
    G, K, D = st.means.shape
    dev = st.device
    n, mus, cov = stats.n, stats.means, stats.cov
    gidx = torch.arange(G, device=dev).unsqueeze(1)
    n_b, mu_b, cov_b = n[gidx, nb], mus[gidx, nb], cov[gidx, nb]
    n_sum = (n + n_b).clamp_min(1e-300)
    a_w, b_w = (n / n_sum).unsqueeze(-1), (n_b / n_sum).unsqueeze(-1)
    mu_m = a_w * mus + b_w * mu_b
    dlt = mus - mu_b
    cov_m = (a_w.unsqueeze(-1) * cov + b_w.unsqueeze(-1) * cov_b
             + (a_w * b_w).unsqueeze(-1) * dlt.unsqueeze(-1) * dlt.unsqueeze(-2))
    ev, vec = eigh(cov_m[accept], top=min(D, st.dmax))                   # only the merged slots are solved
    evals = torch.ones(G, K, D, dtype=cov_m.dtype, device=dev)
    evals[accept] = ev.flip(-1)
    fl2 = floor.to(torch.float64).reshape(G, 1, 1)
    evals = evals.clamp_min(fl2)                                         # decreasing
    evecs = torch.zeros(G, K, D, min(D, st.dmax), dtype=cov_m.dtype, device=dev)
    evecs[accept] = top_vectors(vec, st.dmax)
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
    out.log_weights = torch.where(accept, torch.log(n_sum / n_sum.new_tensor(n_total)), st.log_weights)
    freed = torch.zeros_like(nb).scatter_add_(1, torch.where(accept, nb, torch.zeros_like(nb)),
                                              accept.long()) > 0
    out.active = out.active & ~freed
    out.log_weights = torch.where(out.active, out.log_weights, torch.full_like(out.noise, float("-inf")))
    out.log_weights = out.log_weights - logsumexp_slots(out.log_weights, 1, keepdim=True)
    new_stats = PointStats(n=torch.where(accept, n_sum, n), means=torch.where(acc, mu_m, mus),
                           cov=torch.where(acc.unsqueeze(-1), cov_m, cov))
    return out, new_stats


def merge_components(state: MixtureState, n_total: int, cfg: MStepConfig, floor: torch.Tensor,
                     max_rounds: int | None = None, stats: PointStats | None = None, verify=None,
                     kernels: MStepKernels = REFERENCE) -> tuple[MixtureState, torch.Tensor]:
    """Merge rounds until no group has a candidate pair left (at most ``max_rounds``, default ``K²``: every
    round merges or turns down a pair of every group that is not done). ``stats``: the components' statistics
    (default: from the fitted parameters). A pair ``verify`` turns down is not proposed again until one of its
    slots merges, so its components go on to their next-best partners: two adjacent slices of one Gaussian whose
    union the check refuses (a sharp cut on one side) can still join through the slice between them. A group
    with no candidate pair is done (its next round would propose nothing): it is left as it is from then on, so
    every group's result is its own. ``kernels``: the M-step's (``MStepKernels``; its ``eigh`` solves the
    merged covariances). Returns ``(state, merged [G])``."""
    G, K = state.G, state.K
    total = torch.zeros(G, dtype=torch.int64, device=state.device)
    done = torch.zeros(G, dtype=torch.bool, device=state.device)
    refused = torch.zeros(G, K, K, dtype=torch.bool, device=state.device) if verify is not None else None
    stats = PointStats.of_state(state, n_total) if stats is None else stats
    for _ in range(max_rounds if max_rounds is not None else K * K):
        state, stats, n, tried = merge_round(state, n_total, cfg, floor, stats, verify, done, kernels, refused)
        total += n
        done |= tried == 0
        if bool(done.all()):
            break
    return state, total
