"""Reference HDDC E-step (plain PyTorch): the oracle of the fused kernel and the CPU path."""
from __future__ import annotations

import torch

from ...mixture.reduce import sum_slots
from ...mixture.state import MixtureState


def hddc_estep(x: torch.Tensor,  # [G, N, D]
               state: MixtureState) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-responsibilities ``[G, N, K]`` and per-sample log-likelihood ``[G, N]``.

    Exact cost of DESIGN §3 in float32 (float64 for float64 input) with no tensor of size N·K·D:
    ``y = Qᵀx − Qᵀμ`` for all components at once (one batched GEMM), ``Σ_j w_j y_j²`` summed over ``j`` in order
    and the log-sum-exp over the slots summed in order (``mixture.reduce.sum_slots``: a unit's result does not
    depend on the batch's padding), and ``‖x − μ‖² = ‖x‖² − 2xᵀμ + ‖μ‖²`` by expansion in float64 (its cancellation
    would otherwise cost ``eps·(‖x‖² + ‖μ‖²)/b`` of absolute precision, large for tight components far from
    the origin). Callers pass data centred and scaled per group (the mixture core, HDDC and
    DynamicGaussianAnchoring all do), which keeps the float32 projection well conditioned too.
    """
    with torch.autocast(x.device.type, enabled=False):   # always float32/float64, also under AMP
        return _hddc_estep(x, state)


def _hddc_estep(x: torch.Tensor, state: MixtureState) -> tuple[torch.Tensor, torch.Tensor]:
    dt = torch.promote_types(x.dtype, torch.float32)
    st = state.trim_dims()
    G, N, D = x.shape
    K, dm = st.K, st.dmax
    w, inv_b, const = st.cost_terms()                         # [G,K,dm], [G,K], [G,K]
    xf = x.to(dt)
    mu = st.means.to(dt)
    Q = st.components.to(dt)                                  # [G,K,D,dm]
    Qflat = Q.permute(0, 2, 1, 3).reshape(G, D, K * dm)
    y = torch.baddbmm(-(mu.unsqueeze(-2) @ Q).reshape(G, 1, K * dm), xf, Qflat)   # Q_kᵀ(x − μ_k)
    # ‖x − μ‖²/b by expansion in float64: O(N·K·D), and the expansion's cancellation (clusters far from
    # the origin relative to their noise variance b) then costs nothing at float32 resolution
    x64, mu64, ib64 = x.to(torch.float64), st.means.to(torch.float64), inv_b.to(torch.float64)
    sq = torch.baddbmm(mu64.square().sum(-1).unsqueeze(1), x64, mu64.transpose(1, 2), alpha=-2.0)
    sq.add_(torch.linalg.vector_norm(x64, dim=-1, keepdim=True).square_())
    sq.clamp_min_(0.0).mul_(ib64.unsqueeze(1))
    cost = sq.to(dt).add_(const.unsqueeze(1))                                          # [G,N,K]
    # + Σ_j w_kj y_j², summed in order of j (sum_slots: the same result whatever the batch's padding)
    cost.add_(sum_slots(y.square_().view(G, N, K, dm).mul_(w.unsqueeze(1))))
    logp = cost.mul_(-0.5)                                    # [G,N,K], -inf on inactive slots
    top = logp.amax(-1, keepdim=True)
    # terms below e^-80 of the largest are negligible; clamping keeps exp off its slow underflow path
    loglik = sum_slots((logp - top).clamp_min_(-80.0).exp_()).log_().add_(top.squeeze(-1))   # [G,N]
    log_resp = logp.sub_(loglik.unsqueeze(-1))
    return log_resp, loglik
