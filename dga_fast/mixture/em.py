"""The batched EM driver: every group iterates until its own relative-tolerance stop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..distributed import LOCAL, Reducer
from .mstep import REFERENCE, MStepConfig, MStepKernels, m_step
from .reduce import sum_samples
from .state import MixtureState


@dataclass
class EMResult:
    state: MixtureState
    log_resp: torch.Tensor        # [G, N, K] at the returned parameters
    log_likelihood: torch.Tensor  # [G] mean per-sample log-likelihood at the returned parameters
    n_iter: torch.Tensor          # [G] M-steps taken
    converged: torch.Tensor       # [G] bool


def responsibilities(log_resp: torch.Tensor) -> torch.Tensor:
    """``exp(log_resp)`` with log-responsibilities below -80 (posterior < 2e-35) clamped there: negligible
    mass, and it keeps ``exp`` off its slow underflow path (inactive slots stay far below any mass)."""
    return log_resp.clamp_min(-80.0).exp_()


# (x [G, N, D], state) -> (log_resp [G, N, K], loglik [G, N]): the caller's E-step (normally dga_fast.ops.hddc_estep,
# the one dispatch point; mixture/ never imports ops/, which sits above it)
EStep = Callable[[torch.Tensor, MixtureState], "tuple[torch.Tensor, torch.Tensor]"]


def fit_em(x: torch.Tensor,       # [G, N, D] compute dtype, centred/scaled per group
           state: MixtureState,
           cfg: MStepConfig,
           floor: torch.Tensor,   # [G]
           estep: EStep,
           *, max_iter: int = 100, tol: float = 1e-4, reducer: Reducer = LOCAL,
           kernels: MStepKernels = REFERENCE) -> EMResult:
    """Alternate E-steps (``estep``) and M-steps. A group stops when ``|ΔLL| / (1 + |LL|) < tol`` (LL = mean per-sample
    log-likelihood) or after ``max_iter`` M-steps; stopped groups keep their parameters and drop out of
    the E- and M-steps. The returned parameters are those the last E-step (and so ``log_likelihood`` and
    ``log_resp``) was computed with. With a ``reducer`` of several ranks, ``x`` is this rank's share of the
    samples: E-steps run locally, the M-step's statistics and the log-likelihood are summed over the ranks, and
    ``log_resp`` holds this rank's samples. ``kernels``: the M-step's sums and eigendecompositions (``m_step``)."""
    G, N, _ = x.shape
    n_total = reducer.sum_int(N)
    ll_out = torch.full((G,), float("nan"), dtype=torch.float64, device=x.device)
    ll_prev = ll_out.clone()
    n_iter = torch.zeros(G, dtype=torch.int64, device=x.device)
    converged = torch.zeros(G, dtype=torch.bool, device=x.device)
    log_resp_out = torch.empty(0)
    todo = torch.arange(G, device=x.device)
    for it in range(max_iter + 1):
        full = todo.numel() == G
        xs = x if full else x[todo]
        sub = state if full else state.index_groups(todo)
        log_resp, ll = estep(xs, sub)
        if full:   # the first pass has every group: its tensor (no copy); later passes write their groups into it
            log_resp_out = log_resp
        else:
            log_resp_out[todo] = log_resp
        LL = reducer.sum(sum_samples(ll.to(torch.float64))) / n_total
        ll_out[todo] = LL
        prev = ll_prev[todo]
        done = (LL - prev).abs() < tol * (1.0 + LL.abs())   # NaN prev (first pass) -> False
        converged[todo[done]] = True
        go = ~done
        if it == max_iter or not bool(go.any()):
            break
        nxt = todo[go]
        if full and bool(go.all()):
            state = m_step(x, responsibilities(log_resp), cfg, floor, prev_active=state.active, reducer=reducer,
                           n_total=n_total, kernels=kernels)
        else:
            sel = go.nonzero().squeeze(1)
            new = m_step(xs[sel], responsibilities(log_resp[sel]), cfg, floor[nxt],
                         prev_active=sub.active[sel], reducer=reducer, n_total=n_total, kernels=kernels)
            state = state.scatter_groups(nxt, new)
        n_iter[nxt] += 1
        ll_prev[nxt] = LL[go]
        todo = nxt
    return EMResult(state=state, log_resp=log_resp_out, log_likelihood=ll_out,
                    n_iter=n_iter, converged=converged)


def init_state(x: torch.Tensor, labels: torch.Tensor, K: int, cfg: MStepConfig,
               floor: torch.Tensor, *, reducer: Reducer = LOCAL, kernels: MStepKernels = REFERENCE) -> MixtureState:
    """Parameters from a hard partition ``labels [G, N]`` (one M-step on one-hot responsibilities)."""
    resp = torch.nn.functional.one_hot(labels, K).to(x.dtype)
    return m_step(x, resp, cfg, floor, reducer=reducer, kernels=kernels)
