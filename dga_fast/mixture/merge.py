"""Merge step of Dynamic Gaussian Anchoring (beyond the published method, DESIGN §4).

Split and filter only add or remove components, so a unit with fewer attribute values than initial
components stays over-segmented. A pair of components is merged when one Gaussian explains its points
better than two, by BIC: the pair as two Gaussians (a classification likelihood with the pair's masses)
against the moment-matched merged Gaussian, which saves one component's parameters.

The comparison is made along the line through the two means, the direction on which "one Gaussian or
two?" is decided: each component contributes its variance ``uᵀΣ_k u`` along that line, the merged
Gaussian ``w_k uᵀΣ_k u + w_l uᵀΣ_l u + w_k w_l (uᵀδ)²``. In the full space the answer would be dominated by
the noise dimensions: an attribute value whose tokens lie on a slightly curved segment is never one HDDC
Gaussian when its noise variance ``b`` is tiny, and a full-space BIC would keep every such value split.

The statistics of a component (mass, mean, covariance) are those of the fitted parameters (``π_k N``,
``μ_k``, ``Σ_k``; ``ComponentStats.of_state``), not of the component's hard-assigned points: the fitted ones judge
a Gaussian that EM cut into overlapping pieces as the one Gaussian it is, while hard pieces are truncated
slices, whose classification likelihood beats one Gaussian (a slice of the tail 2 sd out by about 0.02 nat a
point). A ``verify`` callable has the last word on every candidate pair: DynamicGaussianAnchoring passes the
split test of ``axis_split.py`` on the union of the pair's points, so that a merge never makes a component the
split test would split again (merge and split cannot undo each other).

Every round scores all pairs of the groups still merging (batched over groups), lets each component pick its
partner with the largest gain (the most overlapping pair), and merges all *mutual* picks with a positive gain
(disjoint by construction) that ``verify`` accepts; a refused pair is left out until one of its slots merges,
so its components go on to their next-best partners; rounds repeat until no group has a candidate. The merged
slot gets the moment-matched mean and covariance (eigendecomposed into HDDC form); EM refines it afterwards.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .dims import cattell_dims
from .mstep import REFERENCE, MStepConfig, MStepKernels, robust_eigh, subspace, top_vectors
from .reduce import logsumexp_slots
from .state import MixtureState

# parameters of a 1-D Gaussian mixture: two components (2 means, 2 variances, 1 weight) vs one (2)
_EXTRA_PARAMS = 3.0


@dataclass
class ComponentStats:
    """Per component: mass ``n [G, K]``, mean ``[G, K, D]`` and covariance ``[G, K, D, D]`` (float64), kept up to
    date as pairs merge."""
    n: torch.Tensor
    means: torch.Tensor
    cov: torch.Tensor

    @classmethod
    def of_state(cls, state: MixtureState, n_total: int) -> "ComponentStats":
        st = state.to(dtype=torch.float64)
        n = torch.where(st.active, st.log_weights.exp(), torch.zeros_like(st.noise)) * n_total
        return cls(n=n, means=st.means, cov=st.covariances())


def merge_round(state: MixtureState, n_total: int, cfg: MStepConfig, floor: torch.Tensor,
                stats: ComponentStats, verify=None, done: torch.Tensor | None = None,
                kernels: MStepKernels = REFERENCE, refused: torch.Tensor | None = None
                ) -> tuple[MixtureState, ComponentStats, torch.Tensor, torch.Tensor]:
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
    todo = torch.arange(G, device=dev) if done is None else (~done).nonzero().squeeze(1)   # groups still merging
    pair_ok = act[todo].unsqueeze(2) & act[todo].unsqueeze(1) & ~torch.eye(K, dtype=torch.bool, device=dev)
    if refused is not None:
        pair_ok &= ~refused[todo]
    gain = _pair_gains(stats.n[todo], stats.means[todo], stats.cov[todo], floor[todo], n_total)
    gain = torch.where(pair_ok, gain, torch.full_like(gain, float("-inf")))
    best = torch.full((G, K), float("-inf"), dtype=gain.dtype, device=dev)
    nb = torch.arange(K, device=dev).repeat(G, 1)                                 # done groups: themselves
    best[todo], nb[todo] = gain.max(-1)                                            # [G,K]
    mutual = torch.gather(nb, 1, nb) == torch.arange(K, device=dev)
    accept = act & mutual & (best > 0) & (torch.arange(K, device=dev) < nb)
    n_candidates = accept.sum(1)
    if not bool(accept.any()):
        return state, stats, n_candidates, n_candidates
    merged = _merge_pairs(st, stats, accept, nb, cfg, floor, kernels.eigh)
    keep = torch.ones_like(merged.g, dtype=torch.bool)
    if verify is not None:
        ok = verify(_write(st, None, merged, keep, n_total)[0], accept, nb)
        if refused is not None:
            no = torch.nn.functional.one_hot(nb, K).bool() & (accept & ~ok).unsqueeze(-1)      # [G, K, K]
            refused |= no | no.transpose(1, 2)
        accept = ok
        keep = ok[merged.g, merged.k]
    n_merged = accept.sum(1)
    if not bool(accept.any()):
        return state, stats, n_merged, n_candidates
    if refused is not None:   # the merged slots' pairs are new pairs
        refused &= ~(accept.unsqueeze(2) | accept.unsqueeze(1))
    out, new_stats = _write(st, stats, merged, keep, n_total)
    return out.to(dtype=orig_dtype), new_stats, n_merged, n_candidates


def _pair_gains(n: torch.Tensor,      # [G, K]
                mus: torch.Tensor,    # [G, K, D]
                cov: torch.Tensor,    # [G, K, D, D]
                floor: torch.Tensor,  # [G]
                n_total: int) -> torch.Tensor:   # [G, K, K] float64, > 0: one Gaussian is better
    """The BIC gain of merging every pair along the line through its means (module docstring)."""
    G, K = n.shape
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
    return 2.0 * (ll_m - ll_sep) + _EXTRA_PARAMS * math.log(n_total)


@dataclass
class _Merged:
    """The moment-matched merge of every candidate pair ``(g, k, b = nb[g, k])``, one row per pair [M]: mass
    ``n``, mean ``[M, D]``, covariance ``[M, D, D]`` and its HDDC form (``Q [M, D, dl]``, ``eigvals [M, dl]``,
    ``noise``, ``dims``)."""
    g: torch.Tensor
    k: torch.Tensor
    b: torch.Tensor
    n: torch.Tensor
    mean: torch.Tensor
    cov: torch.Tensor
    Q: torch.Tensor
    eigvals: torch.Tensor
    noise: torch.Tensor
    dims: torch.Tensor


def _merge_pairs(st: MixtureState, stats: ComponentStats, accept: torch.Tensor, nb: torch.Tensor, cfg: MStepConfig,
                 floor: torch.Tensor, eigh=robust_eigh) -> _Merged:
    """Every accepted pair ``(k, nb[k])`` merged, computed for those pairs only (float64)."""
    D = st.means.shape[-1]
    g, k = accept.nonzero(as_tuple=True)
    b = nb[g, k]
    n_a, n_b = stats.n[g, k], stats.n[g, b]
    n_sum = (n_a + n_b).clamp_min(1e-300)
    a_w, b_w = (n_a / n_sum).unsqueeze(-1), (n_b / n_sum).unsqueeze(-1)            # [M, 1]
    mu_a, mu_b = stats.means[g, k], stats.means[g, b]                              # [M, D]
    dlt = mu_a - mu_b
    cov = (a_w.unsqueeze(-1) * stats.cov[g, k] + b_w.unsqueeze(-1) * stats.cov[g, b]
           + (a_w * b_w).unsqueeze(-1) * dlt.unsqueeze(-1) * dlt.unsqueeze(-2))     # [M, D, D]
    fl = floor.to(torch.float64)[g]                                                # [M]
    ev, vec = eigh(cov, top=min(D, st.dmax))
    evals = ev.flip(-1).clamp_min(fl.unsqueeze(-1))                                # decreasing
    d = cattell_dims(evals, cfg.threshold, cfg.d_max)
    mask, top, kept, Q = subspace(evals, top_vectors(vec, st.dmax), d, st.dmax)
    noise = ((evals.sum(-1) - kept) / (D - d).clamp_min(1)).clamp_min(fl)
    return _Merged(g=g, k=k, b=b, n=n_sum, mean=a_w * mu_a + b_w * mu_b, cov=cov, Q=Q,
                   eigvals=torch.where(mask, top, torch.ones_like(top)), noise=noise, dims=d)


def _write(st: MixtureState, stats: ComponentStats | None, m: _Merged, keep: torch.Tensor,   # [M] bool
           n_total: int) -> tuple[MixtureState, ComponentStats | None]:
    """The merges ``keep`` of ``m`` written into their slots k (slots b freed), weights renormalised; and into
    a copy of ``stats`` (``None``: not needed)."""
    g, k, b = m.g[keep], m.k[keep], m.b[keep]
    out = st.clone()
    out.means[g, k] = m.mean[keep]
    out.components[g, k] = m.Q[keep]
    out.eigvals[g, k] = m.eigvals[keep]
    out.noise[g, k] = m.noise[keep]
    out.dims[g, k] = m.dims[keep]
    out.log_weights[g, k] = torch.log(m.n[keep] / float(n_total))
    out.active[g, b] = False
    out.log_weights = torch.where(out.active, out.log_weights, torch.full_like(out.noise, float("-inf")))
    out.log_weights = out.log_weights - logsumexp_slots(out.log_weights, 1, keepdim=True)
    if stats is None:
        return out, None
    n, means, cov = stats.n.clone(), stats.means.clone(), stats.cov.clone()
    n[g, k], means[g, k], cov[g, k] = m.n[keep], m.mean[keep], m.cov[keep]
    return out, ComponentStats(n=n, means=means, cov=cov)


def merge_components(state: MixtureState, n_total: int, cfg: MStepConfig, floor: torch.Tensor,
                     max_rounds: int | None = None, verify=None,
                     kernels: MStepKernels = REFERENCE) -> tuple[MixtureState, torch.Tensor]:
    """Merge rounds until no group has a candidate pair left (at most ``max_rounds``, default ``K²``: every
    round merges or turns down a pair of every group that is not done), on the fitted components' statistics
    (``ComponentStats.of_state``). A pair ``verify`` turns down is not proposed again until one of its
    slots merges, so its components go on to their next-best partners: two adjacent slices of one Gaussian whose
    union the check refuses (a sharp cut on one side) can still join through the slice between them. A group
    with no candidate pair is done (its next round would propose nothing): it is left as it is from then on, so
    every group's result is its own. ``kernels``: the M-step's (``MStepKernels``; its ``eigh`` solves the
    merged covariances). Returns ``(state, merged [G])``."""
    G, K = state.G, state.K
    total = torch.zeros(G, dtype=torch.int64, device=state.device)
    done = torch.zeros(G, dtype=torch.bool, device=state.device)
    refused = torch.zeros(G, K, K, dtype=torch.bool, device=state.device) if verify is not None else None
    stats = ComponentStats.of_state(state, n_total)
    for _ in range(max_rounds if max_rounds is not None else K * K):
        state, stats, n, tried = merge_round(state, n_total, cfg, floor, stats, verify, done, kernels, refused)
        total += n
        done |= tried == 0
        if bool(done.all()):
            break
    return state, total
