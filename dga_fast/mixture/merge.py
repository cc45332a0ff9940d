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
point). A ``verify`` callable has the last word on every candidate (a pair or a chain): DynamicGaussianAnchoring passes
the split test of ``axis_split.py`` on the union of the candidate's points, so that a merge never makes a component the
split test would split again (merge and split cannot undo each other).

Every pair round scores all pairs of the groups still merging (batched over groups), lets each component pick
its partner with the largest gain (the most overlapping pair), and merges all *mutual* picks with a positive gain
(disjoint by construction) that ``verify`` accepts; a refused pair is left out until one of its slots merges,
so its components go on to their next-best partners; rounds repeat until no group has a candidate. Pairs are not
enough when EM cut one Gaussian into several slices along its axis: the union of two adjacent slices in a tail is
a truncated piece whose density falls steeply across it, and the split test rightly splits it, so no order of
pairs joins them. A chain round then takes every connected chain of pairs with a positive gain (refused ones
included) as one candidate, the whole Gaussian, and ``verify`` judges its union. Merges are written as a target
map ``to [G, K]`` (``to[k]``: the slot ``k`` merges into); the receiving slot gets the moment-matched mean and
covariance of its members (eigendecomposed into HDDC form); EM refines it afterwards.
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
                kernels: MStepKernels = REFERENCE, refused: torch.Tensor | None = None, chains: bool = False
                ) -> tuple[MixtureState, ComponentStats, torch.Tensor, torch.Tensor]:
    """One merge round; returns ``(state, stats, n_merged [G], n_candidates [G])`` (slots merged away, and
    proposed to be) with the merged slots' statistics updated. ``chains=False``: the mutual best pairs;
    ``chains=True``: every chain of pairs with a positive gain, whole (module docstring).
    ``verify(merged_state, to [G, K], recv [G, K]) -> ok [G, K]``: a last word on the candidates, per receiving
    slot (the merged state holds every candidate merged; ``to[k]``: the slot ``k`` merges into). ``refused
    [G, K, K]`` (bool, updated in place by pair rounds): pairs ``verify`` turned down, left out of the pairing
    until one of the two slots merges with another (its statistics are new then), so that each component goes on
    to its next-best partner. ``done [G]``: groups left as they are. Computed in float64 (the tensors are tiny);
    ``kernels.eigh`` solves the merged covariances."""
    orig_dtype = state.dtype
    st = state.to(dtype=torch.float64)
    G, K, _ = st.means.shape
    todo = torch.arange(G, device=st.device) if done is None else (~done).nonzero().squeeze(1)
    pair_ok = st.active[todo].unsqueeze(2) & st.active[todo].unsqueeze(1) & ~torch.eye(K, dtype=torch.bool,
                                                                                     device=st.device)
    if refused is not None and not chains:
        pair_ok &= ~refused[todo]
    gain = _pair_gains(stats.n[todo], stats.means[todo], stats.cov[todo], floor[todo], n_total)
    gain = torch.where(pair_ok, gain, torch.full_like(gain, float("-inf")))
    ident = _slots(G, K, st.device)
    to = ident.clone()
    to[todo] = _chain_targets(gain > 0) if chains else _pair_targets(gain)
    n_candidates = (to != ident).sum(1)
    if not bool(n_candidates.any()):   # nothing to merge (no eigendecomposition either)
        return state, stats, n_candidates, n_candidates
    merged = _merge_into(st, stats, to, cfg, floor, kernels.eigh)
    if verify is not None:
        ok = verify(_write(st, None, merged, n_total)[0], to, merged.recv)
        if refused is not None and not chains:
            no = torch.nn.functional.one_hot(to, K).bool() & (~ok.gather(1, to) & merged.src).unsqueeze(-1)
            refused |= no | no.transpose(1, 2)
        merged = merged.only(ok)
    n_merged = merged.src.sum(1)
    if not bool(n_merged.any()):
        return state, stats, n_merged, n_candidates
    if refused is not None:   # the merged slots' pairs are new pairs
        refused &= ~(merged.recv.unsqueeze(2) | merged.recv.unsqueeze(1))
    out, new_stats = _write(st, stats, merged, n_total)
    return out.to(dtype=orig_dtype), new_stats, n_merged, n_candidates


def _slots(G: int, K: int, device) -> torch.Tensor:   # [G, K] every slot its own target
    return torch.arange(K, device=device).repeat(G, 1)


def kept_targets(to: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:   # to, ok [G, K] -> to [G, K]
    """The target map of the merges whose receiving slot is in ``ok``: every other slot stays where it is."""
    return torch.where(ok.gather(1, to), to, _slots(*to.shape, to.device))


def _pair_targets(gain: torch.Tensor) -> torch.Tensor:   # gain [G, K, K] -> to [G, K]
    """Each component picks its partner of largest gain; a *mutual* pick with a positive gain merges (the pairs
    are disjoint by construction), the larger slot into the smaller."""
    G, K, _ = gain.shape
    best, nb = gain.max(-1)                                                        # [G, K]
    mutual = torch.gather(nb, 1, nb) == torch.arange(K, device=gain.device)
    accept = mutual & (best > 0) & (torch.arange(K, device=gain.device) < nb)
    to = _slots(G, K, gain.device)
    g, k = accept.nonzero(as_tuple=True)
    to[g, nb[g, k]] = k
    return to


def _chain_targets(edge: torch.Tensor) -> torch.Tensor:   # edge [G, K, K] bool, symmetric -> to [G, K]
    """The connected components of ``edge``: every slot's target is the smallest slot of its component."""
    G, K, _ = edge.shape
    to = _slots(G, K, edge.device)
    for _ in range(K):
        nxt = torch.minimum(to, torch.where(edge, to.unsqueeze(1), K).amin(-1))
        if torch.equal(nxt, to):
            break
        to = nxt
    return to


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
    """The moment-matched merge of every slot ``k`` into slot ``to[k]`` ``[G, K]``; one row per receiving slot
    ``(g, k)`` of ``recv [G, K]`` (a slot that more than one slot merges into) [M]: mass ``n``, mean ``[M, D]``,
    covariance ``[M, D, D]`` and its HDDC form (``Q [M, D, dl]``, ``eigvals [M, dl]``, ``noise``, ``dims``)."""
    to: torch.Tensor
    recv: torch.Tensor
    n: torch.Tensor
    mean: torch.Tensor
    cov: torch.Tensor
    Q: torch.Tensor
    eigvals: torch.Tensor
    noise: torch.Tensor
    dims: torch.Tensor

    @property
    def src(self) -> torch.Tensor:   # [G, K] the slots that merge away
        return self.to != _slots(*self.to.shape, self.to.device)

    def only(self, ok: torch.Tensor) -> "_Merged":
        """The merges whose receiving slot is in ``ok [G, K]``; the others' slots stay as they are."""
        keep = ok[self.recv]                                                       # [M]
        return _Merged(to=kept_targets(self.to, ok), recv=self.recv & ok, n=self.n[keep], mean=self.mean[keep],
                       cov=self.cov[keep], Q=self.Q[keep],
                       eigvals=self.eigvals[keep], noise=self.noise[keep], dims=self.dims[keep])


def _merge_into(st: MixtureState, stats: ComponentStats, to: torch.Tensor, cfg: MStepConfig, floor: torch.Tensor,
                eigh=robust_eigh) -> _Merged:
    """Every slot merged into its target ``to [G, K]``, computed for the receiving slots only (float64):
    ``n = Σ n_j``, ``μ = Σ w_j μ_j``, ``Σ = Σ w_j (Σ_j + (μ_j − μ)(μ_j − μ)ᵀ)`` with ``w_j = n_j / n``."""
    G, K, D = st.means.shape
    recv = torch.zeros(G, K, dtype=torch.int64, device=to.device).scatter_add_(1, to, torch.ones_like(to)) > 1
    g, j = recv.gather(1, to).nonzero(as_tuple=True)                               # every slot of a merge [S]
    t = to[g, j]
    n_j, mu_j = stats.n[g, j], stats.means[g, j]                                   # [S], [S, D]
    row = torch.full((G, K), -1, dtype=torch.int64, device=to.device)
    rg, rk = recv.nonzero(as_tuple=True)
    row[rg, rk] = torch.arange(rg.numel(), device=to.device)
    r = row[g, t]                                                                  # [S] its merged row
    M = rg.numel()
    n = torch.zeros(M, dtype=torch.float64, device=to.device).index_add_(0, r, n_j).clamp_min(1e-300)
    w = (n_j / n[r]).unsqueeze(-1)                                                 # [S, 1]
    mean = torch.zeros(M, D, dtype=torch.float64, device=to.device).index_add_(0, r, w * mu_j)
    dlt = mu_j - mean[r]                                                           # [S, D]
    cov = torch.zeros(M, D, D, dtype=torch.float64, device=to.device).index_add_(
        0, r, w.unsqueeze(-1) * (stats.cov[g, j] + dlt.unsqueeze(-1) * dlt.unsqueeze(-2)))   # [M, D, D]
    fl = floor.to(torch.float64)[rg]                                               # [M]
    ev, vec = eigh(cov, top=min(D, st.dmax))
    evals = ev.flip(-1).clamp_min(fl.unsqueeze(-1))                                # decreasing
    d = cattell_dims(evals, cfg.threshold, cfg.d_max)
    mask, top, kept, Q = subspace(evals, top_vectors(vec, st.dmax), d, st.dmax)
    noise = ((evals.sum(-1) - kept) / (D - d).clamp_min(1)).clamp_min(fl)
    return _Merged(to=to, recv=recv, n=n, mean=mean, cov=cov, Q=Q,
                   eigvals=torch.where(mask, top, torch.ones_like(top)), noise=noise, dims=d)


def _write(st: MixtureState, stats: ComponentStats | None, m: _Merged,
           n_total: int) -> tuple[MixtureState, ComponentStats | None]:
    """The merges of ``m`` written into their receiving slots (the others of each merge freed), weights
    renormalised; and into a copy of ``stats`` (``None``: not needed)."""
    g, k = m.recv.nonzero(as_tuple=True)
    out = st.clone()
    out.means[g, k] = m.mean
    out.components[g, k] = m.Q
    out.eigvals[g, k] = m.eigvals
    out.noise[g, k] = m.noise
    out.dims[g, k] = m.dims
    out.log_weights[g, k] = torch.log(m.n / float(n_total))
    out.active &= ~m.src
    out.log_weights = torch.where(out.active, out.log_weights, torch.full_like(out.noise, float("-inf")))
    out.log_weights = out.log_weights - logsumexp_slots(out.log_weights, 1, keepdim=True)
    if stats is None:
        return out, None
    n, means, cov = stats.n.clone(), stats.means.clone(), stats.cov.clone()
    n[g, k], means[g, k], cov[g, k] = m.n, m.mean, m.cov
    return out, ComponentStats(n=n, means=means, cov=cov)


def merge_components(state: MixtureState, n_total: int, cfg: MStepConfig, floor: torch.Tensor,
                     max_rounds: int | None = None, verify=None,
                     kernels: MStepKernels = REFERENCE) -> tuple[MixtureState, torch.Tensor]:
    """Pair rounds until no group has a candidate pair left (at most ``max_rounds`` in all, default ``K²``: every
    round merges or turns down a pair of every group that is not done), then a chain round; pair rounds again in
    the groups where a chain merged, until no chain merges. All on the fitted components' statistics
    (``ComponentStats.of_state``). A pair ``verify`` turns down is not proposed again until one of its slots
    merges, so its components go on to their next-best partners: two adjacent slices of one Gaussian whose union
    the check refuses (a sharp cut on one side) can still join through the slice between them. Slices that no
    order of pairs joins (every union of two is a truncated tail) join as the whole chain. A group with nothing
    left to propose is done: it is left as it is from then on, so every group's result is its own. ``kernels``:
    the M-step's (``MStepKernels``; its ``eigh`` solves the merged covariances). Returns ``(state, merged [G])``
    (the slots merged away)."""
    G, K = state.G, state.K
    total = torch.zeros(G, dtype=torch.int64, device=state.device)
    done = torch.zeros(G, dtype=torch.bool, device=state.device)
    refused = torch.zeros(G, K, K, dtype=torch.bool, device=state.device) if verify is not None else None
    stats = ComponentStats.of_state(state, n_total)
    budget = max_rounds if max_rounds is not None else K * K
    chain = torch.ones(G, dtype=torch.bool, device=state.device)                  # groups the next chain round sees
    while True:
        while budget > 0 and not bool(done.all()):
            state, stats, n, tried = merge_round(state, n_total, cfg, floor, stats, verify, done, kernels, refused)
            total += n
            done |= tried == 0
            budget -= 1
        state, stats, n, _ = merge_round(state, n_total, cfg, floor, stats, verify, ~chain, kernels, refused,
                                         chains=True)
        total += n
        chain = n > 0
        if not bool(chain.any()):
            return state, total
        done = ~chain
